"""``lienthong dlq list|show|replay``: inspect dead letters and put them back on their way."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Coroutine
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import typer
from aiokafka.errors import KafkaConnectionError

from services.runtime.failures import dead_letter_replay
from services.runtime.observe.logs import mask_value
from services.runtime.shell.settings import SigningSettings
from services.runtime.trust.header_signing import REPLAY_TOOL
from services.runtime.trust.keys import KeyFileError
from services.runtime.trust.signing import Signer
from services.tools.cli import target
from services.tools.stack.discovery import KafkaTarget
from services.tools.stack.stack import replay_key_of

T = TypeVar("T")

app = typer.Typer(help="Dead letters: list them, inspect one (personal data masked), replay a selection.")


def _run(coroutine: Coroutine[Any, Any, T], bootstrap: str) -> T:
    try:
        return asyncio.run(coroutine)
    except KafkaConnectionError:
        typer.secho(
            f"Kafka does not answer at {bootstrap} (set --bootstrap-servers).", fg=typer.colors.RED, err=True
        )
        raise typer.Exit(1) from None


_BOOTSTRAP = typer.Option(None, "--bootstrap-servers", help=target.bootstrap_help("to read"))
_PREFIX = typer.Option(None, "--prefix", help=target.PREFIX_HELP)
_AGENCY = typer.Option(None, "--agency", help="Only this agency's dead letters (land, tax, …).")
_CLASS = typer.Option(
    None, "--error-class", help="poison, transient, protocol, internal, signature or authorization."
)
_SINCE = typer.Option(None, "--since", help="ISO time, or a duration back from now: 30m, 2h, 1d.")


def _cluster(bootstrap: str | None, prefix: str | None) -> tuple[str, str, dict[str, Any]]:
    """The cluster, its topic prefix and the client options that reach it: SASL/TLS from the
    environment (LIENTHONG_SECURITY_PROTOCOL, …), or the running local stack's credentials."""
    chosen = target.kafka(bootstrap, prefix)
    return chosen.bootstrap_servers, chosen.topic_prefix, chosen.client_options()


def parse_since(value: str | None) -> datetime | None:
    if not value:
        return None
    match = re.fullmatch(r"(\d+)([mhd])", value)
    if match:
        unit = {"m": "minutes", "h": "hours", "d": "days"}[match.group(2)]
        return datetime.now(UTC) - timedelta(**{unit: int(match.group(1))})
    parsed = datetime.fromisoformat(value)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _selected(
    bootstrap: str,
    prefix: str,
    security: dict[str, Any],
    ids: list[str],
    agency: str | None,
    error_class: str | None,
    since: str | None,
) -> list[dead_letter_replay.DeadLetter]:
    letters = _run(dead_letter_replay.read_dead_letters(bootstrap, prefix, **security), bootstrap)
    return dead_letter_replay.select(
        letters, ids=ids, agency=agency, error_class=error_class, since=parse_since(since)
    )


@app.command("list")
def list_letters(
    bootstrap_option: str | None = _BOOTSTRAP,
    prefix_option: str | None = _PREFIX,
    agency: str | None = _AGENCY,
    error_class: str | None = _CLASS,
    since: str | None = _SINCE,
) -> None:
    """One line per dead letter: id, time, agency, error class, attempts, reason; and if replayed."""
    bootstrap, prefix, security = _cluster(bootstrap_option, prefix_option)
    letters = _selected(bootstrap, prefix, security, [], agency, error_class, since)
    replayed = (
        _run(dead_letter_replay.replayed_ids(bootstrap, prefix, **security), bootstrap) if letters else set()
    )
    for letter in letters:
        mark = "replayed" if letter.id in replayed else ""
        typer.echo(
            f"{letter.id}  {letter.timestamp:%Y-%m-%d %H:%M:%S}  {letter.agency or '-':<17} "
            f"{letter.error_class:<9} x{letter.attempts}  {letter.message[:100]}  {mark}"
        )
    typer.echo(f"{len(letters)} dead letter(s), {sum(1 for x in letters if x.id in replayed)} replayed")


@app.command()
def show(
    letter_id: str = typer.Argument(..., help="A dead letter's id as `dlq list` prints it."),
    bootstrap_option: str | None = _BOOTSTRAP,
    prefix_option: str | None = _PREFIX,
    unmask: bool = typer.Option(False, "--unmask", help="Show personal data (recorded use only)."),
) -> None:
    """A dead letter's context headers and its payload, with personal data masked unless --unmask."""
    bootstrap, prefix, security = _cluster(bootstrap_option, prefix_option)
    letters = _selected(bootstrap, prefix, security, [letter_id], None, None, None)
    if not letters:
        typer.secho(f"no dead letter {letter_id}", fg=typer.colors.RED, err=True)
        raise typer.Exit(1)
    letter = letters[0]
    for name, value in sorted(letter.context().items()):
        typer.echo(f"{name}: {value}")
    try:
        payload: Any = json.loads(letter.value)
    except ValueError:
        payload = letter.value.decode(errors="replace")
    typer.echo(json.dumps(payload if unmask else mask_value(payload), ensure_ascii=False, indent=2))


@app.command("replay")
def replay_letters(
    ids: list[str] = typer.Argument(None, help="Dead letter ids; or select with the options."),
    bootstrap_option: str | None = _BOOTSTRAP,
    prefix_option: str | None = _PREFIX,
    agency: str | None = _AGENCY,
    error_class: str | None = _CLASS,
    since: str | None = _SINCE,
    replay_all: bool = typer.Option(False, "--all", help="Replay every dead letter that matches."),
    rate: float = typer.Option(20.0, help="Replays per second at most."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Say what would be replayed."),
    signing_key: Path | None = typer.Option(
        None,
        "--signing-key",
        help=f"The {REPLAY_TOOL} key that signs the replays (default: $LIENTHONG_SIGNING_KEY, else the"
        " running local stack's).",
    ),
    unsigned: bool = typer.Option(
        False, "--unsigned", help="Replay unsigned: only for a development setup that verifies nothing."
    ),
) -> None:
    """Put dead letters back on the topic they failed on; each one at most once, recorded, signed with
    the dead-letter tool's key (consumers refuse a replay header without its signature)."""
    if not ids and not (replay_all or agency or error_class or since):
        typer.secho(
            "name dead letters, or select them with --agency/--error-class/--since, or --all", err=True
        )
        raise typer.Exit(2)
    chosen = target.kafka(bootstrap_option, prefix_option)
    bootstrap, prefix, security = chosen.bootstrap_servers, chosen.topic_prefix, chosen.client_options()
    signer = None if unsigned or dry_run else _replay_signer(signing_key, chosen)
    letters = _selected(bootstrap, prefix, security, ids or [], agency, error_class, since)
    if dry_run:
        for letter in letters:
            typer.echo(f"would replay {letter.id} -> {letter.replay_topic}")
        return
    report = asyncio.run(
        dead_letter_replay.replay(
            bootstrap, letters, prefix=prefix, rate_per_s=rate, signer=signer, **security
        )
    )
    typer.echo(f"replayed {len(report.replayed)}, skipped {len(report.skipped)} replayed before")


def _replay_signer(option: Path | None, chosen: KafkaTarget) -> Signer:
    """The dead-letter tool's signer: ``--signing-key``, else ``LIENTHONG_SIGNING_KEY``, else the key
    the running local stack made for it; the command stops with one sentence when there is none."""
    path = option or SigningSettings().signing_key
    if path is None and chosen.stack is not None:
        path = replay_key_of(Path(chosen.stack.data_dir).parent)
    if path is None or not path.is_file():
        typer.secho(
            f"no {REPLAY_TOOL} key to sign the replays with: give --signing-key or LIENTHONG_SIGNING_KEY"
            f" (`lienthong keys new {REPLAY_TOOL}` makes one, trusted), or --unsigned for a setup that"
            " verifies nothing",
            fg=typer.colors.RED,
            err=True,
        )
        raise typer.Exit(2)
    try:
        signer = Signer.from_file(path)
    except KeyFileError as error:
        typer.secho(f"the replay key cannot be used: {error}", fg=typer.colors.RED, err=True)
        raise typer.Exit(2) from None
    if signer.key.producer != REPLAY_TOOL:
        typer.secho(
            f"{path.name} is the key of {signer.key.producer!r}; replays are signed with the"
            f" {REPLAY_TOOL} key",
            fg=typer.colors.RED,
            err=True,
        )
        raise typer.Exit(2)
    return signer

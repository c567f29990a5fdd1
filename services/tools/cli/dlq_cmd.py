"""``lienthong dlq list|show|replay``: inspect dead letters and put them back on their way.

The operator commands — ``replay`` (role ``operator``) and ``show --unmask`` (role ``auditor``) — act
for a person: they take a staff token (``lienthong login``, a script's client credentials, or
``LIENTHONG_TOKEN``: :mod:`services.runtime.auth.cli_token`), verified against the provider, and a
``--reason``; each records who did it and why on ``operator.actions``, signed with the dead-letter
tool's key, which the tracker appends to its handoff log. Without a token they refuse, except against
the running local stack (``lienthong run``, found through its discovery file), or with the development
switch ``LIENTHONG_INSECURE_DEV=1``, where they act as the local admin and say so.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final, TypeVar
from uuid import UUID

import typer
from aiokafka.errors import KafkaConnectionError, KafkaError

from schemas.events import OperatorActionKind, OperatorVia
from services.runtime.auth import cli_token
from services.runtime.auth.bearer import BearerVerifier, ProviderUnavailable, TokenRejected
from services.runtime.auth.staff import STAFF_AUDIENCE, Role, Staff
from services.runtime.failures import dead_letter_replay, operator_actions
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
_REASON = typer.Option(None, "--reason", help="Why (recorded with your identity in the handoff log).")
_SIGNING_KEY_HELP = (
    f"The {REPLAY_TOOL} key that signs the replays and the record of the action (default:"
    " $LIENTHONG_SIGNING_KEY, else the running local stack's)."
)
LOCAL_ADMIN: Final = "local-stack-admin"
"""The subject recorded for an action taken without a token on the local stack."""
MAX_REASON_CHARS: Final = 500


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
    unmask: bool = typer.Option(
        False, "--unmask", help="Show personal data (role auditor, with --reason; recorded)."
    ),
    reason: str | None = _REASON,
    signing_key: Path | None = typer.Option(None, "--signing-key", help=_SIGNING_KEY_HELP),
) -> None:
    """A dead letter's context headers and its payload, with personal data masked unless --unmask."""
    chosen = target.kafka(bootstrap_option, prefix_option)
    bootstrap, prefix, security = chosen.bootstrap_servers, chosen.topic_prefix, chosen.client_options()
    actor = _operator(Role.AUDITOR, "dlq show --unmask", reason, chosen) if unmask else None
    letters = _selected(bootstrap, prefix, security, [letter_id], None, None, None)
    if not letters:
        typer.secho(f"no dead letter {letter_id}", fg=typer.colors.RED, err=True)
        raise typer.Exit(1)
    letter = letters[0]
    if actor is not None:  # recorded before anything personal is shown: an unrecorded unmask never is
        signer = _replay_signer(signing_key, chosen)
        _record(chosen, actor, OperatorActionKind.UNMASK, [letter], signer)
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
    reason: str | None = _REASON,
    signing_key: Path | None = typer.Option(None, "--signing-key", help=_SIGNING_KEY_HELP),
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
    actor = None if dry_run else _operator(Role.OPERATOR, "dlq replay", reason, chosen)
    letters = _selected(bootstrap, prefix, security, ids or [], agency, error_class, since)
    if dry_run or actor is None:
        for letter in letters:
            typer.echo(f"would replay {letter.id} -> {letter.replay_topic}")
        return
    if letters:  # recorded first: a replay that cannot be put in the handoff log does not happen
        _record(chosen, actor, OperatorActionKind.REPLAY, letters, signer)
    report = asyncio.run(
        dead_letter_replay.replay(
            bootstrap,
            letters,
            prefix=prefix,
            rate_per_s=rate,
            operator=actor.subject,
            signer=signer,
            **security,
        )
    )
    typer.echo(f"replayed {len(report.replayed)}, skipped {len(report.skipped)} replayed before")


# --- who acts, and the record of what they did ------------------------------------------------


def _operator(role: Role, command: str, reason: str | None, chosen: KafkaTarget) -> Actor:
    """Who runs ``command``: the staff member the CLI's token names, holding ``role``, or the local
    stack's admin when there is no token and the target is the running ``lienthong run`` stack; the
    command stops with one sentence otherwise. ``--reason`` is required either way."""
    if reason is None or not reason.strip():
        typer.secho(f"`{command}` needs --reason: why (it is recorded with who you are)", err=True)
        raise typer.Exit(2)
    if len(reason.strip()) > MAX_REASON_CHARS:
        typer.secho(f"--reason is {len(reason.strip())} characters, at most {MAX_REASON_CHARS}", err=True)
        raise typer.Exit(2)
    stack_issuer = chosen.stack.oidc_issuer if chosen.stack is not None else None
    settings = cli_token.CliTokenSettings()
    issuer = settings.oidc_issuer or stack_issuer
    try:
        found = cli_token.find_token(settings, issuer)
    except cli_token.TokenError as error:
        typer.secho(str(error), fg=typer.colors.RED, err=True)
        raise typer.Exit(1) from None
    if found is None:
        if chosen.stack is not None:
            typer.echo(
                f"no token: acting as the local stack's admin (lienthong run, pid {chosen.stack.pid});"
                f" recorded as {LOCAL_ADMIN}",
                err=True,
            )
            return Actor(LOCAL_ADMIN, reason.strip())
        if os.environ.get("LIENTHONG_INSECURE_DEV") == "1":  # the documented development switch, loud
            typer.secho(
                f"no token: acting as {LOCAL_ADMIN} because LIENTHONG_INSECURE_DEV=1 (development only,"
                " never in a deployment)",
                fg=typer.colors.YELLOW,
                err=True,
            )
            return Actor(LOCAL_ADMIN, reason.strip())
        typer.secho(
            f"`{command}` needs a staff token with the {role.value} role: run `lienthong login`, or set"
            " LIENTHONG_OIDC_CLIENT_ID and LIENTHONG_OIDC_CLIENT_SECRET, or LIENTHONG_TOKEN",
            fg=typer.colors.RED,
            err=True,
        )
        raise typer.Exit(1)
    if issuer is None:
        typer.secho(
            "a token is given but no provider to check it against: set LIENTHONG_OIDC_ISSUER",
            fg=typer.colors.RED,
            err=True,
        )
        raise typer.Exit(1)
    try:
        staff = Staff.from_token(asyncio.run(BearerVerifier(issuer, STAFF_AUDIENCE).verify(found.token)))
    except TokenRejected as error:
        typer.secho(f"the token ({found.source}) is refused: {error}", fg=typer.colors.RED, err=True)
        raise typer.Exit(1) from None
    except ProviderUnavailable as error:
        typer.secho(f"the token cannot be checked: {error}", fg=typer.colors.RED, err=True)
        raise typer.Exit(1) from None
    if not staff.may(role):
        typer.secho(
            f"`{command}` needs the {role.value} role, which {staff.username or staff.subject} does not have",
            fg=typer.colors.RED,
            err=True,
        )
        raise typer.Exit(1)
    return Actor(staff.subject, reason.strip())


def _record(
    chosen: KafkaTarget,
    actor: Actor,
    action: OperatorActionKind,
    letters: Sequence[dead_letter_replay.DeadLetter],
    signer: Signer | None,
) -> None:
    """Record the action on ``operator.actions``: one record per dossier concerned (a dead letter's
    record key is its dossier's id), so that ``lienthong audit show <dossier>`` lists it."""
    by_dossier: dict[str | None, list[str]] = {}
    for letter in letters:
        by_dossier.setdefault(_dossier_of(letter), []).append(letter.id)
    now = datetime.now(UTC)
    try:
        for dossier, targets in by_dossier.items():
            recorded = operator_actions.OperatorAction(
                action=action,
                subject=actor.subject,
                reason=actor.reason,
                via=OperatorVia.CLI,
                dossier_id=dossier,
                targets=targets,
                at=now,
            )
            _run(
                operator_actions.record_action(
                    chosen.bootstrap_servers,
                    recorded,
                    prefix=chosen.topic_prefix,
                    signer=signer,
                    producer=None if signer is not None else REPLAY_TOOL,
                    **chosen.client_options(),
                ),
                chosen.bootstrap_servers,
            )
    except KafkaError as error:
        typer.secho(
            f"the {action.value} was NOT recorded on operator.actions, so it is not done: {error}",
            fg=typer.colors.RED,
            err=True,
        )
        raise typer.Exit(1) from None
    typer.echo(f"recorded: {action.value} by {actor.subject}", err=True)


def _dossier_of(letter: dead_letter_replay.DeadLetter) -> str | None:
    try:
        return str(UUID((letter.key or b"").decode()))
    except ValueError:
        return None


@dataclass(frozen=True)
class Actor:
    """Who acts (the provider's subject, or :data:`LOCAL_ADMIN`) and why."""

    subject: str
    reason: str


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

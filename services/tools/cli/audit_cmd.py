"""``lienthong audit show|verify``: the tracker's hash-chained handoff log.

The log is read where the tracker keeps it: the ``tracker`` schema of ``LIENTHONG_DATABASE_URL`` when
that is set (every tracker instance appends to that one log), else the tracker's SQLite file; ``--db``
names either. Both are opened for reading only: the command never writes to the log it checks.

``verify`` also checks the chain against the head the tracker anchored on the compacted
``audit.heads`` topic (:mod:`services.tracker.anchor`), its signature checked against the trust
store: a chain that lacks the anchored entry, or has another hash there, was rewritten (a database
rebuilt from scratch), truncated or lost, however self-consistent it is.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path

import psycopg
import psycopg_pool
import typer
from aiokafka.errors import KafkaError

from schemas.topics import AUDIT_HEADS
from services.runtime.shell.settings import SigningSettings
from services.runtime.storage.database import Connection, DatabaseSettings, StoreLocation, store_location
from services.runtime.storage.postgres import PostgresConnection, PostgresLocation, schema_name
from services.runtime.trust.keys import KeyFileError
from services.runtime.trust.signing import Verifier
from services.tools.cli import target
from services.tools.localpg.server import redacted
from services.tracker import anchor, audit

app = typer.Typer(help="The handoff log: a dossier's chain of custody, and a check that nobody edited it.")

_DB = typer.Option(
    None,
    "--db",
    help="The tracker's SQLite file, or a postgresql:// URL (its tracker schema) (default:"
    " $LIENTHONG_DATABASE_URL when set, else tracker.db in $LIENTHONG_DATA_DIR, else in the running"
    " `lienthong run` stack's data, else in var/).",
)

_TRACKER = "tracker"


def _location(db: str | None) -> StoreLocation:
    if db is not None and db.startswith(("postgresql://", "postgres://")):
        return PostgresLocation(db, schema_name(_TRACKER))
    if db is not None:
        return Path(db)
    if DatabaseSettings().database_url:
        return store_location(Path(), _TRACKER)  # the URL decides: no data folder is looked for
    return store_location(target.data_dir(), _TRACKER)


def _open(db: str | None) -> Connection:
    location = _location(db)
    if isinstance(location, PostgresLocation):
        return _open_postgres(location)
    return _open_sqlite(Path(location))


def _open_sqlite(path: Path) -> Connection:
    if not path.exists():
        typer.echo(f"no tracker database at {path}", err=True)
        raise typer.Exit(2)
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    if not conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'handoff_log'").fetchone():
        typer.echo(f"{path} holds no handoff log", err=True)
        raise typer.Exit(2)
    return conn


def _open_postgres(location: PostgresLocation) -> Connection:
    where = f"schema {location.schema!r} of {redacted(location.url)}"
    try:
        # One attempt first: it fails at once with the server's reason, where a pool retries for 30 s.
        psycopg.connect(location.url, connect_timeout=10).close()
        conn = PostgresConnection(location)
    except (psycopg.Error, psycopg_pool.PoolTimeout) as error:
        typer.echo(f"cannot reach the tracker's database ({where}): {error}", err=True)
        raise typer.Exit(2) from error
    conn.execute("SET default_transaction_read_only = on")
    found = conn.execute("SELECT to_regclass('handoff_log')").fetchone()
    if found is None or found[0] is None:
        conn.close()
        typer.echo(f"{where} holds no handoff log (run `lienthong db migrate`?)", err=True)
        raise typer.Exit(2)
    return conn


@app.command()
def show(
    dossier_id: str | None = typer.Argument(None, help="The dossier's id (UUID)."),
    db: str | None = _DB,
    actions: bool = typer.Option(
        False,
        "--actions",
        help="Only the operator actions (replays, unmasks): the dossier's, or all of them.",
    ),
) -> None:
    """The dossier's chain of custody: who handed what to whom, when, signed by which key; and who
    (subject) did which operator action on it, and why."""
    if dossier_id is None and not actions:
        typer.echo("name a dossier, or list the operator actions with --actions", err=True)
        raise typer.Exit(2)
    conn = _open(db)
    try:
        chain = audit.entries(conn, dossier_id, actions_only=actions)
    finally:
        conn.close()
    if not chain:
        what = "operator action" if actions else "handoff"
        typer.echo(f"no {what} of dossier {dossier_id} in the log" if dossier_id else f"no {what} in the log")
        raise typer.Exit(1)
    for entry in chain:
        typer.echo(_line(entry))


def _line(entry: audit.Entry) -> str:
    signed = f"signed by {entry.key_id or 'nobody (unsigned)'}  hash {entry.hash[:16]}…"
    if entry.is_action:
        targets = ", ".join(json.loads(entry.targets or "[]")) or "-"
        dossier = f"  dossier {entry.dossier_id}" if entry.dossier_id else ""
        return (
            f"#{entry.seq:<6} {entry.occurred_at}  {entry.action} by {entry.subject} via {entry.to_party}"
            f" ({entry.from_party}){dossier}  on {targets}  reason: {entry.reason!r}  {signed}"
        )
    what = f"{entry.action} → {entry.outcome}" if entry.outcome else entry.action
    return (
        f"#{entry.seq:<6} {entry.occurred_at}  {entry.from_party} → {entry.to_party}  {what}"
        f"  handoff {entry.handoff_id}  {signed}"
    )


@app.command()
def verify(
    db: str | None = _DB,
    bootstrap_option: str | None = typer.Option(
        None, "--bootstrap-servers", help=target.bootstrap_help("holding the anchored head")
    ),
    prefix_option: str | None = typer.Option(None, "--prefix", help=target.PREFIX_HELP),
    trust_store: Path | None = typer.Option(
        None,
        "--trust-store",
        help="The trust store that checks the anchored head's signature (default: $LIENTHONG_TRUST_STORE,"
        " else the running local stack's).",
    ),
    no_anchor: bool = typer.Option(
        False, "--no-anchor", help="Check the chain alone, not against the anchored head (a copy of the log)."
    ),
) -> None:
    """Check the whole chain, and that it holds the head anchored on audit.heads; exit 1 naming the first
    edited, removed or reordered entry, or the anchored entry the chain lacks or differs at."""
    conn = _open(db)
    try:
        verdict = audit.verify(conn)
        if not verdict.ok:
            typer.echo(f"handoff log BROKEN after {verdict.checked} good entries: {verdict.problem}")
            raise typer.Exit(1)
        anchored, unanchored = (
            (None, "not checked against an anchored head (--no-anchor)")
            if no_anchor
            else _anchored_head(bootstrap_option, prefix_option, trust_store)
        )
        if anchored is not None and not anchor.holds(conn, anchored):
            found = audit.hash_at(conn, anchored.seq)
            why = (
                f"it has no entry {anchored.seq} (it ends at {verdict.checked}: truncated, lost, or rebuilt)"
                if found is None
                else f"its entry {anchored.seq} has another hash ({found[:16]}…): rewritten or rebuilt"
            )
            typer.echo(
                f"handoff log does NOT match its anchored head: the tracker anchored entry {anchored.seq}"
                f" (hash {anchored.hash[:16]}…, at {anchored.at.isoformat()}), and {why}"
            )
            raise typer.Exit(1)
    finally:
        conn.close()
    if unanchored:
        note = unanchored
    elif anchored is None:
        note = f"no head anchored on {AUDIT_HEADS} yet: the chain is checked alone"
    else:
        note = f"holds the anchored head (entry {anchored.seq}, {anchored.at.isoformat()})"
    typer.echo(f"handoff log intact: {verdict.checked} entries, head {verdict.head}; {note}")


def _anchored_head(
    bootstrap_option: str | None, prefix_option: str | None, trust_store: Path | None
) -> tuple[anchor.AnchoredHead | None, str]:
    """The anchored head, its signature checked (None: none anchored yet), or why it was not looked
    for: no cluster is configured or running here at all. The command stops with one sentence when a
    configured cluster does not answer or the head cannot be trusted."""
    chosen = target.kafka(bootstrap_option, prefix_option)
    try:
        head = asyncio.run(
            anchor.read_anchored_head(
                chosen.bootstrap_servers, prefix=chosen.topic_prefix, **chosen.client_options()
            )
        )
    except (KafkaError, TimeoutError, OSError) as error:
        if chosen.source == "default":  # nothing configured, nothing running: there is no anchor here
            return None, (
                "NOT checked against an anchored head: no Kafka configured or running (give"
                " --bootstrap-servers where the tracker anchors it)"
            )
        typer.echo(
            f"cannot read the anchored head from Kafka at {chosen.bootstrap_servers}"
            f" ({error or type(error).__name__}); give --bootstrap-servers, or --no-anchor to check"
            " the chain alone",
            err=True,
        )
        raise typer.Exit(1) from None
    if head is None:
        return None, ""
    store = trust_store or SigningSettings().trust_store
    if store is None and chosen.stack is not None:
        store = Path(chosen.stack.work_dir) / "keys" / "trusted"
    if store is None or not store.is_dir():
        typer.echo(
            "no trust store to check the anchored head's signature: give --trust-store or"
            " LIENTHONG_TRUST_STORE",
            err=True,
        )
        raise typer.Exit(1)
    try:
        anchor.verify_head(head, Verifier(store))
    except (anchor.HeadRejected, KeyFileError) as error:
        typer.echo(f"the anchored head cannot be trusted: {error}", err=True)
        raise typer.Exit(1) from None
    return head, ""

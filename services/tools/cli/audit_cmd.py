"""``lienthong audit show|verify``: the tracker's hash-chained handoff log.

The log is read where the tracker keeps it: the ``tracker`` schema of ``LIENTHONG_DATABASE_URL`` when
that is set (every tracker instance appends to that one log), else the tracker's SQLite file; ``--db``
names either. Both are opened for reading only: the command never writes to the log it checks.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import psycopg
import psycopg_pool
import typer

from services.runtime.storage.database import Connection, DatabaseSettings, StoreLocation, store_location
from services.runtime.storage.postgres import PostgresConnection, PostgresLocation, schema_name
from services.tools.cli import target
from services.tools.localpg.server import redacted
from services.tracker import audit

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
    dossier_id: str = typer.Argument(..., help="The dossier's id (UUID)."), db: str | None = _DB
) -> None:
    """The dossier's chain of custody: who handed what to whom, when, signed by which key."""
    conn = _open(db)
    try:
        chain = audit.entries(conn, dossier_id)
    finally:
        conn.close()
    if not chain:
        typer.echo(f"no handoff of dossier {dossier_id} in the log")
        raise typer.Exit(1)
    for entry in chain:
        what = f"{entry.action} → {entry.outcome}" if entry.outcome else entry.action
        typer.echo(
            f"#{entry.seq:<6} {entry.occurred_at}  {entry.from_party} → {entry.to_party}  {what}"
            f"  handoff {entry.handoff_id}  signed by {entry.key_id or 'nobody (unsigned)'}"
            f"  hash {entry.hash[:16]}…"
        )


@app.command()
def verify(db: str | None = _DB) -> None:
    """Check the whole chain; exit 1 naming the first edited, removed or reordered entry."""
    conn = _open(db)
    try:
        verdict = audit.verify(conn)
    finally:
        conn.close()
    if not verdict.ok:
        typer.echo(f"handoff log BROKEN after {verdict.checked} good entries: {verdict.problem}")
        raise typer.Exit(1)
    typer.echo(f"handoff log intact: {verdict.checked} entries, head {verdict.head}")

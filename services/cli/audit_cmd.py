"""``lienthong audit show|verify``: the tracker's hash-chained handoff log."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import typer

from services.cli import target
from services.tracker import audit

app = typer.Typer(help="The handoff log: a dossier's chain of custody, and a check that nobody edited it.")

_DB = typer.Option(
    None,
    "--db",
    help="The tracker's SQLite file (default: tracker.db in $LIENTHONG_DATA_DIR, else in the running"
    " `lienthong run` stack's data, else in var/).",
)


def _open(db: Path | None) -> sqlite3.Connection:
    path = db or target.data_dir() / "tracker.db"
    if not path.exists():
        typer.echo(f"no tracker database at {path}", err=True)
        raise typer.Exit(2)
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    if not conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'handoff_log'").fetchone():
        typer.echo(f"{path} holds no handoff log", err=True)
        raise typer.Exit(2)
    return conn


@app.command()
def show(
    dossier_id: str = typer.Argument(..., help="The dossier's id (UUID)."), db: Path | None = _DB
) -> None:
    """The dossier's chain of custody: who handed what to whom, when, signed by which key."""
    conn = _open(db)
    chain = audit.entries(conn, dossier_id)
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
def verify(db: Path | None = _DB) -> None:
    """Check the whole chain; exit 1 naming the first edited, removed or reordered entry."""
    verdict = audit.verify(_open(db))
    if not verdict.ok:
        typer.echo(f"handoff log BROKEN after {verdict.checked} good entries: {verdict.problem}")
        raise typer.Exit(1)
    typer.echo(f"handoff log intact: {verdict.checked} entries, head {verdict.head}")

"""``lienthong db migrate|status``: the services' schemas in PostgreSQL.

On PostgreSQL no service migrates its schema when it starts (its instances share it, and a release
must not run on tables it does not know): ``lienthong db migrate`` does, before a rollout — in
Kubernetes a Job or an initContainer — and ``lienthong db status`` says whether every schema is at the
version this release needs. SQLite stores need neither: each migrates its own file when it opens.
"""

from __future__ import annotations

import os

import psycopg
import typer

app = typer.Typer(help="The services' schemas in PostgreSQL: migrate them, or check their versions.")

DATABASE_URL_ENV = "LIENTHONG_DATABASE_URL"
_URL_OPTION = typer.Option(
    None,
    "--database-url",
    help=f"postgresql://user:password@host:5432/db (default: ${DATABASE_URL_ENV}).",
)


def _url(given: str | None) -> str:
    url = given or os.environ.get(DATABASE_URL_ENV) or ""
    if not url:
        typer.echo(
            f"No database given: pass --database-url or set {DATABASE_URL_ENV} to the PostgreSQL database "
            "the services use. (Without it every service keeps a SQLite file, which migrates itself when "
            "the service opens it: there is nothing to run.)",
            err=True,
        )
        raise typer.Exit(2)
    from services.tools.localpg.server import redacted
    from services.tools.stack.migrations import check_reachable

    try:
        check_reachable(url)
    except psycopg.Error as error:
        typer.echo(f"Cannot reach PostgreSQL at {redacted(url)}: {str(error).strip()}", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"PostgreSQL: {redacted(url)}")
    return url


@app.command("migrate")
def migrate_command(database_url: str | None = _URL_OPTION) -> None:
    """Apply every service's missing migrations; running it again changes nothing.

    The schemas of intake, router, tracker and one connector per agency, each with its version before
    and after."""
    from services.tools.stack.migrations import NewerSchema, migrate_all

    url = _url(database_url)
    try:
        states = migrate_all(url)
    except NewerSchema as error:
        typer.secho(f"Refused: {error}.", fg=typer.colors.RED, err=True)
        raise typer.Exit(1) from None
    for state in states:
        change = f"{state.before} → {state.after}" if state.applied else f"{state.after} (up to date)"
        typer.echo(f"  {state.schema:<28} version {change}")
    applied = sum(state.applied for state in states)
    typer.echo(f"{applied} migration(s) applied; {len(states)} schemas at the version this release needs.")


@app.command("status")
def status_command(database_url: str | None = _URL_OPTION) -> None:
    """Each schema's version against the one this release needs; exit 1 if any differs."""
    from services.tools.stack.migrations import status

    states = status(_url(database_url))
    for state in states:
        if state.verdict == "ok":
            verdict = "ok"
        elif state.verdict == "behind":
            verdict = "behind: run `lienthong db migrate`"
        else:
            verdict = "newer than this release knows: run the release that made it, or a newer one"
        typer.echo(
            f"  {state.schema:<28} version {state.after}, this release needs {state.needed}: {verdict}"
        )
    differ = [state.schema for state in states if state.verdict != "ok"]
    if differ:
        typer.echo(f"{len(differ)} of {len(states)} schemas are not at this release's version.")
        raise typer.Exit(1)
    typer.echo(f"All {len(states)} schemas are at this release's version.")

"""``lienthong catalog show|check``: read and validate the procedure catalog."""

from __future__ import annotations

from pathlib import Path

import typer

from schemas.catalog import Catalog, CatalogError, Procedure, default_catalog_path, load_catalog

app = typer.Typer(help="Show or validate the procedure catalog (procedures, routes, deadlines).")

_PATH = typer.Option(
    None,
    "--path",
    envvar="LIENTHONG_CATALOG_PATH",
    help="Catalog YAML file (default: the catalog shipped with Liên Thông).",
    dir_okay=False,
)


def _load(path: Path | None) -> Catalog:
    try:
        return load_catalog(path)
    except CatalogError as error:
        typer.secho(str(error), fg=typer.colors.RED, err=True)
        raise typer.Exit(1) from None


def _route(procedure: Procedure) -> str:
    parts = []
    for step in procedure.route:
        waits = f" after {'+'.join(step.after)}" if step.after else ""
        flags = ("" if step.required else ", optional") + (", pauses" if step.pauses_clock_on_waiting else "")
        parts.append(
            f"{step.id} [{step.agency.value}.{step.action}, {step.share_working_days}d{flags}]{waits}"
        )
    return "\n      ".join(parts)


@app.command()
def show(path: Path | None = _PATH) -> None:
    """List every procedure with its deadline and route."""
    catalog = _load(path)
    for procedure in catalog.procedures:
        typer.echo(f"{procedure.code}  {procedure.name_en} / {procedure.name_vi}")
        typer.echo(
            f"    lead {procedure.lead_agency.value}, form {procedure.form_kind},"
            f" {procedure.deadline_working_days} working days"
        )
        typer.echo(f"      {_route(procedure)}")


@app.command()
def check(path: Path | None = _PATH) -> None:
    """Validate the catalog; exit 1 listing every problem when it is invalid."""
    catalog = _load(path)
    source = path if path is not None else default_catalog_path()
    typer.secho(f"{source}: {len(catalog.procedures)} procedures, all valid", fg=typer.colors.GREEN)

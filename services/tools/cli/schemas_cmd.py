"""``lienthong schemas check|export``: guard the event contracts against breaking changes."""

from __future__ import annotations

from pathlib import Path

import typer

from schemas.compat import SNAPSHOT_DIR, SnapshotCheck, SnapshotStatus, check_snapshots, export_snapshots

app = typer.Typer(
    help="Event JSON Schema snapshots: check the models against them, or refresh them. "
    "A breaking change needs a new major schema_version (see schemas/compat.py)."
)

_DIR_OPTION = typer.Option(SNAPSHOT_DIR, "--snapshots-dir", help="Directory of the committed snapshots.")


def _line(result: SnapshotCheck) -> str:
    return f"{result.status.value:<10} {result.event_type} v{result.major}"


def _breaking(results: list[SnapshotCheck]) -> list[SnapshotCheck]:
    return [r for r in results if r.changes]


@app.command()
def check(snapshots_dir: Path = _DIR_OPTION) -> None:
    """Compare the event models with the committed snapshots; exit 1 on a breaking change."""
    results = check_snapshots(snapshots_dir)
    breaking = _breaking(results)
    for result in results:
        if result.status is not SnapshotStatus.UNCHANGED:
            typer.echo(_line(result))
        for change in result.changes:
            typer.echo(f"  - {change.path or '<root>'}: {change.reason}")
    if breaking:
        typer.secho(
            f"{len(breaking)} event schema(s) changed incompatibly. Revert the change, or bump the "
            "event's major schema_version and run `lienthong schemas export`.",
            fg=typer.colors.RED,
            err=True,
        )
        raise typer.Exit(1)
    counts = {status: sum(r.status is status for r in results) for status in SnapshotStatus}
    summary = ", ".join(f"{n} {status.value}" for status, n in counts.items() if n)
    typer.echo(f"compatible: {len(results)} event schema(s) checked ({summary})")


@app.command()
def export(
    snapshots_dir: Path = _DIR_OPTION,
    force: bool = typer.Option(False, "--force", help="Overwrite snapshots even across a breaking change."),
) -> None:
    """Write the current schema of every event to its snapshot file."""
    breaking = _breaking(check_snapshots(snapshots_dir))
    if breaking and not force:
        for result in breaking:
            typer.echo(_line(result))
            for change in result.changes:
                typer.echo(f"  - {change.path or '<root>'}: {change.reason}")
        typer.secho(
            "refusing to overwrite snapshots with breaking changes; bump the major schema_version "
            "(or pass --force if this major was never released)",
            fg=typer.colors.RED,
            err=True,
        )
        raise typer.Exit(1)
    written = export_snapshots(snapshots_dir)
    for path in written:
        typer.echo(f"wrote {path.name}")
    typer.echo(f"{len(written)} snapshot(s) written, the others were up to date")

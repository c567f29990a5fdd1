"""``lienthong topics list|create``: the declared topics, and creating the missing ones on a cluster."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence

import typer

from schemas.topics import TopicSpec, all_topics
from services.runtime.topics_admin import PlannedTopic, TopicCreationError, ensure_topics

app = typer.Typer(help="Kafka topics of the bus: list the declared ones, create the missing ones.")

DEFAULT_BOOTSTRAP = "127.0.0.1:9092"

_BOOTSTRAP_OPTION = typer.Option(
    None,
    "--bootstrap-servers",
    help=f"Kafka bootstrap servers (default: $KAFKA_BOOTSTRAP_SERVERS, else {DEFAULT_BOOTSTRAP}).",
)
_PREFIX_OPTION = typer.Option("", "--prefix", help="Prepended to every topic name (e.g. t1234.).")


def human_duration(ms: int) -> str:
    """``1209600000`` → ``14d``; ``-1`` → ``forever``."""
    if ms < 0:
        return "forever"
    for unit, size in (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000)):
        if ms >= size and ms % size == 0:
            return f"{ms // size}{unit}"
    return f"{ms}ms"


def render_table(rows: Sequence[tuple[TopicSpec, str]]) -> str:
    """A plain-text table of topics and their action."""
    header = ("topic", "partitions", "retention", "cleanup", "action")
    body = [
        (s.name, str(s.partitions), human_duration(s.retention_ms), s.cleanup_policy.value, action)
        for s, action in rows
    ]
    widths = [max(len(row[i]) for row in [header, *body]) for i in range(len(header))]
    lines = [
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in [header, *body]
    ]
    return "\n".join(lines)


def _bootstrap(value: str | None) -> str:
    return value or os.environ.get("KAFKA_BOOTSTRAP_SERVERS") or DEFAULT_BOOTSTRAP


def _rows(planned: Sequence[PlannedTopic]) -> list[tuple[TopicSpec, str]]:
    return [(p.spec, p.action.value) for p in planned]


@app.command("list")
def list_topics(prefix: str = _PREFIX_OPTION) -> None:
    """Print the declared topics (no cluster needed)."""
    typer.echo(render_table([(spec, "-") for spec in all_topics(prefix)]))


@app.command()
def create(
    dry_run: bool = typer.Option(False, "--dry-run", help="Only show what would be created."),
    bootstrap_servers: str | None = _BOOTSTRAP_OPTION,
    prefix: str = _PREFIX_OPTION,
) -> None:
    """Create the declared topics the cluster lacks; existing topics are left untouched."""
    bootstrap = _bootstrap(bootstrap_servers)
    try:
        result = asyncio.run(ensure_topics(bootstrap, all_topics(prefix), dry_run=dry_run))
    except TopicCreationError as error:
        typer.secho(f"the broker refused some topics: {error}", fg=typer.colors.RED, err=True)
        raise typer.Exit(1) from None
    except Exception as error:  # connection failures surface as several aiokafka error types
        typer.secho(f"cannot reach Kafka at {bootstrap}: {error!r}", fg=typer.colors.RED, err=True)
        raise typer.Exit(1) from None
    typer.echo(render_table(_rows(result.topics)))
    verb = "would create" if dry_run else "created"
    typer.echo(f"\n{verb} {len(result.created)}, already present {len(result.existing)} (at {bootstrap})")

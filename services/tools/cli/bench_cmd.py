"""``lienthong bench``: Liên Thông measured side by side with a hand-written aiokafka loop."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

import typer

from services.tools.bench.runner import (
    BenchPlan,
    replicas_table,
    run_all,
    run_replicas_only,
    table,
    write_json,
)

T = TypeVar("T")


def run_on_uvloop(main: Coroutine[Any, Any, T]) -> T:
    """The loop the services run on (uvicorn picks uvloop), so raw and hop are measured on it too."""
    try:
        import uvloop
    except ImportError:  # a platform without uvloop
        return asyncio.run(main)
    return uvloop.run(main)


app = typer.Typer(
    help=(
        "Benchmark: raw aiokafka vs one hop, the pipeline, isolation, dead-letter replay, SQLite vs "
        "PostgreSQL, one instance vs two, a rolling restart."
    ),
)


@app.callback(invoke_without_command=True)
def bench(
    quick: bool = typer.Option(False, "--quick", help="A few seconds per part, small counts."),
    json_path: Path = typer.Option(Path("test-output/bench.json"), "--json", help="Where to write JSON."),
    messages: int | None = typer.Option(None, "--messages", help="Messages for the raw and hop loops."),
    rounds: int | None = typer.Option(
        None, "--rounds", min=1, help="Rounds of raw then hop (3; 1 with --quick); the median is reported."
    ),
    replicas_only: bool = typer.Option(
        False,
        "--replicas-only",
        help="Only the database and replicas part (SQLite vs PostgreSQL, one instance vs two, a rolling "
        "restart), on its own broker: about a third of the full run.",
    ),
) -> None:
    """Starts its own broker (or uses KAFKA_BOOTSTRAP_SERVERS) and runs every part in one run."""
    plan = BenchPlan.quick(messages) if quick else BenchPlan(**({"messages": messages} if messages else {}))
    if rounds is not None:
        plan = dataclasses.replace(plan, rounds=rounds)

    def say(line: str) -> None:
        typer.echo(line, err=True)

    if replicas_only:
        result = run_on_uvloop(run_replicas_only(plan, say=say))
        typer.echo(replicas_table(result))
    else:
        result = run_on_uvloop(run_all(plan, say=say))
        typer.echo(table(result))
    write_json(result, json_path)
    typer.echo(f"\nwritten to {json_path}")

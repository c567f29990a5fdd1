"""The pipeline on SQLite against PostgreSQL, one instance per service against two, and the stall of
completions while the router's instances restart one after the other (issue 19).

Each configuration runs its own stack on a fresh database and topic prefix, so that no configuration
inherits another's rows or consumer offsets; a round measures the three back to back, so that a slower
minute of a shared machine weighs on both sides of each ratio. The PostgreSQL server is the one
``LIENTHONG_DATABASE_URL`` names, else a local server started in the bench's work folder (no Docker).
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import os
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from services.tools.bench.pipeline import PhaseResult, PipelineBench
from services.tools.localpg.choice import postgres_endpoint
from services.tools.localpg.server import create_database, drop_database

T = TypeVar("T")

SQLITE_X1 = "sqlite_x1"
POSTGRESQL_X1 = "postgresql_x1"
POSTGRESQL_X2 = "postgresql_x2"
# (name, on PostgreSQL, instances per service), in the order a round measures them
CONFIGURATIONS = ((SQLITE_X1, False, 1), (POSTGRESQL_X1, True, 1), (POSTGRESQL_X2, True, 2))
# Traffic flows this long before the restart begins and after it ends, so that the window's first and
# last gaps are bounded by completions of steady traffic rather than by the traffic's start or end
LEAD_S = 2.0
RESTARTED = "router"


@dataclass
class StallResult:
    """Completions of a steady traffic seen over a window: the longest time between two of them."""

    window_s: float
    longest_gap_s: float
    completions_in_window: int
    traffic: PhaseResult | None = None  # every dossier of the traffic, lead-in and tail included
    restart_s: list[float] = field(default_factory=list)  # per instance, stop to ready


@dataclass
class ReplicaRound:
    phases: dict[str, PhaseResult]  # by configuration name

    @property
    def pg_over_sqlite(self) -> float:
        sqlite = self.phases[SQLITE_X1].rate
        return self.phases[POSTGRESQL_X1].rate / sqlite if sqlite else 0.0

    @property
    def two_over_one(self) -> float:
        one = self.phases[POSTGRESQL_X1].rate
        return self.phases[POSTGRESQL_X2].rate / one if one else 0.0


@dataclass
class ReplicaResult:
    server: str  # which PostgreSQL, for the report (never a password)
    rounds: list[ReplicaRound]
    offered_rate_per_s: float  # the steady traffic of the restart and reference windows
    restart: StallResult
    reference: StallResult


def longest_gap(times: Sequence[float], start: float, end: float) -> tuple[float, int]:
    """The longest time between consecutive completions over [start, end], counting the last one
    before the window and the first one after it (the window's own bounds when there is none), and
    how many completions fell inside the window."""
    ordered = sorted(times)
    inside = [t for t in ordered if start <= t <= end]
    before = [t for t in ordered if t < start]
    after = [t for t in ordered if t > end]
    chain = [before[-1] if before else start, *inside, after[0] if after else end]
    return max(b - a for a, b in itertools.pairwise(chain)), len(inside)


async def _on_stack(
    bootstrap: str,
    work_dir: Path,
    prefix: str,
    database_url: str | None,
    replicas: int,
    then: Callable[[PipelineBench], Awaitable[T]],
) -> T:
    bench = PipelineBench(bootstrap, work_dir, prefix, database_url=database_url, replicas=replicas)
    await asyncio.to_thread(bench.start)
    try:
        await bench.open()
        return await then(bench)
    finally:
        await bench.aclose()
        await asyncio.to_thread(bench.stop)


async def steady_window(
    bench: PipelineBench, rate_per_s: float, during: Callable[[], Awaitable[list[float]]]
) -> StallResult:
    """Steady traffic at ``rate_per_s`` from ``LEAD_S`` before ``during()`` until ``LEAD_S`` after it,
    then the longest gap between completions over the time ``during()`` ran."""
    await bench.settle()
    stop = asyncio.Event()
    began_traffic = time.perf_counter()
    traffic = asyncio.create_task(bench.steady(rate_per_s, stop))
    try:
        await asyncio.sleep(LEAD_S)
        start = time.perf_counter()
        restart_s = await during()
        end = time.perf_counter()
        await asyncio.sleep(LEAD_S)
    finally:
        stop.set()
    ids = await traffic
    last = await bench.wait_closed(ids, 60 + len(ids) / 2)
    gap, inside = longest_gap([bench.seen_closed[i] for i in ids], start, end)
    phase = PhaseResult(len(ids), last - began_traffic, {}, bench.latencies_ms(ids))
    return StallResult(end - start, gap, inside, phase, restart_s)


async def run_replicas(
    bootstrap: str,
    work_dir: Path,
    *,
    rounds: int,
    dossiers: int,
    warmup_dossiers: int,
    prefix: Callable[[str], str],
    say: Callable[[str], None] = print,
) -> ReplicaResult:
    """``rounds`` rounds of the three configurations' maximum rates (``dossiers`` births each, after
    ``warmup_dossiers`` untimed), then, on the last round's two-instance stack, the longest stall of
    completions during a rolling restart of the router next to the same over a window without one."""
    configured = os.environ.get("LIENTHONG_DATABASE_URL") or None
    with postgres_endpoint(
        work_dir / "postgres",
        configured=configured,
        configured_from="LIENTHONG_DATABASE_URL",
        allow_docker=False,
    ) as endpoint:
        say(f"database and replicas: PostgreSQL is {endpoint.description}")
        measured: list[ReplicaRound] = []
        stalls: tuple[float, StallResult, StallResult] | None = None
        for n in range(1, rounds + 1):
            phases: dict[str, PhaseResult] = {}
            for name, on_postgres, replicas in CONFIGURATIONS:
                topic_prefix = prefix(f"r{n}{name.replace('_', '')}")
                database = topic_prefix.rstrip(".") if on_postgres else None
                url = create_database(endpoint.url, database) if database else None
                step = f"database and replicas, round {n} of {rounds}, {name}"
                try:
                    phases[name], stalled = await _on_stack(
                        bootstrap,
                        work_dir / f"stack-{n}-{name}",
                        topic_prefix,
                        url,
                        replicas,
                        functools.partial(
                            _configuration,
                            dossiers=dossiers,
                            warmup_dossiers=warmup_dossiers,
                            with_stalls=n == rounds and name == POSTGRESQL_X2,
                            say=_prefixed(say, step),
                        ),
                    )
                finally:
                    if database:
                        await asyncio.to_thread(drop_database, endpoint.url, database)
                stalls = stalled or stalls
            measured.append(ReplicaRound(phases))
        description = endpoint.description
    assert stalls is not None  # the last round's postgresql_x2 measured them
    rate, restart, reference = stalls
    return ReplicaResult(description, measured, rate, restart, reference)


def _prefixed(say: Callable[[str], None], step: str) -> Callable[[str], None]:
    return lambda line: say(f"{step}: {line}")


async def _configuration(
    bench: PipelineBench,
    *,
    dossiers: int,
    warmup_dossiers: int,
    with_stalls: bool,
    say: Callable[[str], None],
) -> tuple[PhaseResult, tuple[float, StallResult, StallResult] | None]:
    say(f"warming up with {warmup_dossiers} births")
    await bench.max_rate(warmup_dossiers)
    say(f"{dossiers} births at the maximum rate")
    maximum = await bench.max_rate(dossiers)
    return maximum, (await _stalls(bench, maximum.rate, say) if with_stalls else None)


async def _stalls(
    bench: PipelineBench, max_rate: float, say: Callable[[str], None]
) -> tuple[float, StallResult, StallResult]:
    """Half the maximum rate, steady, while the router's instances restart one after the other; then
    the same traffic over as long a window with nothing restarted, for reference."""
    rate = max(1.0, max_rate / 2)
    say(f"{rate:.1f} births/s while the {RESTARTED} instances restart in turn")

    async def restart() -> list[float]:
        return await asyncio.to_thread(bench.stack.rolling_restart, RESTARTED)

    restarted = await steady_window(bench, rate, restart)
    say(f"{rate:.1f} births/s for {restarted.window_s:.1f} s, nothing restarted")

    async def wait() -> list[float]:
        await asyncio.sleep(restarted.window_s)
        return []

    reference = await steady_window(bench, rate, wait)
    return rate, restarted, reference

"""Dossiers end to end through a LocalStack (every service and sandbox its own process).

The procedure is the birth registration (9.900003): three legs, civil status then residence and
social insurance in parallel, no payment to wait for. The isolation run makes the business registry
fail every call while household-business dossiers (9.900006) go to it, and measures the births again.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import httpx
import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from schemas.agencies import Agency
from schemas.topics import DOSSIER_CLOSED, all_topics
from services.tools.bench.procstats import cpu_seconds, freeze_survivors, peak_rss_mb
from services.tools.stack.samples import BIRTH, HOUSEHOLD_BUSINESS, SampleDossiers
from services.tools.stack.stack import LocalStack, StackPorts

AGENCIES = (Agency.CIVIL_STATUS, Agency.RESIDENCE, Agency.SOCIAL_INSURANCE, Agency.BUSINESS_REGISTRY)
FAILING = Agency.BUSINESS_REGISTRY
# What the stack's processes use when no dossier moves: consumers polling, gauges, lag monitors
SETTLED_CORES = 0.25
# Zero added agency latency: the social-insurance sandbox answers its jobs at once, and connectors poll
# pending jobs at least every 50 ms instead of 500 ms (the poll interval is agency latency, not the bus's).
ZERO_LATENCY_ENV = {"LIENTHONG_POLL_INTERVAL_S": "0.05", "SOCIAL_INSURANCE_SANDBOX_PROCESSING_SECONDS": "0"}


@dataclass
class PhaseResult:
    dossiers: int
    wall_s: float
    cpu_s: dict[str, float]  # per process, over the phase
    latencies_ms: list[float] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.dossiers / self.wall_s if self.wall_s else 0.0

    @property
    def cpu_per_1k(self) -> float:
        return sum(self.cpu_s.values()) / self.dossiers * 1000 if self.dossiers else 0.0


class PipelineBench:
    def __init__(
        self,
        bootstrap: str,
        work_dir: Path,
        prefix: str,
        *,
        concurrency: int = 8,
        database_url: str | None = None,
        replicas: int = 1,
    ) -> None:
        """``database_url``: the PostgreSQL database of the stack's state (None: SQLite files);
        ``replicas``: instances of each service, the submissions spread over every intake."""
        self.stack = LocalStack(
            bootstrap,
            work_dir,
            topic_prefix=prefix,
            agencies=AGENCIES,
            ports=StackPorts.free(AGENCIES),
            service_env=ZERO_LATENCY_ENV,
            replicas=replicas,
            database_url=database_url,
            sign_in=False,  # the pipeline's own cost; JWT validation is measured by bench.auth
        )
        # Round-robin over the intakes, so that every instance takes its share of the submissions
        self._intakes = itertools.cycle(self.stack.urls("intake"))
        self.samples = SampleDossiers(seed=9)
        self.concurrency = concurrency
        self.http = httpx.AsyncClient(timeout=30.0, limits=httpx.Limits(max_connections=64))
        self._key = 0
        self.received_at: dict[str, datetime] = {}
        self.closed_at: dict[str, datetime] = {}
        # When this process saw each dossier closed (perf_counter): one clock for every completion,
        # whichever router instance closed it
        self.seen_closed: dict[str, float] = {}
        self._changed = asyncio.Event()
        self._watching = asyncio.Event()
        self._watcher: asyncio.Task[None] | None = None

    async def open(self) -> None:
        """Starts watching the closed dossiers (call once the stack runs)."""
        self._watcher = asyncio.create_task(self.watch_closed())
        await asyncio.wait_for(self._watching.wait(), timeout=30)

    def start(self) -> None:
        self.stack.start(timeout=120)

    def stop(self) -> None:
        self.stack.stop()

    async def aclose(self) -> None:
        if self._watcher is not None:
            self._watcher.cancel()
            await asyncio.gather(self._watcher, return_exceptions=True)
        await self.http.aclose()

    def pids(self) -> dict[str, int]:
        return {name: p.pid for name, p in self.stack.processes.items() if p.pid is not None}

    def peak_rss_mb(self) -> dict[str, float]:
        return {name: round(peak_rss_mb(pid), 1) for name, pid in self.pids().items()}

    def _cpu(self) -> dict[str, float]:
        return {name: cpu_seconds(pid) for name, pid in self.pids().items()}

    async def settle(self, *, idle_cores: float = SETTLED_CORES, within_s: float = 30.0) -> float:
        """Until the stack is idle again, so that work the previous phase left behind (the tracker
        lags the dossiers by design) cannot run into the next phase's first seconds. Returns the cores
        the stack used over the last half second."""
        deadline = time.monotonic() + within_s
        while True:
            before = sum(self._cpu().values())
            await asyncio.sleep(0.5)
            busy = (sum(self._cpu().values()) - before) / 0.5
            if busy <= idle_cores or time.monotonic() > deadline:
                return busy

    async def watch_closed(self) -> None:
        """Reads ``dossier.closed`` from now on: when each dossier closed (its ``closed_at``)."""
        consumer = AIOKafkaConsumer(bootstrap_servers=self.stack.bootstrap_servers, enable_auto_commit=False)
        await consumer.start()
        topic = self.stack.topic_prefix + DOSSIER_CLOSED
        try:
            spec = next(t for t in all_topics(self.stack.topic_prefix) if t.name == topic)
            partitions = [TopicPartition(topic, p) for p in range(spec.partitions)]
            consumer.assign(partitions)
            await consumer.seek_to_end(*partitions)
            self._watching.set()
            while True:
                batch = await consumer.getmany(timeout_ms=200)
                seen = time.perf_counter()
                for records in batch.values():
                    for record in records:
                        data = orjson.loads(record.value)  # the event's data; its dossier is the key
                        dossier_id = record.key.decode()
                        self.closed_at[dossier_id] = datetime.fromisoformat(data["closed_at"])
                        self.seen_closed.setdefault(dossier_id, seen)
                self._changed.set()
        finally:
            await consumer.stop()

    async def submit(self, procedure: str) -> str:
        form = self.samples.birth() if procedure == BIRTH else self.samples.household_business()
        self._key += 1
        answer = await self.http.post(
            f"{next(self._intakes)}/dossiers",
            json=form,
            headers={"Idempotency-Key": f"bench-{time.time_ns()}-{self._key}"},
        )
        if answer.status_code != 201:
            raise RuntimeError(f"intake refused ({answer.status_code}): {answer.text[:300]}")
        body = answer.json()
        self.received_at[body["dossier_id"]] = datetime.fromisoformat(body["received_at"])
        return str(body["dossier_id"])

    async def wait_closed(self, ids: list[str], within_s: float) -> float:
        """Until every dossier of ``ids`` is closed; returns the time the last one was seen closed."""
        deadline = time.monotonic() + within_s
        while time.monotonic() < deadline:
            if all(i in self.closed_at for i in ids):
                return time.perf_counter()
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), timeout=1.0)
        done = sum(i in self.closed_at for i in ids)
        raise TimeoutError(f"{done}/{len(ids)} dossiers closed within {within_s} s")

    def latencies_ms(self, ids: list[str]) -> list[float]:
        """Accepted → closed per dossier: the router's closed_at minus intake's received_at."""
        return [
            (self.closed_at[i] - self.received_at[i]).total_seconds() * 1000
            for i in ids
            if i in self.closed_at and i in self.received_at
        ]

    async def max_rate(self, count: int, *, extra: str | None = None, extra_every: int = 4) -> PhaseResult:
        """Closed loop: ``count`` births as fast as ``concurrency`` clients hand them in (with one
        ``extra`` dossier every ``extra_every`` births), timed until every birth is closed."""
        plan = [BIRTH] * count
        if extra:
            plan = [p for i in range(count) for p in ([BIRTH, extra] if i % extra_every == 0 else [BIRTH])]
        queue: asyncio.Queue[str] = asyncio.Queue()
        for procedure in plan:
            queue.put_nowait(procedure)
        births: list[str] = []

        async def client() -> None:
            while not queue.empty():
                procedure = queue.get_nowait()
                dossier_id = await self.submit(procedure)
                if procedure == BIRTH:
                    births.append(dossier_id)

        def clients() -> Awaitable[object]:
            return asyncio.gather(*(client() for _ in range(self.concurrency)))

        return await self._phase(clients, births, count)

    async def fixed_rate(self, rate_per_s: float, duration_s: float) -> PhaseResult:
        """Open loop: births handed in at ``rate_per_s`` (each on schedule, whatever the others do)."""
        count = max(1, int(rate_per_s * duration_s))
        ids: list[str] = []

        async def at(delay: float) -> None:
            await asyncio.sleep(delay)
            ids.append(await self.submit(BIRTH))

        def on_schedule() -> Awaitable[object]:
            return asyncio.gather(*(at(i / rate_per_s) for i in range(count)))

        return await self._phase(on_schedule, ids, count)

    async def _phase(
        self, submit: Callable[[], Awaitable[object]], ids: list[str], count: int
    ) -> PhaseResult:
        """Times ``submit()`` (which fills ``ids``) until every dossier of ``ids`` is closed, with each
        process's CPU seconds over that time. Nothing is submitted before the stack settled."""
        # This process offers the load: one of its full collections would hold back the births due
        # meanwhile and hand them in at once
        freeze_survivors()
        await self.settle()
        cpu0 = self._cpu()
        start = time.perf_counter()
        await submit()
        end = await self.wait_closed(ids, 60 + count / 2)
        cpu1 = self._cpu()
        result = PhaseResult(count, end - start, {k: cpu1[k] - cpu0.get(k, 0.0) for k in cpu1})
        result.latencies_ms = self.latencies_ms(ids)
        return result

    async def set_failing(self, agency: Agency, failing: bool) -> None:
        url = f"{self.stack.sandbox_url(agency)}/_sandbox/faults"
        admin = self.stack.sandbox_admin_headers()
        if failing:
            (await self.http.put(url, json={"failure_rate": 1}, headers=admin)).raise_for_status()
        else:
            (await self.http.delete(url, headers=admin)).raise_for_status()

    async def mixed(self, count: int) -> PhaseResult:
        """Births with a household business every fourth, every agency healthy: the isolation run's
        baseline, the same work but for the failure (the business dossiers cost CPU either way)."""
        return await self.max_rate(count, extra=HOUSEHOLD_BUSINESS)

    async def isolation(self, count: int) -> PhaseResult:
        """The same traffic as :meth:`mixed` while the business registry fails every call."""
        await self.set_failing(FAILING, True)
        try:
            return await self.mixed(count)
        finally:
            await self.set_failing(FAILING, False)

    async def steady(self, rate_per_s: float, stop: asyncio.Event) -> list[str]:
        """Open loop until ``stop`` is set: births handed in at ``rate_per_s``, each on schedule;
        returns the dossiers handed in (not waiting for them to close)."""
        ids: list[str] = []
        pending: list[asyncio.Task[None]] = []

        async def one() -> None:
            ids.append(await self.submit(BIRTH))

        start = time.perf_counter()
        for n in itertools.count():
            delay = start + n / rate_per_s - time.perf_counter()
            if delay > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=delay)
            if stop.is_set():
                break
            pending.append(asyncio.create_task(one()))
        await asyncio.gather(*pending)
        return ids

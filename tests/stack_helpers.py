"""Helpers for tests that run the whole stack: waiting on the tracker, counting records on Kafka."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from schemas.agencies import Agency
from schemas.topics import all_topics
from services.runtime.failures import dead_letter_replay
from services.tools.stack.stack import DEFAULT_AGENCIES, LocalStack, StackPorts
from services.tools.stack.traffic import Submitted, Traffic

# Retry tiers of seconds (1 s, 2 s, 3 s) and quick polls, for fault tests that wait on them.
SHORT_TIERS = {
    "LIENTHONG_RETRY_DELAYS_S": "[1, 2, 3]",
    "LIENTHONG_RETRY_WITHIN_S": "1",
    "LIENTHONG_CALL_TIMEOUT_S": "2",
    "LIENTHONG_CIRCUIT_COOLDOWN_S": "2",
    "LIENTHONG_POLL_INTERVAL_S": "0.3",
}


async def wait_until_closed(
    traffic: Traffic, tracker_url: str, dossiers: list[Submitted], within_s: float
) -> dict[str, Any]:
    """Pays tax notices as citizens would, until the tracker shows every dossier closed."""
    deadline = time.monotonic() + within_s
    details: dict[str, Any] = {}
    async with httpx.AsyncClient(timeout=5.0) as http:
        while time.monotonic() < deadline:
            await traffic.pay_waiting_notices()
            for dossier in dossiers:
                answer = await http.get(f"{tracker_url}/dossiers/{dossier.dossier_id}")
                if answer.status_code == 200:
                    details[dossier.dossier_id] = answer.json()
            if len(details) == len(dossiers) and all(d["closed"] for d in details.values()):
                return details
            await asyncio.sleep(0.2)
    open_ones = {
        k: (v["status"], [(leg["step_id"], leg["state"]) for leg in v["legs"]])
        for k, v in details.items()
        if not v["closed"]
    }
    raise AssertionError(f"not closed within {within_s} s: {open_ones}; seen {len(details)}/{len(dossiers)}")


async def received_count(bootstrap: str, topic: str) -> int:
    """Records ever written to ``topic`` (end minus beginning offsets over its partitions)."""
    spec = next(t for prefix in _prefixes(topic) for t in all_topics(prefix) if t.name == topic)
    partitions = [TopicPartition(topic, p) for p in range(spec.partitions)]
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        ends = await consumer.end_offsets(partitions)
        starts = await consumer.beginning_offsets(partitions)
        return sum(ends[p] - starts[p] for p in partitions)
    finally:
        await consumer.stop()


async def tracker_knows(tracker_url: str, dossier_id: str, within_s: float = 30) -> None:
    deadline = time.monotonic() + within_s
    async with httpx.AsyncClient(timeout=5.0) as http:
        while time.monotonic() < deadline:
            if (await http.get(f"{tracker_url}/dossiers/{dossier_id}")).status_code == 200:
                return
            await asyncio.sleep(0.1)
    raise AssertionError(f"the tracker never saw dossier {dossier_id}")


def _prefixes(topic: str) -> list[str]:
    """Every prefix under which ``topic`` could be a declared topic name."""
    return [topic[:i] for i in range(len(topic)) if i == 0 or topic[i - 1] == "."]


async def tracker_detail(tracker_url: str, dossier_id: str) -> dict[str, Any]:
    async with httpx.AsyncClient(timeout=5.0) as http:
        answer = await http.get(f"{tracker_url}/dossiers/{dossier_id}")
        answer.raise_for_status()
        return answer.json()  # type: ignore[no-any-return]


async def wait_for(condition: Any, within_s: float, what: str, interval_s: float = 0.2) -> None:
    """Awaits ``condition()`` (async, truthy when met) until ``within_s`` seconds have passed."""
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        if await condition():
            return
        await asyncio.sleep(interval_s)
    raise AssertionError(f"{what} did not happen within {within_s} s")


@contextmanager
def running_stack(
    kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory, name: str, **service_env: str
) -> Iterator[LocalStack]:
    """A whole local stack on free ports and its own topic prefix, for one test module or package."""
    prefix = f"{name}{int(time.time() * 1000) % 10**8}."
    with LocalStack(
        kafka_bootstrap,
        tmp_path_factory.mktemp(name),
        topic_prefix=prefix,
        ports=StackPorts.free(DEFAULT_AGENCIES),
        service_env=service_env or None,
        sign_in=False,  # the tests about signing in start their stacks with the session's provider
    ) as running:
        yield running


@contextmanager
def running_replicated_stack(
    kafka_bootstrap: str,
    tmp_path_factory: pytest.TempPathFactory,
    name: str,
    database_url: str,
    replicas: int = 2,
    /,
    *,
    agencies: Sequence[Agency] = DEFAULT_AGENCIES,
    **service_env: str,
) -> Iterator[LocalStack]:
    """A local stack with ``replicas`` instances of every service sharing ``database_url`` (the stack
    migrates it first), on free ports and its own topic prefix; ``service_env``: more settings of
    every service. (``replicas`` is positional, so that no setting's name can be taken for it.)"""
    prefix = f"{name}{int(time.time() * 1000) % 10**8}."
    with LocalStack(
        kafka_bootstrap,
        tmp_path_factory.mktemp(name),
        topic_prefix=prefix,
        agencies=agencies,
        ports=StackPorts.free(agencies),
        service_env=service_env or None,
        replicas=replicas,
        database_url=database_url,
        sign_in=False,
    ) as running:
        yield running


async def submit_through_every_intake(
    stack: LocalStack, traffic: Traffic, makers: Sequence[Callable[[], Awaitable[Submitted]]]
) -> list[Submitted]:
    """Each ``makers[i]()`` submitted through the next intake instance in turn, as a load balancer
    in front of them would spread the counters' submissions."""
    intakes = stack.urls("intake")
    submitted = []
    for i, make in enumerate(makers):
        traffic.intake_url = intakes[i % len(intakes)]
        submitted.append(await make())
    traffic.intake_url = intakes[0]
    return submitted


async def partitions_held(stack: LocalStack, kind: str) -> Counter[str]:
    """How many partitions each instance of ``kind`` holds in its consumer groups now (from the
    groups' membership; an instance holding none is absent)."""
    held: Counter[str] = Counter()
    for holding in await asyncio.to_thread(stack.holdings):
        if holding.kind == kind:
            held[holding.instance] += sum(len(p) for p in holding.partitions.values())
    return +held


@asynccontextmanager
async def sample_traffic(stack: LocalStack) -> AsyncIterator[Traffic]:
    """Citizens handing dossiers in to ``stack`` (seeded by the clock: every run its own people)."""
    generator = Traffic(
        stack.intake_url,
        stack.tracker_url,
        stack.sandbox_url(Agency.LAND),
        stack.sandbox_url(Agency.TAX),
        seed=int(time.time()),
        sign_in=stack.sign_in,
    )
    try:
        yield generator
    finally:
        await generator.aclose()


# --- faults, sandboxes and dead letters ---------------------------------------------------------


async def set_faults(stack: LocalStack, agency: Agency, **faults: Any) -> None:
    async with httpx.AsyncClient(timeout=5.0) as http:
        answer = await http.put(
            f"{stack.sandbox_url(agency)}/_sandbox/faults", json=faults, headers=stack.sandbox_admin_headers()
        )
        answer.raise_for_status()


async def outage_over(stack: LocalStack, agency: Agency) -> bool:
    """The sandbox's own word: its outage (``down_until``) is over."""
    async with httpx.AsyncClient(timeout=5.0, headers=stack.sandbox_admin_headers()) as http:
        faults = (await http.get(f"{stack.sandbox_url(agency)}/_sandbox/faults")).json()
    until = faults.get("down_until")
    return until is None or datetime.fromisoformat(until) <= datetime.now(UTC)


async def clear_faults(stack: LocalStack, agency: Agency) -> None:
    async with httpx.AsyncClient(timeout=5.0) as http:
        answer = await http.delete(
            f"{stack.sandbox_url(agency)}/_sandbox/faults", headers=stack.sandbox_admin_headers()
        )
        answer.raise_for_status()


async def records(stack: LocalStack, agency: Agency, table: str) -> list[dict[str, Any]]:
    async with httpx.AsyncClient(timeout=5.0) as http:
        answer = await http.get(f"{stack.sandbox_url(agency)}/_sandbox/records/{table}")
        answer.raise_for_status()
        body = answer.json()
        return body["records"] if isinstance(body, dict) else body  # type: ignore[no-any-return]


async def dead_letters_of(
    stack: LocalStack, agency: str | None = None
) -> list[dead_letter_replay.DeadLetter]:
    letters = await dead_letter_replay.read_dead_letters(stack.bootstrap_servers, stack.topic_prefix)
    return dead_letter_replay.select(letters, agency=agency)


async def lienthong_dlq_replay(stack: LocalStack, *selection: str) -> subprocess.CompletedProcess[str]:
    """`lienthong dlq replay`, exactly as an operator types it."""
    command = [
        sys.executable, "-m", "services.tools.cli", "dlq", "replay", *selection,
        "--bootstrap-servers", stack.bootstrap_servers, "--prefix", stack.topic_prefix,
        "--signing-key", str(stack.replay_key), "--reason", "replayed by the test",
    ]  # fmt: skip
    # No staff token here: the tests' stack is a development setup (the CLI says it acts as local admin).
    env = os.environ | {"LIENTHONG_INSECURE_DEV": "1"}
    return await asyncio.to_thread(
        subprocess.run, command, capture_output=True, text=True, timeout=120, check=False, env=env
    )


def assert_all_running(stack: LocalStack) -> None:
    crashed = [name for name, process in stack.processes.items() if not process.is_running()]
    assert not crashed, f"crashed: {crashed}"

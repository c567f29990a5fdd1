"""Losing a partition leader under traffic: a three-node KRaft cluster on this machine (each node its
own JVM), the bus's topics in three copies with two in sync, the whole stack on it, and the node that
leads the busiest ``dossier.received`` partition stopped for 60 s while dossiers of five procedures
keep coming, then started again. Afterwards every dossier is closed with its expected result (0
lost), every agency acted once per dossier (0 duplicates), and every service's outbox is empty."""

from __future__ import annotations

import asyncio
import itertools
import sqlite3
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from schemas.agencies import Agency
from schemas.topics import DOSSIER_RECEIVED, HANDOFF_OUTCOME, MAIN_PARTITIONS, all_topics
from services.runtime.shell.topics_admin import describe_topic_configs, replication_factors
from services.tools.localkafka.broker import LocalKafkaCluster
from services.tools.stack.samples import BIRTH, DEATH, HOUSEHOLD_BUSINESS, LAND_TRANSFER, MARRIAGE
from services.tools.stack.stack import LocalStack
from services.tools.stack.traffic import Submitted, Traffic
from tests.stack_helpers import (
    SHORT_TIERS,
    assert_all_running,
    records,
    running_stack,
    sample_traffic,
    wait_for,
    wait_until_closed,
)

pytestmark = [pytest.mark.kafka, pytest.mark.faults, pytest.mark.timeout(600)]

OUTAGE_S = 60
RATE_PER_S = 2.0  # dossiers a second, before, during and after the outage
BEFORE_S = 10  # of traffic before the leader is stopped
AFTER_S = 15  # of traffic after it is back


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalKafkaCluster]:
    with LocalKafkaCluster(tmp_path_factory.mktemp("cluster3"), size=3) as running:
        yield running


@pytest.fixture(scope="module")
def stack(cluster: LocalKafkaCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    # On three brokers the stack creates its topics as `lienthong topics create` does: RF 3, min ISR 2.
    with running_stack(cluster.bootstrap_servers, tmp_path_factory, "failover", **SHORT_TIERS) as running:
        yield running


@pytest.fixture
async def traffic(stack: LocalStack) -> AsyncIterator[Traffic]:
    async with sample_traffic(stack) as generator:
        yield generator


async def feed(traffic: Traffic, submitted: list[Submitted], stop: asyncio.Event) -> None:
    """Citizens hand dossiers in at a steady pace, cycling through five procedures, until ``stop``."""
    names: set[str] = set()

    async def household_business() -> Submitted:
        # The business registry rightly refuses a name registered already; the samples may repeat one.
        while True:
            submission = traffic.samples.household_business()
            name = submission["form"]["business_name"].casefold()
            if name not in names:
                names.add(name)
                return await traffic.submit(submission)

    kinds: list[Callable[[], Awaitable[Submitted]]] = [
        traffic.marriage,
        traffic.land_transfer,
        traffic.birth,
        household_business,
        traffic.death,
    ]
    started = time.monotonic()
    for index, kind in enumerate(itertools.cycle(kinds)):
        if stop.is_set():
            return
        submitted.append(await kind())
        await asyncio.sleep(max(0.0, started + (index + 1) / RATE_PER_S - time.monotonic()))


async def busiest_partition(cluster: LocalKafkaCluster, topic: str) -> tuple[int, int]:
    """The partition of ``topic`` with the most records, and its leader."""
    partitions = [TopicPartition(topic, p) for p in range(MAIN_PARTITIONS)]
    consumer = AIOKafkaConsumer(bootstrap_servers=cluster.bootstrap_servers)
    await consumer.start()
    try:
        ends = await consumer.end_offsets(partitions)
    finally:
        await consumer.stop()
    leaders = {p: await cluster.leader(topic, p) for p in range(MAIN_PARTITIONS)}
    candidates = [p for p, leader in leaders.items() if leader is not None]
    assert candidates, f"no partition of {topic} has a leader: {leaders}"
    busiest = max(candidates, key=lambda p: ends[partitions[p]])
    leader = leaders[busiest]
    assert leader is not None
    return busiest, leader


async def stack_topic_factors(bootstrap: str, prefix: str) -> dict[str, int]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        found = replication_factors(await admin.describe_topics())
    finally:
        await admin.close()
    return {spec.name: found.get(spec.name, 0) for spec in all_topics(prefix)}


def outbox_rows(data_dir: Path) -> dict[str, int]:
    """Rows still waiting in (or parked out of) each service's outbox, by store file."""
    left: dict[str, int] = {}
    for path in sorted(data_dir.glob("*.db")):
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10) as db:
            tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            for table in sorted(tables & {"outbox", "outbox_parked"}):
                left[f"{path.name}:{table}"] = int(db.execute(f"SELECT count(*) FROM {table}").fetchone()[0])
    return left


def one_each(counts: Counter[str], wanted: list[str], what: str) -> None:
    wrong = {key: counts[key] for key in wanted if counts[key] != 1}
    assert not wrong, f"{what}: {len(wrong)} not exactly once, e.g. {dict(list(wrong.items())[:5])}"


async def assert_each_agency_acted_once(stack: LocalStack, submitted: list[Submitted]) -> dict[str, int]:
    """One side effect per dossier at every agency it goes through (counted in the sandboxes)."""
    by_kind: dict[str, list[Submitted]] = {}
    for dossier in submitted:
        by_kind.setdefault(dossier.procedure_code, []).append(dossier)
    marriages, transfers = by_kind.get(MARRIAGE, []), by_kind.get(LAND_TRANSFER, [])
    births, businesses, deaths = (by_kind.get(c, []) for c in (BIRTH, HOUSEHOLD_BUSINESS, DEATH))

    civil = {t: await records(stack, Agency.CIVIL_STATUS, t) for t in ("marriages", "births", "deaths")}
    wives = Counter(r["vo_so_dinh_danh"] for r in civil["marriages"])
    one_each(wives, [m.form["wife"]["citizen_id"] for m in marriages], "marriages registered")

    parcels = [t.form["parcel_id"] for t in transfers]
    changes = Counter(r["parcel_id"] for r in await records(stack, Agency.LAND, "ownership_changes"))
    one_each(changes, parcels, "ownership changes")
    notices = Counter(r["thua_dat"] for r in await records(stack, Agency.TAX, "notices"))
    one_each(notices, parcels, "tax notices")

    mothers = [b.form["mother"]["citizen_id"] for b in births]
    one_each(Counter(r["me_so_dinh_danh"] for r in civil["births"]), mothers, "births registered")
    children = [r["so_dinh_danh_ca_nhan"] for r in civil["births"] if r["me_so_dinh_danh"] in set(mothers)]
    cards = Counter(r["personal_id"] for r in await records(stack, Agency.SOCIAL_INSURANCE, "health_cards"))
    one_each(cards, children, "children's health-insurance cards")

    codes = [b.dossier_code for b in businesses]
    shops = Counter(r["dossier_code"] for r in await records(stack, Agency.BUSINESS_REGISTRY, "businesses"))
    one_each(shops, codes, "household businesses registered")
    households = Counter(r["ma_ho_so"] for r in await records(stack, Agency.TAX, "households"))
    one_each(households, codes, "tax codes")

    deceased = [d.form["deceased"]["citizen_id"] for d in deaths]
    one_each(Counter(r["so_dinh_danh"] for r in civil["deaths"]), deceased, "deaths registered")
    allowances = Counter(
        r["deceased_id"] for r in await records(stack, Agency.SOCIAL_INSURANCE, "funeral_allowances")
    )
    one_each(allowances, deceased, "funeral allowances")
    return {code: len(items) for code, items in sorted(by_kind.items())}


async def closed_count(tracker_url: str, dossiers: list[Submitted]) -> int:
    async with httpx.AsyncClient(timeout=10.0) as http:
        closed = 0
        for dossier in dossiers:
            answer = await http.get(f"{tracker_url}/dossiers/{dossier.dossier_id}")
            closed += answer.status_code == 200 and bool(answer.json()["closed"])
        return closed


async def tracker_total(tracker_url: str) -> int:
    async with httpx.AsyncClient(timeout=10.0) as http:
        page: dict[str, Any] = (await http.get(f"{tracker_url}/dossiers", params={"limit": 1})).json()
        return int(page["total"])


async def test_leader_of_a_busy_partition_stopped_for_60_s_under_traffic(
    cluster: LocalKafkaCluster, stack: LocalStack, traffic: Traffic
) -> None:
    bootstrap, prefix = cluster.bootstrap_servers, stack.topic_prefix
    factors = await stack_topic_factors(bootstrap, prefix)
    assert set(factors.values()) == {3}, f"every topic of the stack in three copies: {factors}"
    received, outcome = prefix + DOSSIER_RECEIVED, prefix + HANDOFF_OUTCOME
    configs = await describe_topic_configs(bootstrap, [received, outcome])
    assert {configs[t]["min.insync.replicas"] for t in (received, outcome)} == {"2"}

    submitted: list[Submitted] = []
    stop_feeding = asyncio.Event()
    feeder = asyncio.create_task(feed(traffic, submitted, stop_feeding))
    try:

        async def enough_before() -> bool:
            return len(submitted) >= BEFORE_S * RATE_PER_S

        await wait_for(enough_before, 60, "traffic before the outage")
        partition, leader = await busiest_partition(cluster, received)
        at_stop = len(submitted)
        began = time.monotonic()
        await asyncio.to_thread(cluster.stop_node, leader)
        stopped_in = time.monotonic() - began
        new_leader: int | None = None

        async def leadership_moved() -> bool:
            nonlocal new_leader
            new_leader = await cluster.leader(received, partition)
            return new_leader not in (None, leader)

        await wait_for(leadership_moved, 30, f"a new leader for {received}-{partition}")
        await asyncio.sleep(max(0.0, began + OUTAGE_S - time.monotonic()))  # the outage itself
        during = submitted[at_stop:]
        closed_during = await closed_count(stack.tracker_url, during)
        restart_began = time.monotonic()
        await asyncio.to_thread(cluster.start_node, leader)
        restarted_in = time.monotonic() - restart_began
        await asyncio.sleep(AFTER_S)  # traffic goes on with the node back
    finally:
        stop_feeding.set()
        await feeder
    fed_until = time.monotonic()

    assert len(submitted) >= 100, len(submitted)
    details = await wait_until_closed(traffic, stack.tracker_url, submitted, within_s=300)
    closed_in = time.monotonic() - fed_until
    unexpected = {
        s.dossier_id: (s.procedure_code, details[s.dossier_id]["result"], details[s.dossier_id]["legs"])
        for s in submitted
        if details[s.dossier_id]["result"] != s.expected
    }
    assert not unexpected, f"{len(unexpected)} dossiers ended otherwise than expected: {unexpected}"
    assert await tracker_total(stack.tracker_url) == len(submitted), "no dossier made twice"
    kinds = await assert_each_agency_acted_once(stack, submitted)

    data_dir = stack.work_dir / "data"

    async def outboxes_empty() -> bool:
        return not any(outbox_rows(data_dir).values())

    await wait_for(outboxes_empty, 60, f"every outbox drained ({outbox_rows(data_dir)})", interval_s=0.5)
    assert any(key.endswith(":outbox") for key in outbox_rows(data_dir)), "the stores were found"
    assert_all_running(stack)
    print(
        f"\n{len(submitted)} dossiers {kinds}: node {leader} (leader of {received}-{partition}) stopped in"
        f" {stopped_in:.1f} s, leadership to node {new_leader}; {len(during)} handed in during the"
        f" {OUTAGE_S} s outage, {closed_during} of them closed before the node was back; restarted in"
        f" {restarted_in:.1f} s; all closed {closed_in:.0f} s after the last one: 0 lost, 0 duplicates,"
        " every outbox empty"
    )

"""Two instances of every service on one PostgreSQL database, through crashes and a rolling restart.

Intake ×2 (submissions spread over both), router ×2, tracker ×2 and each connector ×2 share their
state in PostgreSQL. While 600 dossiers of every procedure flow, one instance of each kind is
SIGKILLed at a random moment and started again; then every service is restarted instance by
instance under traffic, as a Kubernetes rollout does. Afterwards: every dossier is final (0 lost),
every agency acted once per dossier (0 duplicate side effects), the receipt codes are all distinct,
every timeline is complete read from either tracker; and tax notices that were pending on a tax
connector when it was killed are completed by the other one.
"""

from __future__ import annotations

import asyncio
import random
import re
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import httpx
import psycopg
import pytest

from schemas.agencies import Agency
from services.tools.localpg.server import create_database
from services.tools.stack.stack import LocalStack
from services.tools.stack.traffic import Submitted, Traffic
from tests.faults.test_kills import closed_dossiers
from tests.faults.test_leader_failover import assert_each_agency_acted_once
from tests.stack_helpers import (
    SHORT_TIERS,
    assert_all_running,
    partitions_held,
    running_replicated_stack,
    sample_traffic,
    wait_for,
)

pytestmark = [pytest.mark.kafka, pytest.mark.faults, pytest.mark.postgres, pytest.mark.timeout(1200)]

AGENCIES = (
    Agency.LAND,
    Agency.TAX,
    Agency.CIVIL_STATUS,
    Agency.RESIDENCE,
    Agency.SOCIAL_INSURANCE,
    Agency.BUSINESS_REGISTRY,
)
DOSSIERS = 600  # 100 of each of the six procedures the sample traffic makes
RATE_PER_S = 12.0


@pytest.fixture(scope="module")
def database_url(postgres_url: str) -> str:
    return create_database(postgres_url, f"replicas_{int(time.time() * 1000) % 10**8}")


@pytest.fixture(scope="module")
def stack(
    kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory, database_url: str
) -> Iterator[LocalStack]:
    with running_replicated_stack(
        kafka_bootstrap, tmp_path_factory, "replicas", database_url, agencies=AGENCIES, **SHORT_TIERS
    ) as running:
        yield running


@pytest.fixture
async def traffic(stack: LocalStack) -> AsyncIterator[Traffic]:
    async with sample_traffic(stack) as generator:
        yield generator


def _makers(traffic: Traffic) -> list[Callable[[], Awaitable[Submitted]]]:
    return [
        traffic.land_transfer,
        traffic.marriage,
        traffic.birth,
        traffic.first_certificate,
        traffic.death,
        traffic.household_business,
    ]


async def submit_paced(
    stack: LocalStack, traffic: Traffic, count: int, submitted: list[Submitted], *, rate: float
) -> None:
    """``count`` dossiers of every procedure in turn, through each intake instance in turn (as a
    load balancer spreads the counters' submissions), at ``rate`` a second."""
    intakes, makers = stack.urls("intake"), _makers(traffic)
    started = time.monotonic()
    for index in range(count):
        traffic.intake_url = intakes[index % len(intakes)]
        submitted.append(await makers[index % len(makers)]())
        await asyncio.sleep(max(0.0, started + (index + 1) / rate - time.monotonic()))
    traffic.intake_url = intakes[0]


async def kill_one_of_each_kind(stack: LocalStack, rng: random.Random, kills: Counter[str]) -> None:
    """One instance of every service SIGKILLed at a random moment, in a random order, and started
    again at once."""
    for kind in rng.sample(stack.kinds(), len(stack.kinds())):
        await asyncio.sleep(rng.uniform(0.5, 2.0))
        victim = rng.choice(stack.instances(kind)).name
        stack.kill_instance(victim)
        kills[victim] += 1
        await asyncio.to_thread(stack.start_instance, victim, 90)


async def wait_all_final(
    traffic: Traffic, stack: LocalStack, submitted: list[Submitted], within_s: float
) -> None:
    wanted = {s.dossier_id for s in submitted}
    seen: dict[str, Any] = {}

    async def all_closed() -> bool:
        nonlocal seen
        try:
            await traffic.pay_waiting_notices()
            seen = await closed_dossiers(stack.urls("tracker")[0])
        except httpx.HTTPError:
            return False
        return wanted <= seen.keys() and all(seen[d]["closed"] for d in wanted)

    try:
        await wait_for(all_closed, within_s, "every dossier closed", interval_s=1.0)
    except AssertionError:
        missing = wanted - seen.keys()
        still_open = [d for d in wanted & seen.keys() if not seen[d]["closed"]]
        raise AssertionError(f"{len(missing)} never seen, {len(still_open)} still open") from None


def pending_notices_by_owner(database_url: str) -> Counter[str]:
    """Pending tax-notice polls by the lease owner (``host-pid-random``) holding them now."""
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT lease_owner, count(*) FROM connector_tax.handoffs"
            " WHERE state = 'pending' AND lease_owner IS NOT NULL GROUP BY lease_owner"
        ).fetchall()
    return Counter({str(owner): int(n) for owner, n in rows})


def _pid_of_owner(owner: str) -> int:
    match = re.search(r"-(\d+)-[0-9a-f]+$", owner)
    assert match, owner
    return int(match.group(1))


async def timelines_agree(stack: LocalStack, submitted: list[Submitted]) -> None:
    """Every dossier's timeline, read from each tracker instance, is complete and the same."""
    first, *others = stack.urls("tracker")
    async with httpx.AsyncClient(timeout=10.0) as http:
        for dossier in submitted:
            detail = (await http.get(f"{first}/dossiers/{dossier.dossier_id}")).json()
            types = Counter(entry["event_type"] for entry in detail["timeline"])
            complete = types["dossier.received"] == 1 and types["dossier.closed"] == 1
            assert complete and types["handoff.outcome"] >= types["handoff.requested"] > 0, (dossier, types)
            for other in others:
                again = (await http.get(f"{other}/dossiers/{dossier.dossier_id}")).json()
                assert again["timeline"] == detail["timeline"], dossier


async def test_two_instances_of_everything_on_postgres_through_kills_and_a_rolling_restart(
    stack: LocalStack, traffic: Traffic, database_url: str
) -> None:
    rng = random.Random(19)
    assert all(len(stack.instances(kind)) == 2 for kind in stack.kinds())
    held = await partitions_held(stack, "router")
    assert len(held) == 2, f"both routers hold partitions: {held}"

    submitted: list[Submitted] = []
    kills: Counter[str] = Counter()
    started = time.monotonic()
    flowing = asyncio.create_task(submit_paced(stack, traffic, DOSSIERS // 2, submitted, rate=RATE_PER_S))
    await asyncio.sleep(3)
    await kill_one_of_each_kind(stack, rng, kills)
    await flowing
    assert len(kills) == len(stack.kinds()), kills

    # Land transfers wait on their tax notice, polled by one tax connector or the other: kill the one
    # that holds some of those polls and keep it down; the other takes them over once its lease ends.
    transfers = [await traffic.land_transfer() for _ in range(10)]
    submitted += transfers
    tax = {stack.processes[i.name].pid: i.name for i in stack.instances("connector-tax")}
    holder: dict[str, int] = {}

    async def one_tax_instance_holds_notices() -> bool:
        owners = await asyncio.to_thread(pending_notices_by_owner, database_url)
        mine = {tax[pid]: n for owner, n in owners.items() if (pid := _pid_of_owner(owner)) in tax}
        holder.update(mine)
        return bool(mine)

    await wait_for(one_tax_instance_holds_notices, 60, "a tax connector polling pending notices")
    victim = max(holder, key=lambda name: holder[name])
    stack.kill_instance(victim)
    await traffic.pay_waiting_notices()
    await wait_all_final(traffic, stack, transfers, within_s=120)
    await asyncio.to_thread(stack.start_instance, victim, 90)

    # A rolling restart of every service, under traffic.
    flowing = asyncio.create_task(submit_paced(stack, traffic, DOSSIERS // 2, submitted, rate=RATE_PER_S))
    rolled = {kind: await asyncio.to_thread(stack.rolling_restart, kind, 90) for kind in stack.kinds()}
    await flowing

    await wait_all_final(traffic, stack, submitted, within_s=420)
    details = await closed_dossiers(stack.urls("tracker")[1])
    wrong = [(s.procedure_code, s.expected, details[s.dossier_id]["result"]) for s in submitted]
    wrong = [w for w in wrong if w[1] != w[2]]
    assert not wrong, f"{len(wrong)} dossiers did not end as expected, e.g. {wrong[:5]}"
    effects = await assert_each_agency_acted_once(stack, submitted)
    codes = [s.dossier_code for s in submitted]
    assert len(set(codes)) == len(codes), "two dossiers share a receipt code"
    await timelines_agree(stack, submitted)
    assert_all_running(stack)
    per_kind = Counter(dossier.procedure_code for dossier in submitted)
    print(
        f"{len(submitted)} dossiers {dict(per_kind)} in {time.monotonic() - started:.0f} s, two instances "
        f"of every service on PostgreSQL; kills {dict(kills)}; {victim} killed while holding "
        f"{holder[victim]} pending notices; rolling restarts (s per instance) "
        f"{ {k: [round(t, 1) for t in v] for k, v in rolled.items()} }; effects {effects}: "
        "0 lost, 0 duplicates, receipt codes distinct, timelines equal on both trackers"
    )

"""Crashes during a run: every service and connector SIGKILLed at random moments while 500 dossiers flow,
and the broker itself SIGKILLed and restarted. Afterwards every dossier is closed with its expected
result (0 lost) and every agency acted once per dossier (0 duplicate side effects)."""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

from schemas.agencies import Agency
from services.tools.localkafka.choice import KafkaEndpoint
from services.tools.stack.stack import LocalStack
from services.tools.stack.traffic import Submitted, Traffic
from tests.stack_helpers import SHORT_TIERS, assert_all_running, records, running_stack, sample_traffic

pytestmark = [pytest.mark.kafka, pytest.mark.faults]

KILLABLE = ["intake", "router", "tracker", "connector-land", "connector-tax", "connector-civil_status"]


@pytest.fixture(scope="module")
def stack(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    with running_stack(kafka_bootstrap, tmp_path_factory, "kills", **SHORT_TIERS) as running:
        yield running


@pytest.fixture
async def traffic(stack: LocalStack) -> AsyncIterator[Traffic]:
    async with sample_traffic(stack) as generator:
        yield generator


async def closed_dossiers(tracker_url: str) -> dict[str, dict[str, Any]]:
    """Every dossier the tracker knows, by id (paged)."""
    found: dict[str, dict[str, Any]] = {}
    async with httpx.AsyncClient(timeout=30.0) as http:
        offset = 0
        while True:
            page = (await http.get(f"{tracker_url}/dossiers", params={"limit": 500, "offset": offset})).json()
            found.update({item["dossier_id"]: item for item in page["items"]})
            offset += page["limit"]
            if offset >= page["total"]:
                return found


async def wait_all_closed(
    traffic: Traffic, stack: LocalStack, submitted: list[Submitted], within_s: float
) -> dict[str, Any]:
    deadline = time.monotonic() + within_s
    wanted = {s.dossier_id for s in submitted}
    seen: dict[str, Any] = {}
    while time.monotonic() < deadline:
        try:
            await traffic.pay_waiting_notices()
            seen = await closed_dossiers(stack.tracker_url)
        except httpx.HTTPError:
            await asyncio.sleep(0.5)  # the tracker is restarting
            continue
        if wanted <= seen.keys() and all(seen[d]["closed"] for d in wanted):
            return {d: seen[d] for d in wanted}
        await asyncio.sleep(1.0)
    missing = wanted - seen.keys()
    still_open = [d for d in wanted & seen.keys() if not seen[d]["closed"]]
    raise AssertionError(f"after {within_s} s: {len(missing)} never seen, {len(still_open)} still open")


async def assert_no_duplicate_side_effects(stack: LocalStack, submitted: list[Submitted]) -> dict[str, int]:
    marriages = [s for s in submitted if s.procedure_code == "9.900005"]
    transfers = [s for s in submitted if s.procedure_code == "9.900001"]
    wives = Counter(r["vo_so_dinh_danh"] for r in await records(stack, Agency.CIVIL_STATUS, "marriages"))
    ours = [m.form["wife"]["citizen_id"] for m in marriages]
    assert all(wives[w] == 1 for w in ours), "a marriage registered twice, or not at all"
    parcels = {t.form["parcel_id"] for t in transfers}
    changes = Counter(r["parcel_id"] for r in await records(stack, Agency.LAND, "ownership_changes"))
    assert all(changes[p] == 1 for p in parcels), "an ownership change made twice, or not at all"
    notices = Counter(r["thua_dat"] for r in await records(stack, Agency.TAX, "notices"))
    assert all(notices[p] == 1 for p in parcels), "a tax notice issued twice, or not at all"
    return {"marriages": len(ours), "transfers": len(parcels)}


async def killer(
    stack: LocalStack, stop: asyncio.Event, covered: asyncio.Event, kills: Counter[str], rng: random.Random
) -> None:
    """SIGKILLs one service at a random moment every second or so, and starts it again at once; each
    round of kills goes through every service once, in a random order."""
    order: list[str] = []
    while not stop.is_set():
        await asyncio.sleep(rng.uniform(0.3, 1.2))
        if not order:
            order = rng.sample(KILLABLE, len(KILLABLE))
        name = order.pop()
        process = stack.processes[name]
        process.kill()
        kills[name] += 1
        await asyncio.to_thread(process.start)
        await asyncio.to_thread(process.wait_healthy, 60)
        if len(kills) == len(KILLABLE):
            covered.set()


async def test_sigkill_every_service_at_random_during_500_dossiers(
    stack: LocalStack, traffic: Traffic
) -> None:
    rng = random.Random(500)
    kills: Counter[str] = Counter()
    stop, covered = asyncio.Event(), asyncio.Event()
    chaos = asyncio.create_task(killer(stack, stop, covered, kills, rng))
    submitted: list[Submitted] = []
    started = time.monotonic()
    try:
        for index in range(500):  # about 20 dossiers a second, so that the kills fall all along the run
            submitted.append(await (traffic.land_transfer() if index % 5 == 0 else traffic.marriage()))
            await asyncio.sleep(max(0.0, started + (index + 1) / 20 - time.monotonic()))
        await asyncio.wait_for(covered.wait(), timeout=120)  # every service killed at least once
    finally:
        stop.set()
        await chaos
    details = await wait_all_closed(traffic, stack, submitted, within_s=300)
    assert all(d["result"] == "completed" for d in details.values()), Counter(
        d["result"] for d in details.values()
    )
    effects = await assert_no_duplicate_side_effects(stack, submitted)
    assert len(await closed_dossiers(stack.tracker_url)) >= len(submitted)
    assert set(kills) == set(KILLABLE), f"every service was killed at least once: {dict(kills)}"
    print(
        f"500 dossiers ({effects}) in {time.monotonic() - started:.0f} s with {sum(kills.values())} kills "
        f"{dict(kills)}: 0 lost, 0 duplicates"
    )
    assert_all_running(stack)


async def test_broker_sigkilled_and_restarted_during_a_run(
    stack: LocalStack, traffic: Traffic, kafka: KafkaEndpoint
) -> None:
    if kafka.broker is None:
        pytest.skip("the broker is not ours to kill (KAFKA_BOOTSTRAP_SERVERS or a container)")
    submitted = [await traffic.marriage() for _ in range(30)]
    kafka.broker.kill()
    # Intake keeps accepting while Kafka is down: the dossiers wait in its outbox.
    submitted += [await traffic.marriage() for _ in range(20)]
    await asyncio.sleep(2)
    await asyncio.to_thread(kafka.broker.start)
    submitted += [await traffic.land_transfer() for _ in range(5)]
    submitted += [await traffic.marriage() for _ in range(30)]
    details = await wait_all_closed(traffic, stack, submitted, within_s=240)
    assert all(d["result"] == "completed" for d in details.values())
    await assert_no_duplicate_side_effects(stack, submitted)
    assert_all_running(stack)

"""Two instances of every service on one PostgreSQL database and a real broker: dossiers handed in at
either intake all reach their final state, both trackers show them, the receipt codes never repeat,
and both routers share the partitions — also after one of them was SIGKILLed and started again."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import pytest

from schemas.agencies import Agency
from services.tools.stack.stack import LocalStack
from services.tools.stack.traffic import Traffic
from tests.stack_helpers import (
    SHORT_TIERS,
    assert_all_running,
    partitions_held,
    running_replicated_stack,
    sample_traffic,
    submit_through_every_intake,
    wait_for,
    wait_until_closed,
)

# Land transfers (land, then tax and a notice the citizen pays, then land again) and marriages.
AGENCIES = (Agency.LAND, Agency.TAX, Agency.CIVIL_STATUS)
LAND_TRANSFER, MARRIAGE = "9.900001", "9.900005"


@pytest.fixture
def stack(
    kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory, fresh_database_url: str
) -> Iterator[LocalStack]:
    with running_replicated_stack(
        kafka_bootstrap, tmp_path_factory, "replicas", fresh_database_url, agencies=AGENCIES, **SHORT_TIERS
    ) as running:
        yield running


@pytest.fixture
async def traffic(stack: LocalStack) -> AsyncIterator[Traffic]:
    async with sample_traffic(stack) as generator:
        yield generator


async def test_two_instances_of_every_service_share_the_work(stack: LocalStack, traffic: Traffic) -> None:
    assert [i.name for i in stack.instances("router")] == ["router-1", "router-2"]
    assert len(set(stack.urls("intake"))) == len(set(stack.urls("tracker"))) == 2
    held = await partitions_held(stack, "router")
    assert set(held) == {"router-1", "router-2"}, f"both routers hold partitions: {held}"

    first = await submit_through_every_intake(stack, traffic, [traffic.land_transfer, traffic.marriage] * 3)
    # One router dies; the other takes its partitions over, and the dossiers go on.
    await asyncio.to_thread(stack.kill_instance, "router-2")
    later = await submit_through_every_intake(stack, traffic, [traffic.marriage, traffic.land_transfer] * 3)
    await asyncio.to_thread(stack.start_instance, "router-2")
    submitted = first + later

    for tracker_url in stack.urls("tracker"):  # each tracker answers for every dossier
        details = await wait_until_closed(traffic, tracker_url, submitted, within_s=90)
        assert {d["result"] for d in details.values()} == {"completed"}, details
        assert {d["procedure"]["code"] for d in details.values()} == {LAND_TRANSFER, MARRIAGE}
        assert sorted(d["dossier_code"] for d in details.values()) == sorted(
            s.dossier_code for s in submitted
        )

    codes = [s.dossier_code for s in submitted]
    assert len(set(codes)) == len(codes), f"a receipt code given twice: {sorted(codes)}"

    async def both_routers_hold_partitions() -> bool:
        return set(await partitions_held(stack, "router")) == {"router-1", "router-2"}

    await wait_for(both_routers_hold_partitions, within_s=30, what="router-2 holding partitions again")
    assert_all_running(stack)

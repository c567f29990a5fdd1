"""The heart of the mission, end to end: dossiers handed in over HTTP cross agencies on a real broker,
each service and agency sandbox running as its own process, until every dossier reaches its final status."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import httpx
import pytest

from connectors.civil_status.client import CivilStatusClient
from connectors.land.client import LandClient
from connectors.tax.client import TaxClient
from schemas.agencies import Agency
from schemas.topics import DOSSIER_RECEIVED
from services.tools.stack.samples import SampleDossiers
from services.tools.stack.stack import DEFAULT_AGENCIES, LocalStack, StackPorts
from services.tools.stack.traffic import Traffic
from tests.stack_helpers import received_count, tracker_knows, wait_until_closed
from tests.unit.test_intake import MALFORMED

pytestmark = pytest.mark.kafka

PIT_RATE, REGISTRATION_FEE_RATE = 0.02, 0.005  # the tax sandbox's default rates


@pytest.fixture(scope="module")
def stack(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    work_dir = tmp_path_factory.mktemp("stack")
    prefix = f"e2e{int(time.time() * 1000) % 10**8}."
    with LocalStack(
        kafka_bootstrap,
        work_dir,
        topic_prefix=prefix,
        ports=StackPorts.free(DEFAULT_AGENCIES),
        sign_in=False,
    ) as running:
        yield running


async def test_dossiers_cross_agencies_to_their_final_status(stack: LocalStack) -> None:
    traffic = Traffic(
        stack.intake_url,
        stack.tracker_url,
        stack.sandbox_url(Agency.LAND),
        stack.sandbox_url(Agency.TAX),
        seed=11,
    )
    try:
        transfer = await traffic.land_transfer()
        first = await traffic.first_certificate()
        marriage = await traffic.marriage()
        refused = await traffic.land_transfer(wrong_owner=True)
        details = await wait_until_closed(
            traffic, stack.tracker_url, [transfer, first, marriage, refused], 120
        )
    finally:
        await traffic.aclose()

    done = details[transfer.dossier_id]
    assert done["result"] == "completed" and done["status"]["code"] == 9
    assert [leg["step_id"] for leg in done["legs"]] == [
        "check_dossier",
        "assess_obligations",
        "register_transfer",
    ]
    assert len(done["pauses"]) == 1 and done["pauses"][0]["end"] is not None, "the clock paused while paying"

    tax_leg = next(leg for leg in done["legs"] if leg["agency"] == "tax")
    async with TaxClient(stack.sandbox_url(Agency.TAX)) as tax:
        notice = await tax.get_notice(tax_leg["agency_reference"])
    declared = transfer.form["declared_value_vnd"]
    assert notice.paid
    assert notice.personal_income_tax_vnd == round(declared * PIT_RATE)
    assert notice.registration_fee_vnd == round(declared * REGISTRATION_FEE_RATE)
    assert notice.total_vnd == notice.personal_income_tax_vnd + notice.registration_fee_vnd

    async with LandClient(stack.sandbox_url(Agency.LAND)) as land:
        parcel = await land.get_parcel(transfer.form["parcel_id"])
        certified = await land.get_parcel(first.form["parcel_id"])
    assert parcel.owner_citizen_id == transfer.form["transferee"]["citizen_id"], (
        "the registry shows the new owner"
    )
    assert certified.has_certificate and details[first.dossier_id]["result"] == "completed"

    async with CivilStatusClient(stack.sandbox_url(Agency.CIVIL_STATUS)) as civil:
        registered = await civil.get_marriage(marriage.form["wife"]["citizen_id"])
    assert registered is not None, "the civil-status registry holds the marriage"
    assert details[marriage.dossier_id]["result"] == "completed"

    returned = details[refused.dossier_id]
    assert returned["result"] == "returned" and returned["status"]["code"] == 8
    assert "land" in returned["reason"] and "người sử dụng đất đã đăng ký" in returned["reason"], returned[
        "reason"
    ]


async def test_one_key_one_dossier_and_malformed_dossiers_never_reach_kafka(stack: LocalStack) -> None:
    topic = stack.topic_prefix + DOSSIER_RECEIVED
    before = await received_count(stack.bootstrap_servers, topic)
    dossier = SampleDossiers(seed=5).marriage()
    async with httpx.AsyncClient(base_url=stack.intake_url, timeout=10.0) as http:
        answers = [
            await http.post("/dossiers", json=dossier, headers={"Idempotency-Key": "once"}) for _ in range(3)
        ]
        assert {a.json()["dossier_id"] for a in answers} == {answers[0].json()["dossier_id"]}
        refused = []
        for name, body, _, _ in MALFORMED:  # the 20 kinds of the intake unit tests, now over real HTTP
            content = body if isinstance(body, bytes) else json.dumps(body).encode()
            headers = {"Idempotency-Key": name, "Content-Type": "application/json"}
            refused.append(await http.post("/dossiers", content=content, headers=headers))
    assert len(refused) == 20
    assert all(400 <= a.status_code < 500 and a.json()["errors"] for a in refused)
    await tracker_knows(
        stack.tracker_url, answers[0].json()["dossier_id"]
    )  # the one dossier went through Kafka
    assert await received_count(stack.bootstrap_servers, topic) - before == 1

"""Birth, death and household-business procedures end to end: all six agencies, each sandbox and service
its own process, on a real broker — including a birth whose insurance leg fails first and then recovers."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from schemas.agencies import Agency
from services.tools.stack.stack import LocalStack, StackPorts
from services.tools.stack.traffic import Submitted, Traffic

pytestmark = pytest.mark.kafka

ALL_AGENCIES = tuple(Agency)
_seeds = iter(range(31, 10_000))  # each test's citizens differ: a registry refuses a birth registered twice


@pytest.fixture(scope="module")
def stack(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    work_dir = tmp_path_factory.mktemp("more-procedures")
    prefix = f"e2e{int(time.time() * 1000) % 10**8}."
    with LocalStack(
        kafka_bootstrap,
        work_dir,
        topic_prefix=prefix,
        agencies=ALL_AGENCIES,
        ports=StackPorts.free(ALL_AGENCIES),
        sign_in=False,
    ) as running:
        yield running


@pytest.fixture
async def traffic(stack: LocalStack) -> Any:
    traffic = Traffic(
        stack.intake_url,
        stack.tracker_url,
        stack.sandbox_url(Agency.LAND),
        stack.sandbox_url(Agency.TAX),
        seed=next(_seeds),
    )
    yield traffic
    await traffic.aclose()


async def closed(tracker_url: str, dossiers: list[Submitted], within_s: float) -> dict[str, Any]:
    """The tracker's view of each dossier once every one is closed (fails at the deadline)."""
    deadline = time.monotonic() + within_s
    seen: dict[str, Any] = {}
    async with httpx.AsyncClient(base_url=tracker_url, timeout=5.0) as http:
        while time.monotonic() < deadline:
            for dossier in dossiers:
                answer = await http.get(f"/dossiers/{dossier.dossier_id}")
                if answer.status_code == 200:
                    seen[dossier.dossier_id] = answer.json()
            if len(seen) == len(dossiers) and all(d["closed"] for d in seen.values()):
                return seen
            await asyncio.sleep(0.2)
    still_open = {k: [(leg["step_id"], leg["state"]) for leg in v["legs"]] for k, v in seen.items()}
    raise AssertionError(f"not closed within {within_s} s: {still_open}; seen {len(seen)}/{len(dossiers)}")


async def records(stack: LocalStack, agency: Agency, table: str) -> list[dict[str, Any]]:
    async with httpx.AsyncClient(base_url=stack.sandbox_url(agency), timeout=5.0) as http:
        answer = await http.get(f"/_sandbox/records/{table}")
        answer.raise_for_status()
        rows: list[dict[str, Any]] = answer.json()["records"]
        return rows


def legs(detail: dict[str, Any]) -> dict[str, str]:
    return {leg["step_id"]: leg["state"] for leg in detail["legs"]}


async def test_birth_death_and_household_business_complete(stack: LocalStack, traffic: Traffic) -> None:
    birth, death, business = await traffic.birth(), await traffic.death(), await traffic.household_business()
    details = await closed(stack.tracker_url, [birth, death, business], 120)

    born = details[birth.dossier_id]
    assert born["result"] == "completed", born
    assert legs(born) == {
        "register_birth": "completed",
        "register_residence": "completed",
        "issue_health_card": "completed",
    }
    [child] = [
        r
        for r in await records(stack, Agency.CIVIL_STATUS, "births")
        if r["ho_ten"] == birth.form["child_full_name"]
    ]
    residents = {r["so_dinh_danh"]: r for r in await records(stack, Agency.RESIDENCE, "thuong_tru")}
    assert residents[child["so_dinh_danh_ca_nhan"]]["trang_thai"] == "dang_cu_tru"
    assert residents[child["so_dinh_danh_ca_nhan"]]["dia_chi"] == birth.form["residence_address"]
    cards = {r["personal_id"] for r in await records(stack, Agency.SOCIAL_INSURANCE, "health_cards")}
    assert child["so_dinh_danh_ca_nhan"] in cards, "the child has a health-insurance card"

    died = details[death.dossier_id]
    assert died["result"] == "completed", died
    assert legs(died) == {
        "register_death": "completed",
        "remove_residence": "completed",
        "pay_funeral_allowance": "completed",
    }
    deceased_id = death.form["deceased"]["citizen_id"]
    removed = {r["so_dinh_danh"]: r for r in await records(stack, Agency.RESIDENCE, "thuong_tru")}
    assert removed[deceased_id]["trang_thai"] == "da_xoa"
    [allowance] = [
        r
        for r in await records(stack, Agency.SOCIAL_INSURANCE, "funeral_allowances")
        if r["deceased_id"] == deceased_id
    ]
    assert allowance["amount_vnd"] == 10 * 2_340_000
    assert allowance["beneficiary_id"] == death.form["allowance_beneficiary"]["citizen_id"]

    registered = details[business.dossier_id]
    assert registered["result"] == "completed", registered
    assert legs(registered) == {"register_business": "completed", "register_tax": "completed"}
    [shop] = [
        r
        for r in await records(stack, Agency.BUSINESS_REGISTRY, "businesses")
        if r["dossier_code"] == business.dossier_code
    ]
    [taxed] = [
        r for r in await records(stack, Agency.TAX, "households") if r["ma_ho_so"] == business.dossier_code
    ]
    assert shop["owner_citizen_id"] == taxed["chu_ho_id"] == business.form["owner"]["citizen_id"]
    leg_refs = {leg["step_id"]: leg["agency_reference"] for leg in registered["legs"]}
    assert leg_refs == {"register_business": shop["business_code"], "register_tax": taxed["ma_so_thue"]}


async def test_a_birth_whose_insurance_leg_fails_first_completes_after_retry(
    stack: LocalStack, traffic: Traffic
) -> None:
    admin = stack.sandbox_admin_headers()
    url = stack.sandbox_url(Agency.SOCIAL_INSURANCE)
    async with httpx.AsyncClient(base_url=url, timeout=5.0, headers=admin) as http:
        # The next two calls to social insurance answer 503; the connector host retries in process.
        set_faults = await http.put("/_sandbox/faults", json={"fail_next": 2, "error_status": 503})
        assert set_faults.status_code == 200, set_faults.text
        birth = await traffic.birth()
        details = await closed(stack.tracker_url, [birth], 120)
        faults = (await http.get("/_sandbox/faults")).json()

    assert faults["fail_next"] == 0, "both injected failures were met"
    born = details[birth.dossier_id]
    assert born["result"] == "completed", born
    assert legs(born)["issue_health_card"] == "completed"
    requests = [
        r
        for r in await records(stack, Agency.SOCIAL_INSURANCE, "requests")
        if birth.dossier_code in r["body"]
    ]
    assert len(requests) == 1 and requests[0]["status"] == "APPROVED", (
        "retried, yet one request at the agency"
    )

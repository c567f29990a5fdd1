"""Land registration office sandbox, in process, through its client."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime

import httpx
import pytest

from connectors.errors import AgencyProtocolError, AgencyRejected, AgencyUnavailable
from connectors.land.client import LandClient, Parcel
from connectors.land.sandbox.app import LandSandboxSettings, create_app
from schemas.examples.land_parcels import SEED_PARCELS, SeedParcel
from tests.clock import fixed, travel, vn
from tests.sandboxes.helpers import BASE_URL, asgi_client, records

CERTIFIED = SEED_PARCELS[1]  # has a certificate: can be transferred
UNCERTIFIED = SEED_PARCELS[0]  # no certificate yet: first-certificate cases
BUYER_ID, BUYER_NAME = "001203004567", "Ngô Thị Hoa"


@dataclass
class Land:
    client: LandClient
    http: httpx.AsyncClient


@pytest.fixture
async def land() -> AsyncIterator[Land]:
    app = create_app(":memory:", settings=LandSandboxSettings(job_seconds=0.05))
    transport = httpx.ASGITransport(app=app)
    async with LandClient(BASE_URL, transport=transport) as client, asgi_client(app) as http:
        yield Land(client, http)


async def check_transfer(land: Land, parcel: SeedParcel, key: str, **changes: object) -> str:
    args: dict[str, object] = {
        "parcel_id": parcel["parcel_id"],
        "transferor_citizen_id": parcel["owner_citizen_id"],
        "transferee_citizen_id": BUYER_ID,
        "transferee_name": BUYER_NAME,
        "declared_value_vnd": 2_000_000_000,
        "area_m2": parcel["area_m2"],
        "idempotency_key": key,
    }
    args.update(changes)
    job = await land.client.start_transfer_check(**args)  # type: ignore[arg-type]
    assert job.status == "running"
    assert job.poll == f"/api/v1/jobs/{job.job_id}"
    return job.job_id


async def test_transfer_check_succeeds_with_a_cadastral_slip(land: Land) -> None:
    job_id = await check_transfer(land, CERTIFIED, "h-1")
    done = await land.client.wait_for_job(job_id, within_s=5)
    slip = done.check_result()
    assert slip.parcel_id == CERTIFIED["parcel_id"]
    assert slip.area_m2 == CERTIFIED["area_m2"]
    assert slip.land_use_purpose == CERTIFIED["land_use_purpose"]
    assert slip.cadastral_slip_no.startswith("PCTT-")
    assert slip.assessed_value_vnd and slip.assessed_value_vnd > 0


@pytest.mark.parametrize(
    ("changes", "code"),
    [
        ({"parcel_id": "TD-99-999"}, "PARCEL_NOT_FOUND"),
        ({"transferor_citizen_id": "079099999999"}, "NOT_OWNER"),
        ({"area_m2": CERTIFIED["area_m2"] + 10}, "AREA_MISMATCH"),
    ],
)
async def test_transfer_check_rejections_carry_both_languages(
    land: Land, changes: dict[str, object], code: str
) -> None:
    job_id = await check_transfer(land, CERTIFIED, f"h-{code}", **changes)
    with pytest.raises(AgencyRejected) as rejected:
        await land.client.wait_for_job(job_id, within_s=5)
    assert rejected.value.code == code
    assert rejected.value.reason and rejected.value.reason_en
    job = await land.client.get_job(job_id)
    assert job.status == "rejected" and job.reason is not None and job.reason.code == code


async def test_transfer_of_uncertified_parcel_is_rejected(land: Land) -> None:
    job_id = await check_transfer(land, UNCERTIFIED, "h-nocert")
    with pytest.raises(AgencyRejected, match="chưa được cấp Giấy chứng nhận"):
        await land.client.wait_for_job(job_id)


async def test_transfer_registration_changes_the_owner(land: Land) -> None:
    await land.client.wait_for_job(await check_transfer(land, CERTIFIED, "h-check"))
    job = await land.client.start_transfer_registration(
        parcel_id=CERTIFIED["parcel_id"],
        transferee_citizen_id=BUYER_ID,
        transferee_name=BUYER_NAME,
        tax_paid_reference="CTNT-2025-000001",
        idempotency_key="h-register",
    )
    certificate = (await land.client.wait_for_job(job.job_id)).certificate_result()
    assert certificate.certificate_no.startswith("GCN-")
    parcel = await land.client.get_parcel(CERTIFIED["parcel_id"])
    assert (parcel.owner_citizen_id, parcel.owner_name) == (BUYER_ID, BUYER_NAME)
    assert parcel.certificate_no == certificate.certificate_no
    changes = await records(land.http, "ownership_changes")
    assert len(changes) == 1
    assert changes[0]["from_citizen_id"] == CERTIFIED["owner_citizen_id"]
    assert changes[0]["to_citizen_id"] == BUYER_ID


@asynccontextmanager
async def land_office(clock: Callable[[], datetime] | None = None) -> AsyncIterator[Land]:
    settings = LandSandboxSettings(job_seconds=0.05)
    app = (
        create_app(":memory:", settings=settings)
        if clock is None
        else create_app(settings=settings, clock=clock)
    )
    async with (
        LandClient(BASE_URL, transport=httpx.ASGITransport(app=app)) as client,
        asgi_client(app) as http,
    ):
        yield Land(client, http)


async def slip_and_certificate_numbers(land: Land) -> tuple[str, str]:
    slip = (await land.client.wait_for_job(await check_transfer(land, CERTIFIED, "ny-check"))).check_result()
    job = await land.client.start_transfer_registration(
        parcel_id=CERTIFIED["parcel_id"],
        transferee_citizen_id=BUYER_ID,
        transferee_name=BUYER_NAME,
        tax_paid_reference="CTNT-2027-000001",
        idempotency_key="ny-register",
    )
    certificate = (await land.client.wait_for_job(job.job_id)).certificate_result()
    return slip.cadastral_slip_no, certificate.certificate_no


async def test_numbers_issued_after_midnight_on_new_year_in_vietnam_carry_the_new_year() -> None:
    # 00:30 on 1 January 2027 in Vietnam is still 31 December 2026 in UTC.
    async with land_office(fixed(vn(2027, 1, 1, 0, 30))) as land:
        assert await slip_and_certificate_numbers(land) == ("PCTT-2027-000001", "GCN-2027-000001")


async def test_by_default_the_year_of_the_numbers_is_read_from_the_real_clock() -> None:
    with travel(vn(2027, 1, 1, 0, 30)):
        async with land_office() as land:
            slip_no, certificate_no = await slip_and_certificate_numbers(land)
    assert slip_no.startswith("PCTT-2027-") and certificate_no.startswith("GCN-2027-")


async def test_registration_without_a_successful_check_is_rejected(land: Land) -> None:
    job = await land.client.start_transfer_registration(
        parcel_id=CERTIFIED["parcel_id"],
        transferee_citizen_id=BUYER_ID,
        transferee_name=BUYER_NAME,
        tax_paid_reference="CTNT-2025-000001",
        idempotency_key="h-register-early",
    )
    with pytest.raises(AgencyRejected) as rejected:
        await land.client.wait_for_job(job.job_id)
    assert rejected.value.code == "NO_TRANSFER_CHECK"
    assert await records(land.http, "ownership_changes") == []


async def test_first_certificate_check_and_issue(land: Land) -> None:
    owner = UNCERTIFIED
    check = await land.client.start_first_certificate_check(
        parcel_id=owner["parcel_id"],
        applicant_citizen_id=owner["owner_citizen_id"],
        applicant_name=owner["owner_name"],
        area_m2=owner["area_m2"],
        idempotency_key="f-check",
    )
    assert (await land.client.wait_for_job(check.job_id)).check_result().parcel_id == owner["parcel_id"]
    issue = await land.client.start_first_certificate(
        parcel_id=owner["parcel_id"],
        applicant_citizen_id=owner["owner_citizen_id"],
        applicant_name=owner["owner_name"],
        tax_paid_reference="CTNT-2025-000002",
        idempotency_key="f-issue",
    )
    certificate = (await land.client.wait_for_job(issue.job_id)).certificate_result()
    assert (await land.client.get_parcel(owner["parcel_id"])).has_certificate
    assert [c["certificate_no"] for c in await records(land.http, "certificates")] == [
        certificate.certificate_no
    ]


@pytest.mark.parametrize(
    ("parcel", "applicant", "code"),
    [
        (CERTIFIED, CERTIFIED["owner_citizen_id"], "ALREADY_CERTIFIED"),
        (UNCERTIFIED, "079099999999", "NOT_REGISTERED_USER"),
    ],
)
async def test_first_certificate_check_rejections(
    land: Land, parcel: SeedParcel, applicant: str, code: str
) -> None:
    job = await land.client.start_first_certificate_check(
        parcel_id=parcel["parcel_id"],
        applicant_citizen_id=applicant,
        applicant_name="Ai Đó",
        area_m2=parcel["area_m2"],
        idempotency_key=f"f-{code}",
    )
    with pytest.raises(AgencyRejected) as rejected:
        await land.client.wait_for_job(job.job_id)
    assert rejected.value.code == code


async def test_same_key_returns_the_same_job_and_one_record(land: Land) -> None:
    first = await check_transfer(land, CERTIFIED, "same-key")
    again = await check_transfer(land, CERTIFIED, "same-key")
    assert first == again
    assert len(await records(land.http, "jobs")) == 1


async def test_same_key_different_body_is_a_protocol_error(land: Land) -> None:
    await check_transfer(land, CERTIFIED, "reused")
    with pytest.raises(AgencyProtocolError) as error:
        await check_transfer(land, CERTIFIED, "reused", declared_value_vnd=1)
    assert error.value.status_code == 422
    assert len(await records(land.http, "jobs")) == 1


async def test_invalid_request_is_400_naming_the_field(land: Land) -> None:
    answer = await land.http.post("/api/v1/transfer-checks", json={"parcel_id": "TD-1-1"})
    assert answer.status_code == 400
    assert "transferor_citizen_id" in {d["field"] for d in answer.json()["details"]}


async def test_unknown_parcel_lookup_is_a_rejection(land: Land) -> None:
    with pytest.raises(AgencyRejected):
        await land.client.get_parcel("TD-99-999")


async def test_added_parcel_can_be_looked_up(land: Land) -> None:
    parcel = Parcel(
        parcel_id="TD-77-1",
        area_m2=50.0,
        owner_citizen_id="079088000001",
        owner_name="Lý Văn Tư",
        land_use_purpose="ODT",
        has_certificate=True,
    )
    added = await land.client.add_parcel(parcel)
    assert added.parcel_id == "TD-77-1"
    assert (await land.client.get_parcel("TD-77-1")).owner_name == "Lý Văn Tư"
    assert (
        await land.http.post("/_sandbox/parcels", json=parcel.model_dump(exclude={"certificate_no"}))
    ).status_code == 409


async def test_faults_map_to_client_errors(land: Land) -> None:
    await land.http.put("/_sandbox/faults", json={"failure_rate": 1})
    with pytest.raises(AgencyUnavailable) as unavailable:
        await check_transfer(land, CERTIFIED, "fault-1")
    assert unavailable.value.status_code == 503
    await land.http.put("/_sandbox/faults", json={"failure_rate": 0, "malformed_rate": 1})
    with pytest.raises(AgencyProtocolError):
        await check_transfer(land, CERTIFIED, "fault-2")
    await land.http.delete("/_sandbox/faults")
    assert await records(land.http, "jobs") == []
    await check_transfer(land, CERTIFIED, "fault-1")  # the key was never used: the retry runs
    assert len(await records(land.http, "jobs")) == 1


async def test_job_runs_for_the_configured_time() -> None:
    app = create_app(":memory:", settings=LandSandboxSettings(job_seconds=0.5))
    async with LandClient(BASE_URL, transport=httpx.ASGITransport(app=app)) as client:
        job = await client.start_transfer_check(
            parcel_id=CERTIFIED["parcel_id"],
            transferor_citizen_id=CERTIFIED["owner_citizen_id"],
            transferee_citizen_id=BUYER_ID,
            transferee_name=BUYER_NAME,
            declared_value_vnd=1,
            area_m2=CERTIFIED["area_m2"],
            idempotency_key="slow",
        )
        assert (await client.get_job(job.job_id)).status == "running"
        with pytest.raises(AgencyUnavailable, match="still running"):
            await client.wait_for_job(job.job_id, within_s=0.1)
        assert (await client.wait_for_job(job.job_id, within_s=5)).status == "succeeded"

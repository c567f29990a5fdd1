"""The land connector against the land sandbox (and, for the chains, the tax connector against tax)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from connectors.base import Completed, HandoffResult, Pending, WaitingOnCitizen
from connectors.errors import AgencyProtocolError, AgencyRejected, AgencyUnavailable
from connectors.land.adapter import LandConnector, parse_poll_token, poll_token
from connectors.testing import SampleForms
from tests.connectors.conftest import LandSandbox, TaxSandbox, add_parcel, handoff, land_sandbox

SLIP_KEYS = {
    "cadastral_slip_no",
    "parcel_id",
    "area_m2",
    "land_use_purpose",
    "assessed_value_vnd",
}


def transfer_form(
    samples: SampleForms, owner: dict[str, Any], parcel_id: str, area: float = 120.5
) -> dict[str, Any]:
    form: dict[str, Any] = samples.land_transfer(parcel_id, owner, area)
    return form


async def pay_and_poll(tax: TaxSandbox, waiting: HandoffResult) -> Completed:
    """The citizen pays the notice at the bank; the runtime's next poll completes the tax leg."""
    assert isinstance(waiting, WaitingOnCitizen)
    assert await tax.connector.poll(waiting.poll_token) == waiting, "unpaid: still waiting, unchanged"
    await tax.client.pay(waiting.result["notice_no"], waiting.result["total_vnd"])
    paid = await tax.connector.poll(waiting.poll_token)
    assert isinstance(paid, Completed)
    return paid


async def poll_until_final(
    connector: LandConnector, result: HandoffResult, within_s: float = 5.0
) -> HandoffResult:
    deadline = time.monotonic() + within_s
    while isinstance(result, Pending):
        assert time.monotonic() < deadline, "the job did not finish in time"
        await asyncio.sleep(0.05)
        result = await connector.poll(result.poll_token)
    return result


async def test_land_transfer_chain_changes_the_owner(
    land: LandSandbox, tax: TaxSandbox, samples: SampleForms
) -> None:
    owner = samples.person()
    parcel_id = samples.parcel_id()
    await add_parcel(land, owner, parcel_id)
    form = transfer_form(samples, owner, parcel_id)

    checked = await land.connector.handle(handoff("check_transfer", "land_transfer", form))
    assert isinstance(checked, Completed)
    assert set(checked.result) == SLIP_KEYS | {"declared_value_vnd"}
    assert checked.result["parcel_id"] == parcel_id and checked.result["area_m2"] == 120.5
    assert checked.result["declared_value_vnd"] == form["declared_value_vnd"]
    assert checked.reference == checked.result["cadastral_slip_no"]

    waiting = await tax.connector.handle(
        handoff(
            "assess_transfer_obligations", "land_transfer", form, inputs={"check_dossier": checked.result}
        )
    )
    paid = await pay_and_poll(tax, waiting)

    inputs = {"check_dossier": checked.result, "assess_obligations": paid.result}
    registered = await land.connector.handle(
        handoff("register_transfer", "land_transfer", form, inputs=inputs)
    )
    assert isinstance(registered, Completed)
    assert set(registered.result) == {"certificate_no", "parcel_id"}
    assert registered.reference == registered.result["certificate_no"]
    parcel = await land.client.get_parcel(parcel_id)
    assert parcel.owner_citizen_id == form["transferee"]["citizen_id"]
    assert parcel.owner_name == form["transferee"]["full_name"]
    assert parcel.certificate_no == registered.reference
    [change] = (await land.http.get("/_sandbox/records/ownership_changes")).json()["records"]
    assert change["tax_paid_reference"] == paid.result["payment_reference"]


async def test_first_certificate_chain_certifies_the_parcel(
    land: LandSandbox, tax: TaxSandbox, samples: SampleForms
) -> None:
    user = samples.person()
    parcel_id = samples.parcel_id()
    await add_parcel(land, user, parcel_id, area_m2=200.0, certified=False)
    form = samples.first_land_certificate(parcel_id, user, 200.0)

    verified = await land.connector.handle(
        handoff("verify_first_certificate", "first_land_certificate", form)
    )
    assert isinstance(verified, Completed)
    assert set(verified.result) == SLIP_KEYS
    waiting = await tax.connector.handle(
        handoff(
            "assess_first_certificate_fees",
            "first_land_certificate",
            form,
            inputs={"verify": verified.result},
        )
    )
    paid = await pay_and_poll(tax, waiting)
    issued = await land.connector.handle(
        handoff(
            "issue_first_certificate",
            "first_land_certificate",
            form,
            inputs={"verify": verified.result, "fees": paid.result},
        )
    )
    assert isinstance(issued, Completed)
    assert set(issued.result) == {"certificate_no", "parcel_id"}
    parcel = await land.client.get_parcel(parcel_id)
    assert parcel.has_certificate and parcel.certificate_no == issued.reference


@pytest.mark.parametrize(
    ("case", "code", "words"),
    [
        ("wrong_owner", "NOT_OWNER", "Bên chuyển nhượng"),
        ("area", "AREA_MISMATCH", "không khớp với diện tích"),
        ("uncertified", "NO_CERTIFICATE", "chưa được cấp Giấy chứng nhận"),
        ("unknown_parcel", "PARCEL_NOT_FOUND", "không có trong cơ sở dữ liệu địa chính"),
    ],
)
async def test_check_rejections_carry_the_office_reason(
    land: LandSandbox, samples: SampleForms, case: str, code: str, words: str
) -> None:
    owner = samples.person()
    parcel_id = samples.parcel_id()
    if case != "unknown_parcel":
        await add_parcel(land, owner, parcel_id, certified=case != "uncertified")
    seller = samples.person() if case == "wrong_owner" else owner
    form = transfer_form(samples, seller, parcel_id, 150.0 if case == "area" else 120.5)
    with pytest.raises(AgencyRejected) as rejected:
        await land.connector.handle(handoff("check_transfer", "land_transfer", form))
    assert rejected.value.code == code
    assert words in rejected.value.reason, rejected.value.reason


async def test_first_certificate_of_a_certified_parcel_is_rejected(
    land: LandSandbox, samples: SampleForms
) -> None:
    user = samples.person()
    parcel_id = samples.parcel_id()
    await add_parcel(land, user, parcel_id, certified=True)
    form = samples.first_land_certificate(parcel_id, user, 120.5)
    with pytest.raises(AgencyRejected, match="đã được cấp Giấy chứng nhận"):
        await land.connector.handle(handoff("verify_first_certificate", "first_land_certificate", form))


async def test_registration_needs_the_payment_reference(land: LandSandbox, samples: SampleForms) -> None:
    owner = samples.person()
    parcel_id = samples.parcel_id()
    await add_parcel(land, owner, parcel_id)
    form = transfer_form(samples, owner, parcel_id)
    unpaid = {"assess": {"notice_no": "TB-2026-000001", "total_vnd": 1}}
    with pytest.raises(AgencyProtocolError, match="payment reference"):
        await land.connector.handle(handoff("register_transfer", "land_transfer", form, inputs=unpaid))
    assert await land.count("jobs") == 0


async def test_a_form_that_does_not_fit_is_a_protocol_error_without_personal_data(
    land: LandSandbox, samples: SampleForms
) -> None:
    owner = samples.person()
    form = transfer_form(samples, owner, samples.parcel_id())
    del form["declared_value_vnd"]
    with pytest.raises(AgencyProtocolError, match="declared_value_vnd") as broken:
        await land.connector.handle(handoff("check_transfer", "land_transfer", form))
    assert owner["citizen_id"] not in str(broken.value) and owner["full_name"] not in str(broken.value)


async def test_redelivered_requests_act_once(land: LandSandbox, samples: SampleForms) -> None:
    owner = samples.person()
    parcel_id = samples.parcel_id()
    await add_parcel(land, owner, parcel_id)
    form = transfer_form(samples, owner, parcel_id)
    check = handoff("check_transfer", "land_transfer", form)
    first, again = await land.connector.handle(check), await land.connector.handle(check)
    assert isinstance(first, Completed) and first == again
    assert await land.count("jobs") == 1

    inputs = {"check": first.result, "tax": {"payment_reference": "CTNT-2026-000007"}}
    register = handoff("register_transfer", "land_transfer", form, inputs=inputs)
    registered, redelivered = await land.connector.handle(register), await land.connector.handle(register)
    assert registered == redelivered
    assert await land.count("ownership_changes") == 1
    assert await land.count("certificates") == 1
    assert await land.count("jobs") == 2


async def test_an_unavailable_office_is_agency_unavailable(land: LandSandbox, samples: SampleForms) -> None:
    await land.faults(failure_rate=1)
    form = transfer_form(samples, samples.person(), samples.parcel_id())
    with pytest.raises(AgencyUnavailable) as unavailable:
        await land.connector.handle(handoff("check_transfer", "land_transfer", form))
    assert unavailable.value.status_code == 503


async def test_a_garbled_reply_is_a_protocol_error(land: LandSandbox, samples: SampleForms) -> None:
    await land.faults(malformed_rate=1)
    form = transfer_form(samples, samples.person(), samples.parcel_id())
    with pytest.raises(AgencyProtocolError):
        await land.connector.handle(handoff("check_transfer", "land_transfer", form))


async def test_a_slow_job_is_pending_then_completes_through_poll(samples: SampleForms) -> None:
    async with land_sandbox(job_seconds=0.6, wait_s=0.1) as land:
        owner = samples.person()
        parcel_id = samples.parcel_id()
        await add_parcel(land, owner, parcel_id)
        form = transfer_form(samples, owner, parcel_id)
        request = handoff("check_transfer", "land_transfer", form)
        pending = await land.connector.handle(request)
        assert isinstance(pending, Pending)
        job_id, extras = parse_poll_token(pending.poll_token)
        assert pending.reference == job_id and extras == {"declared_value_vnd": form["declared_value_vnd"]}
        assert await land.connector.poll(pending.poll_token) == pending, "still running: unchanged"
        assert await land.connector.handle(request) == pending, "a redelivery finds the same job"

        done = await poll_until_final(land.connector, pending)
        assert isinstance(done, Completed)
        assert set(done.result) == SLIP_KEYS | {"declared_value_vnd"}
        assert done.result["declared_value_vnd"] == form["declared_value_vnd"]
        assert await land.count("jobs") == 1


async def test_a_pending_job_that_is_rejected_rejects_through_poll(samples: SampleForms) -> None:
    async with land_sandbox(job_seconds=0.4, wait_s=0.0) as land:
        owner = samples.person()
        parcel_id = samples.parcel_id()
        await add_parcel(land, owner, parcel_id)
        form = transfer_form(samples, samples.person(), parcel_id)  # not the owner
        pending = await land.connector.handle(handoff("check_transfer", "land_transfer", form))
        assert isinstance(pending, Pending)
        with pytest.raises(AgencyRejected) as rejected:
            await poll_until_final(land.connector, pending)
        assert rejected.value.code == "NOT_OWNER"


async def test_a_job_the_office_failed_is_started_again(
    land: LandSandbox, samples: SampleForms, monkeypatch: pytest.MonkeyPatch
) -> None:
    registry = land.app.state.registry
    evaluate = registry._evaluate
    failures = iter([True])

    def flaky(*args: Any) -> Any:
        if next(failures, False):
            raise RuntimeError("database locked")
        return evaluate(*args)

    monkeypatch.setattr(registry, "_evaluate", flaky)
    owner = samples.person()
    parcel_id = samples.parcel_id()
    await add_parcel(land, owner, parcel_id)
    request = handoff("check_transfer", "land_transfer", transfer_form(samples, owner, parcel_id))
    done = await land.connector.handle(request)
    assert isinstance(done, Completed)
    assert await land.connector.handle(request) == done, "a redelivery walks past the failed job"
    jobs = (await land.http.get("/_sandbox/records/jobs")).json()["records"]
    assert sorted(job["status"] for job in jobs) == ["failed", "succeeded"]


async def test_poll_tokens_round_trip() -> None:
    assert parse_poll_token(poll_token("abc", {})) == ("abc", {})
    assert parse_poll_token(poll_token("abc", {"declared_value_vnd": 5})) == (
        "abc",
        {"declared_value_vnd": 5},
    )
    with pytest.raises(AgencyProtocolError):
        parse_poll_token("abc?declared_value_vnd=x")

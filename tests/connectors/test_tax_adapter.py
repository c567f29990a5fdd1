"""The tax connector against the tax sandbox."""

from __future__ import annotations

import json
from typing import Any

import pytest

from connectors.base import Completed, WaitingOnCitizen
from connectors.errors import AgencyProtocolError, AgencyRejected, AgencyUnavailable
from connectors.testing import SampleForms
from tests.connectors.conftest import TaxSandbox, handoff

NOTICE_KEYS = {
    "notice_no",
    "personal_income_tax_vnd",
    "registration_fee_vnd",
    "land_use_levy_vnd",
    "total_vnd",
    "due_date",
}


def land_result(parcel_id: str, area_m2: float, assessed: int | None = 5_400_000_000) -> dict[str, Any]:
    """What the land leg hands on: the cadastral slip."""
    return {
        "cadastral_slip_no": "PCTT-2026-000017",
        "parcel_id": parcel_id,
        "area_m2": area_m2,
        "land_use_purpose": "ODT",
        "assessed_value_vnd": assessed,
    }


def assess_transfer(samples: SampleForms, **inputs: dict[str, Any]) -> tuple[dict[str, Any], Any]:
    owner = samples.person()
    parcel_id = samples.parcel_id()
    form: dict[str, Any] = samples.land_transfer(parcel_id, owner, 120.5)
    request = handoff(
        "assess_transfer_obligations",
        "land_transfer",
        form,
        inputs=inputs or {"check_dossier": land_result(parcel_id, 120.5)},
    )
    return form, request


def assert_no_personal_data(result: dict[str, Any], *people: dict[str, Any]) -> None:
    text = json.dumps(result, ensure_ascii=False)
    for person in people:
        assert person["citizen_id"] not in text and person["full_name"] not in text


async def test_transfer_assessment_waits_for_payment_then_completes(
    tax: TaxSandbox, samples: SampleForms
) -> None:
    form, request = assess_transfer(samples)
    waiting = await tax.connector.handle(request)
    assert isinstance(waiting, WaitingOnCitizen)
    notice_no = waiting.result["notice_no"]
    assert waiting.reference == waiting.poll_token == notice_no
    assert set(waiting.result) == NOTICE_KEYS
    declared = form["declared_value_vnd"]
    assert waiting.result["personal_income_tax_vnd"] == round(declared * 0.02)
    assert waiting.result["registration_fee_vnd"] == round(declared * 0.005)
    assert waiting.result["land_use_levy_vnd"] == 0
    total = waiting.result["total_vnd"]
    amount = f"{total:,}".replace(",", ".")
    assert waiting.reason == f"Chờ nộp nghĩa vụ tài chính: thông báo {notice_no}, tổng {amount} đồng"
    assert_no_personal_data(waiting.result, form["transferor"], form["transferee"])
    notice = await tax.client.get_notice(notice_no)
    assert notice.dossier_code == request.dossier_code and notice.slip_no == "PCTT-2026-000017"
    assert notice.payer_citizen_id == form["transferor"]["citizen_id"]

    assert await tax.connector.poll(notice_no) == waiting, "not paid yet: the same waiting result"
    receipt = await tax.client.pay(notice_no, total)
    paid = await tax.connector.poll(notice_no)
    assert isinstance(paid, Completed) and paid.reference == notice_no
    assert paid.result == {**waiting.result, "payment_reference": receipt.payment_reference}


async def test_first_certificate_fees_use_the_assessed_value(tax: TaxSandbox, samples: SampleForms) -> None:
    user = samples.person()
    parcel_id = samples.parcel_id()
    form = samples.first_land_certificate(parcel_id, user, 120.0)

    assessed = await tax.connector.handle(
        handoff(
            "assess_first_certificate_fees",
            "first_land_certificate",
            form,
            inputs={"verify_parcel": land_result(parcel_id, 120.0, assessed=5_400_000_000)},
        )
    )
    assert isinstance(assessed, WaitingOnCitizen)
    assert assessed.result["personal_income_tax_vnd"] == 0
    assert assessed.result["registration_fee_vnd"] == 27_000_000
    assert_no_personal_data(assessed.result, user)

    without = await tax.connector.handle(
        handoff(
            "assess_first_certificate_fees",
            "first_land_certificate",
            form,
            inputs={"verify_parcel": {**land_result(parcel_id, 120.0, None), "cadastral_slip_no": "PCTT-X"}},
        )
    )
    assert isinstance(without, WaitingOnCitizen)
    assert without.result["registration_fee_vnd"] == round(form["land_value_vnd"] * 0.005)


async def test_a_redelivered_assessment_sends_one_slip(tax: TaxSandbox, samples: SampleForms) -> None:
    _, request = assess_transfer(samples)
    first = await tax.connector.handle(request)
    again = await tax.connector.handle(request)
    assert first == again
    assert await tax.count("notices") == 1 and await tax.count("slips") == 1


async def test_an_assessment_needs_the_land_slip(tax: TaxSandbox, samples: SampleForms) -> None:
    _, request = assess_transfer(samples, other={"certificate_no": "GCN-1"})
    with pytest.raises(AgencyProtocolError, match="cadastral slip"):
        await tax.connector.handle(request)
    assert await tax.count("slips") == 0


async def test_household_tax_registration(tax: TaxSandbox, samples: SampleForms) -> None:
    form = samples.household_business()
    request = handoff("register_household_tax", "household_business", form, procedure_code="9.900006")
    registered = await tax.connector.handle(request)
    assert isinstance(registered, Completed)
    assert set(registered.result) == {"tax_code", "issued_on"}
    tax_code = registered.result["tax_code"]
    assert registered.reference == tax_code and len(tax_code) == 10 and tax_code.isdigit()
    assert await tax.connector.handle(request) == registered, "redelivered: the same code"
    assert await tax.count("households") == 1

    second = {**form, "business_name": form["business_name"] + " 2"}
    with pytest.raises(AgencyRejected, match="đã đăng ký hộ kinh doanh") as rejected:
        await tax.connector.handle(handoff("register_household_tax", "household_business", second))
    assert rejected.value.code == "CHU_HO_DA_DANG_KY"


async def test_an_unavailable_tax_authority_is_agency_unavailable(
    tax: TaxSandbox, samples: SampleForms
) -> None:
    await tax.faults(failure_rate=1)
    _, request = assess_transfer(samples)
    with pytest.raises(AgencyUnavailable):
        await tax.connector.handle(request)
    with pytest.raises(AgencyUnavailable):
        await tax.connector.poll("TB-2026-000001")


async def test_a_garbled_tax_reply_is_a_protocol_error(tax: TaxSandbox, samples: SampleForms) -> None:
    await tax.faults(malformed_rate=1)
    _, request = assess_transfer(samples)
    with pytest.raises(AgencyProtocolError):
        await tax.connector.handle(request)

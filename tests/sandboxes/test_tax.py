"""Tax authority sandbox, in process, through its client."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal

import httpx
import pytest

from connectors.errors import AgencyProtocolError, AgencyRejected, AgencyUnavailable
from connectors.tax.client import (
    CadastralSlip,
    HouseholdRegistration,
    PaymentConfirmation,
    TaxClient,
    build_slip_xml,
    parse_payment_confirmation,
)
from connectors.tax.sandbox.app import TaxSandboxSettings, create_app, round_vnd
from tests.clock import KIRITIMATI, LOS_ANGELES, machine_zone, travel, vn
from tests.sandboxes.helpers import BASE_URL, asgi_client, eventually, records

CALLBACK_URL = "http://connector.test/tax/callbacks"


@dataclass
class CallbackReceiver:
    """Answers ``fail_first`` callbacks with 500, then 200; keeps what it received."""

    fail_first: int = 0
    received: list[PaymentConfirmation] = field(default_factory=list)
    calls: int = 0

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.calls += 1
        if self.calls <= self.fail_first:
            return httpx.Response(500)
        assert request.headers["idempotency-key"].startswith("payment-")
        self.received.append(parse_payment_confirmation(request.content))
        return httpx.Response(200)


@dataclass
class Tax:
    client: TaxClient
    http: httpx.AsyncClient
    receiver: CallbackReceiver


def make_tax(
    receiver: CallbackReceiver, settings: TaxSandboxSettings | None = None
) -> tuple[TaxClient, httpx.AsyncClient]:
    app = create_app(
        ":memory:",
        settings=settings or TaxSandboxSettings(callback_backoff_s=0.01),
        callback_transport=httpx.MockTransport(receiver.handle),
    )
    return TaxClient(BASE_URL, transport=httpx.ASGITransport(app=app)), asgi_client(app)


@pytest.fixture
async def tax() -> AsyncIterator[Tax]:
    receiver = CallbackReceiver()
    client, http = make_tax(receiver)
    async with client, http:
        yield Tax(client, http, receiver)


def slip(
    no: str = "PCTT-2025-000001", *, kind: str = "chuyen_nhuong", value: int = 2_000_000_000
) -> CadastralSlip:
    return CadastralSlip(
        slip_no=no,
        dossier_code="000.00.01.H29-250101-0001",
        kind=kind,  # type: ignore[arg-type]
        parcel_id="TD-10-137",
        area_m2=Decimal("73.0"),
        value_vnd=value,
        payer_citizen_id="001203004567",
        payer_name="Ngô Thị Hoa",
        callback_url=CALLBACK_URL,
    )


@pytest.mark.parametrize(
    ("zone", "moment", "due"),
    [
        # Still 10 March in Los Angeles, already 11 March in Vietnam: due 30 days after the 11th.
        (LOS_ANGELES, vn(2026, 3, 11, 0, 1), date(2026, 4, 10)),
        # Already 11 March in Kiritimati, still 10 March in Vietnam: due 30 days after the 10th.
        (KIRITIMATI, vn(2026, 3, 10, 23, 59), date(2026, 4, 9)),
    ],
    ids=["00:01", "23:59"],
)
async def test_transfer_notice_follows_the_rates_and_is_due_30_days_after_vietnams_day(
    tax: Tax, zone: str, moment: datetime, due: date
) -> None:
    with machine_zone(zone), travel(moment):
        notice = await tax.client.submit_cadastral_slip(slip(), idempotency_key="k1")
    assert notice.personal_income_tax_vnd == 40_000_000
    assert notice.registration_fee_vnd == 10_000_000
    assert notice.land_use_levy_vnd == 0
    assert notice.total_vnd == 50_000_000
    assert notice.status == "CHUA_NOP" and not notice.paid
    assert notice.notice_no.startswith("TB-")
    assert notice.due_date == due and notice.payment_reference is None


async def test_first_certificate_owes_only_the_fee_and_levy() -> None:
    receiver = CallbackReceiver()
    client, http = make_tax(receiver, TaxSandboxSettings(land_use_levy_rate=Decimal("0.01")))
    async with client, http:
        notice = await client.submit_cadastral_slip(
            slip(kind="cap_lan_dau", value=1_000_000_000), idempotency_key="k"
        )
    assert (notice.personal_income_tax_vnd, notice.registration_fee_vnd, notice.land_use_levy_vnd) == (
        0,
        5_000_000,
        10_000_000,
    )
    assert notice.total_vnd == 15_000_000


async def test_amounts_round_half_up_to_whole_dong(tax: Tax) -> None:
    assert round_vnd(Decimal("0.5")) == 1
    assert round_vnd(Decimal("2.4999")) == 2
    notice = await tax.client.submit_cadastral_slip(slip(value=1_100), idempotency_key="k")
    assert (notice.personal_income_tax_vnd, notice.registration_fee_vnd) == (22, 6)  # 5.5 → 6


async def test_get_notice_and_bank_payment_flip_it_to_paid_and_call_back(tax: Tax) -> None:
    notice = await tax.client.submit_cadastral_slip(slip(), idempotency_key="k")
    assert (await tax.client.get_notice(notice.notice_no)).status == "CHUA_NOP"

    receipt = await tax.client.pay(notice.notice_no, notice.total_vnd)
    paid = await tax.client.get_notice(notice.notice_no)
    assert paid.paid and paid.payment_reference == receipt.payment_reference

    async def delivered() -> list[PaymentConfirmation]:
        return tax.receiver.received

    [confirmation] = await eventually(delivered)
    assert confirmation.notice_no == notice.notice_no
    assert confirmation.dossier_code == notice.dossier_code
    assert confirmation.amount_vnd == notice.total_vnd
    assert confirmation.payment_reference == receipt.payment_reference


async def test_callback_is_retried_and_every_attempt_recorded() -> None:
    receiver = CallbackReceiver(fail_first=2)
    client, http = make_tax(receiver)
    async with client, http:
        notice = await client.submit_cadastral_slip(slip(), idempotency_key="k")
        await client.pay(notice.notice_no, notice.total_vnd)

        async def delivered() -> list[dict[str, object]]:
            rows = await records(http, "callback_deliveries")
            return rows if any(row["delivered"] for row in rows) else []

        attempts = await eventually(delivered)
    assert [(row["attempt"], row["status_code"], row["delivered"]) for row in attempts] == [
        (1, 500, 0),
        (2, 500, 0),
        (3, 200, 1),
    ]


async def test_json_payment_is_answered_in_json(tax: Tax) -> None:
    notice = await tax.client.submit_cadastral_slip(slip(), idempotency_key="k")
    answer = await tax.http.post(
        "/tax/bank/payments", json={"so_thong_bao": notice.notice_no, "amount": notice.total_vnd}
    )
    assert answer.status_code == 200
    assert answer.json()["status"] == "DA_NOP"


async def test_wrong_amount_and_double_payment_are_rejected(tax: Tax) -> None:
    notice = await tax.client.submit_cadastral_slip(slip(), idempotency_key="k")
    with pytest.raises(AgencyRejected) as wrong:
        await tax.client.pay(notice.notice_no, notice.total_vnd - 1)
    assert wrong.value.code == "SAI_SO_TIEN" and wrong.value.status_code == 422
    await tax.client.pay(notice.notice_no, notice.total_vnd)
    with pytest.raises(AgencyRejected) as twice:
        await tax.client.pay(notice.notice_no, notice.total_vnd)
    assert twice.value.code == "DA_NOP"
    assert len(await records(tax.http, "payments")) == 1


async def test_same_key_gives_the_same_notice_and_one_record(tax: Tax) -> None:
    first = await tax.client.submit_cadastral_slip(slip(), idempotency_key="same")
    again = await tax.client.submit_cadastral_slip(slip(), idempotency_key="same")
    assert first == again
    assert len(await records(tax.http, "notices")) == 1


async def test_same_key_different_slip_is_refused_in_xml(tax: Tax) -> None:
    await tax.client.submit_cadastral_slip(slip(), idempotency_key="same")
    with pytest.raises(AgencyProtocolError, match="IDEMPOTENCY_KEY_REUSED") as error:
        await tax.client.submit_cadastral_slip(slip(value=1), idempotency_key="same")
    assert error.value.status_code == 422
    assert len(await records(tax.http, "notices")) == 1


async def test_a_slip_number_is_accepted_once(tax: Tax) -> None:
    await tax.client.submit_cadastral_slip(slip(), idempotency_key="a")
    with pytest.raises(AgencyRejected) as duplicate:
        await tax.client.submit_cadastral_slip(slip(), idempotency_key="b")
    assert duplicate.value.code == "PHIEU_DA_TON_TAI"


async def post_xml(http: httpx.AsyncClient, body: bytes) -> httpx.Response:
    return await http.post("/tax/cadastral-slips", content=body, headers={"Content-Type": "application/xml"})


async def test_malformed_xml_is_400_with_the_parser_reason(tax: Tax) -> None:
    answer = await post_xml(tax.http, b"<PhieuChuyenThongTinDiaChinh><SoPhieu>1</Phieu>")
    assert answer.status_code == 400
    assert answer.headers["content-type"].startswith("application/xml")
    assert "<Ma>XML_KHONG_HOP_LE</Ma>" in answer.text
    assert "mismatched tag" in answer.text


async def test_missing_field_is_400_naming_it(tax: Tax) -> None:
    body = build_slip_xml(slip()).replace(b"<ThuaDat>TD-10-137</ThuaDat>", b"")
    answer = await post_xml(tax.http, body)
    assert answer.status_code == 400
    assert "ThuaDat" in answer.text


@pytest.mark.parametrize(
    "payload",
    [
        b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;">'
        b'<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;">]><PhieuChuyenThongTinDiaChinh><SoPhieu>&lol3;</SoPhieu>'
        b"</PhieuChuyenThongTinDiaChinh>",
        b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'
        b"<PhieuChuyenThongTinDiaChinh><SoPhieu>&xxe;</SoPhieu></PhieuChuyenThongTinDiaChinh>",
    ],
    ids=["billion-laughs", "external-entity"],
)
async def test_xml_bombs_are_refused(tax: Tax, payload: bytes) -> None:
    answer = await post_xml(tax.http, payload)
    assert answer.status_code == 400
    assert "<Ma>XML_BI_CAM</Ma>" in answer.text
    assert await records(tax.http, "notices") == []


async def test_household_registration_issues_a_10_digit_code_once(tax: Tax) -> None:
    registration = HouseholdRegistration(
        dossier_code="HKD-0001",
        business_name="Hộ kinh doanh Phở Hoa",
        owner_citizen_id="001203004567",
        owner_name="Ngô Thị Hoa",
        address="12 Lê Lợi, Phường Bến Nghé, Quận 1",
        trade="Ăn uống",
    )
    issued = await tax.client.register_household(registration, idempotency_key="hkd-1")
    assert len(issued.tax_code) == 10 and issued.tax_code.isdigit()
    assert await tax.client.register_household(registration, idempotency_key="hkd-1") == issued
    with pytest.raises(AgencyRejected) as second:
        await tax.client.register_household(registration, idempotency_key="hkd-2")
    assert second.value.code == "CHU_HO_DA_DANG_KY"
    assert len(await records(tax.http, "households")) == 1


async def test_unavailable_and_malformed_faults(tax: Tax) -> None:
    await tax.http.put("/_sandbox/faults", json={"failure_rate": 1, "error_status": 500})
    with pytest.raises(AgencyUnavailable):
        await tax.client.submit_cadastral_slip(slip(), idempotency_key="f")
    await tax.http.put("/_sandbox/faults", json={"failure_rate": 0, "malformed_rate": 1})
    with pytest.raises(AgencyProtocolError):
        await tax.client.get_notice("TB-2025-000001")
    await tax.http.delete("/_sandbox/faults")
    assert await records(tax.http, "notices") == []

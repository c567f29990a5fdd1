"""Typed async client for the tax authority API (XML documents).

The client builds and parses the XML, so callers see pydantic models only:

    async with TaxClient(base_url) as tax:
        notice = await tax.submit_cadastral_slip(slip, idempotency_key=handoff_id)
        notice = await tax.get_notice(notice.notice_no)          # poll until notice.paid
        confirmation = parse_payment_confirmation(callback_body)  # or learn it by callback

Errors: ``connectors.errors`` — ``AgencyRejected`` (a 409/422 ``<Loi>`` business answer),
``AgencyUnavailable`` (5xx/429/timeouts/connection), ``AgencyProtocolError`` (unparseable or
incomplete XML, 400, an idempotency key reused with another body, an unknown notice).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import date, datetime
from decimal import Decimal
from typing import Literal, TypeVar

import defusedxml.ElementTree as SafeET
import httpx
from defusedxml import DefusedXmlException
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from connectors import AgencyClient, AgencyProtocolError, ErrorBody

AGENCY = "tax"
XML = "application/xml"
ObligationKind = Literal["chuyen_nhuong", "cap_lan_dau"]
NoticeStatus = Literal["CHUA_NOP", "DA_NOP"]
M = TypeVar("M", bound=BaseModel)


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CadastralSlip(_Model):
    """Phiếu chuyển thông tin địa chính: what land sends to tax."""

    slip_no: str
    dossier_code: str
    kind: ObligationKind
    parcel_id: str
    area_m2: Decimal = Field(gt=0)
    value_vnd: int = Field(ge=0, description="transfer value (chuyen_nhuong) or land value (cap_lan_dau)")
    payer_citizen_id: str
    payer_name: str
    callback_url: str | None = None


class PaymentNotice(_Model):
    """Thông báo nộp tiền."""

    notice_no: str
    slip_no: str
    dossier_code: str
    kind: ObligationKind
    parcel_id: str
    payer_citizen_id: str
    payer_name: str
    taxable_value_vnd: int
    personal_income_tax_vnd: int
    registration_fee_vnd: int
    land_use_levy_vnd: int
    total_vnd: int
    status: NoticeStatus
    due_date: date
    payment_reference: str | None = None
    paid_at: datetime | None = None

    @property
    def paid(self) -> bool:
        return self.status == "DA_NOP"


class PaymentReceipt(_Model):
    notice_no: str
    amount_vnd: int
    payment_reference: str
    status: NoticeStatus


class PaymentConfirmation(_Model):
    """Xác nhận nộp tiền: the callback the tax authority sends once a notice is paid."""

    notice_no: str
    slip_no: str
    dossier_code: str
    amount_vnd: int
    payment_reference: str
    paid_at: datetime
    status: NoticeStatus


class HouseholdRegistration(_Model):
    dossier_code: str
    business_name: str
    owner_citizen_id: str
    owner_name: str
    address: str
    trade: str


class HouseholdTaxCode(_Model):
    tax_code: str = Field(pattern=r"^\d{10}$")
    dossier_code: str
    business_name: str
    issued_on: date


def _add(parent: ET.Element, tag: str, value: object) -> ET.Element:
    child = ET.SubElement(parent, tag)
    child.text = str(value)
    return child


def _to_bytes(root: ET.Element) -> bytes:
    data: bytes = ET.tostring(root, encoding="utf-8", xml_declaration=True)
    return data


def build_slip_xml(slip: CadastralSlip) -> bytes:
    root = ET.Element("PhieuChuyenThongTinDiaChinh")
    _add(root, "SoPhieu", slip.slip_no)
    _add(root, "MaHoSo", slip.dossier_code)
    _add(root, "LoaiNghiaVu", slip.kind)
    _add(root, "ThuaDat", slip.parcel_id)
    _add(root, "DienTich", slip.area_m2)
    _add(root, "GiaTriChuyenNhuong" if slip.kind == "chuyen_nhuong" else "GiaTriDat", slip.value_vnd)
    payer = ET.SubElement(root, "NguoiNop")
    _add(payer, "MaSoDinhDanh", slip.payer_citizen_id)
    _add(payer, "HoTen", slip.payer_name)
    if slip.callback_url:
        _add(root, "CallbackUrl", slip.callback_url)
    return _to_bytes(root)


def _parse(body: bytes, root_tag: str, status_code: int | None = None) -> ET.Element:
    try:
        root: ET.Element = SafeET.fromstring(body, forbid_dtd=True)
    except (ET.ParseError, DefusedXmlException, ValueError) as exc:
        raise AgencyProtocolError(
            f"reply is not usable XML: {exc}", agency=AGENCY, status_code=status_code
        ) from exc
    if root.tag != root_tag:
        raise AgencyProtocolError(
            f"expected <{root_tag}>, got <{root.tag}>", agency=AGENCY, status_code=status_code
        )
    return root


class _Reader:
    """Reads required fields from a reply, raising ``AgencyProtocolError`` for a missing one."""

    def __init__(self, root: ET.Element) -> None:
        self.root = root

    def opt(self, path: str) -> str | None:
        element = self.root.find(path)
        value = (element.text or "").strip() if element is not None else ""
        return value or None

    def req(self, path: str) -> str:
        value = self.opt(path)
        if value is None:
            raise AgencyProtocolError(f"<{self.root.tag}> reply lacks <{path}>", agency=AGENCY)
        return value

    def int(self, path: str) -> int:
        value = self.req(path)
        try:
            return int(value)
        except ValueError as exc:
            raise AgencyProtocolError(f"<{path}> is not an integer: {value!r}", agency=AGENCY) from exc


def _validated(model: type[M], **values: object) -> M:
    try:
        return model.model_validate(values)
    except ValidationError as exc:
        raise AgencyProtocolError(
            f"reply does not match {model.__name__}: {exc.errors(include_url=False)}", agency=AGENCY
        ) from exc


def parse_notice(body: bytes) -> PaymentNotice:
    r = _Reader(_parse(body, "ThongBaoNopTien"))
    return _validated(
        PaymentNotice,
        notice_no=r.req("SoThongBao"),
        slip_no=r.req("SoPhieu"),
        dossier_code=r.req("MaHoSo"),
        kind=r.req("LoaiNghiaVu"),
        parcel_id=r.req("ThuaDat"),
        payer_citizen_id=r.req("NguoiNop/MaSoDinhDanh"),
        payer_name=r.req("NguoiNop/HoTen"),
        taxable_value_vnd=r.int("GiaTriTinhThue"),
        personal_income_tax_vnd=r.int("ThueThuNhapCaNhan"),
        registration_fee_vnd=r.int("LePhiTruocBa"),
        land_use_levy_vnd=r.int("TienSuDungDat"),
        total_vnd=r.int("TongTien"),
        status=r.req("TrangThai"),
        due_date=r.req("HanNop"),
        payment_reference=r.opt("MaThanhToan"),
        paid_at=r.opt("NgayNop"),
    )


def parse_payment_confirmation(body: bytes) -> PaymentConfirmation:
    """Parse the ``<XacNhanNopTien>`` the tax authority POSTs to a slip's callback URL."""
    r = _Reader(_parse(body, "XacNhanNopTien"))
    return _validated(
        PaymentConfirmation,
        notice_no=r.req("SoThongBao"),
        slip_no=r.req("SoPhieu"),
        dossier_code=r.req("MaHoSo"),
        amount_vnd=r.int("SoTien"),
        payment_reference=r.req("MaThanhToan"),
        paid_at=r.req("NgayNop"),
        status=r.req("TrangThai"),
    )


class LoiBody:
    """The tax authority's error body: ``<Loi><Ma>code</Ma><MoTa>its words</MoTa></Loi>``."""

    def read(self, response: httpx.Response) -> ErrorBody:
        excerpt = response.text[:300]
        try:
            r = _Reader(_parse(response.content, "Loi", response.status_code))
        except AgencyProtocolError:
            return ErrorBody("", excerpt)
        return ErrorBody(r.opt("Ma") or "", r.opt("MoTa") or excerpt)


class TaxClient(AgencyClient):
    agency = AGENCY
    rejection_statuses = frozenset({409, 422})
    error_body = LoiBody()

    async def submit_cadastral_slip(self, slip: CadastralSlip, *, idempotency_key: str) -> PaymentNotice:
        response = await self._request(
            "POST",
            "/tax/cadastral-slips",
            content=build_slip_xml(slip),
            headers={"Content-Type": XML},
            idempotency_key=idempotency_key,
        )
        return parse_notice(response.content)

    async def get_notice(self, notice_no: str) -> PaymentNotice:
        # An unknown notice is our mistake, not the citizen's: nothing here is a refusal.
        response = await self._request("GET", f"/tax/notices/{notice_no}", rejection_statuses=())
        return parse_notice(response.content)

    async def pay(
        self, notice_no: str, amount_vnd: int, *, idempotency_key: str | None = None
    ) -> PaymentReceipt:
        """Play the citizen paying the notice at the bank (tests, sample traffic)."""
        root = ET.Element("NopTien")
        _add(root, "SoThongBao", notice_no)
        _add(root, "SoTien", amount_vnd)
        response = await self._request(
            "POST",
            "/tax/bank/payments",
            content=_to_bytes(root),
            headers={"Content-Type": XML},
            idempotency_key=idempotency_key,
            rejection_statuses=(404, 409, 422),  # the bank refuses an unknown notice too
        )
        r = _Reader(_parse(response.content, "BienLaiNopTien", response.status_code))
        return _validated(
            PaymentReceipt,
            notice_no=r.req("SoThongBao"),
            amount_vnd=r.int("SoTien"),
            payment_reference=r.req("MaThanhToan"),
            status=r.req("TrangThai"),
        )

    async def register_household(
        self, registration: HouseholdRegistration, *, idempotency_key: str
    ) -> HouseholdTaxCode:
        root = ET.Element("DangKyThueHoKinhDoanh")
        _add(root, "MaHoSo", registration.dossier_code)
        _add(root, "TenHoKinhDoanh", registration.business_name)
        owner = ET.SubElement(root, "ChuHo")
        _add(owner, "MaSoDinhDanh", registration.owner_citizen_id)
        _add(owner, "HoTen", registration.owner_name)
        _add(root, "DiaChi", registration.address)
        _add(root, "NganhNghe", registration.trade)
        response = await self._request(
            "POST",
            "/tax/household-registrations",
            content=_to_bytes(root),
            headers={"Content-Type": XML},
            idempotency_key=idempotency_key,
        )
        r = _Reader(_parse(response.content, "ThongBaoMaSoThue", response.status_code))
        return _validated(
            HouseholdTaxCode,
            tax_code=r.req("MaSoThue"),
            dossier_code=r.req("MaHoSo"),
            business_name=r.req("TenHoKinhDoanh"),
            issued_on=r.req("NgayCap"),
        )

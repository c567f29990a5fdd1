"""The tax authority connector: cadastral slips → payment notices, and household tax codes.

Actions and their results (no names or citizen ids in any result):

- ``assess_transfer_obligations`` / ``assess_first_certificate_fees``: sends the cadastral information
  slip (built from the form and the land leg's result among ``inputs``, the one holding
  ``cadastral_slip_no``) and answers ``WaitingOnCitizen`` with the notice ``{notice_no,
  personal_income_tax_vnd, registration_fee_vnd, land_use_levy_vnd, total_vnd, due_date}``; reference
  and poll token: the notice number. :meth:`TaxConnector.poll` answers ``Completed`` with the same keys
  plus ``payment_reference`` once the notice is paid.
- ``register_household_tax`` (household_business form) → ``Completed({tax_code, issued_on})``;
  reference: the tax code.

Taxable value: a transfer is taxed on the value declared in the contract (the form); a first
certificate on the land office's assessed value when the slip carries one, else the form's land value.
The payer on the notice is the transferor (who owes the income tax) or the applicant.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any, ClassVar

from pydantic import BaseModel, Field, ValidationError
from pydantic_settings import SettingsConfigDict

from connectors import (
    AgencyProtocolError,
    AgencySettings,
    Completed,
    HandoffRequest,
    HandoffResult,
    HttpConnector,
    WaitingOnCitizen,
    parse_form,
)
from connectors.tax.client import (
    AGENCY,
    CadastralSlip,
    HouseholdRegistration,
    ObligationKind,
    PaymentNotice,
    TaxClient,
)
from schemas.agencies import Agency
from schemas.forms import FirstLandCertificateForm, HouseholdBusinessForm, LandTransferForm
from schemas.values import Person


class TaxSettings(AgencySettings):
    """From ``LIENTHONG_TAX_*`` environment variables."""

    model_config = SettingsConfigDict(env_prefix="LIENTHONG_TAX_", extra="ignore")

    url: str = "http://127.0.0.1:8201"


class _LandSlip(BaseModel):
    """What this connector needs of the land leg's result."""

    cadastral_slip_no: str = Field(min_length=1)
    parcel_id: str = Field(min_length=1)
    area_m2: float = Field(gt=0)
    assessed_value_vnd: int | None = Field(default=None, ge=0)


def land_slip(request: HandoffRequest) -> _LandSlip:
    """The land leg's slip among the inputs: the result holding ``cadastral_slip_no``."""
    found = [result for result in request.inputs.values() if result.get("cadastral_slip_no")]
    if len(found) != 1:
        raise AgencyProtocolError(
            f"{request.action} needs exactly one cadastral slip among the inputs, found {len(found)}",
            agency=AGENCY,
        )
    try:
        return _LandSlip.model_validate(found[0])
    except ValidationError as exc:
        raise AgencyProtocolError(
            f"{request.action}: the land leg's slip is incomplete: "
            f"{exc.errors(include_input=False, include_url=False)}",
            agency=AGENCY,
        ) from exc


def vnd(amount: int) -> str:
    """``87500000`` → ``87.500.000`` (Vietnamese thousands separators)."""
    return f"{amount:,}".replace(",", ".")


def notice_outcome(notice: PaymentNotice) -> WaitingOnCitizen | Completed:
    result: dict[str, Any] = {
        "notice_no": notice.notice_no,
        "personal_income_tax_vnd": notice.personal_income_tax_vnd,
        "registration_fee_vnd": notice.registration_fee_vnd,
        "land_use_levy_vnd": notice.land_use_levy_vnd,
        "total_vnd": notice.total_vnd,
        "due_date": notice.due_date.isoformat(),
    }
    if not notice.paid:
        total = vnd(notice.total_vnd)
        return WaitingOnCitizen(
            reason=f"Chờ nộp nghĩa vụ tài chính: thông báo {notice.notice_no}, tổng {total} đồng",
            poll_token=notice.notice_no,
            result=result,
            reference=notice.notice_no,
        )
    if not notice.payment_reference:
        raise AgencyProtocolError(
            f"notice {notice.notice_no} is paid but has no payment reference", agency=AGENCY
        )
    return Completed(
        result={**result, "payment_reference": notice.payment_reference}, reference=notice.notice_no
    )


class TaxConnector(HttpConnector[TaxSettings, TaxClient]):
    agency: ClassVar[Agency] = Agency.TAX
    actions: ClassVar[frozenset[str]] = frozenset(
        {"assess_transfer_obligations", "assess_first_certificate_fees", "register_household_tax"}
    )

    settings_class = TaxSettings
    client_class = TaxClient

    async def handle(self, request: HandoffRequest) -> HandoffResult:
        if request.action == "assess_transfer_obligations":
            transfer = parse_form(request, LandTransferForm, agency=AGENCY)
            return await self._assess(
                request, "chuyen_nhuong", transfer.declared_value_vnd, transfer.transferor
            )
        if request.action == "assess_first_certificate_fees":
            first = parse_form(request, FirstLandCertificateForm, agency=AGENCY)
            assessed = land_slip(request).assessed_value_vnd
            value = assessed if assessed is not None else first.land_value_vnd
            return await self._assess(request, "cap_lan_dau", value, first.applicant)
        if request.action == "register_household_tax":
            return await self._register_household(request)
        raise AgencyProtocolError(f"the tax connector does not serve {request.action!r}", agency=AGENCY)

    async def poll(self, poll_token: str) -> HandoffResult:
        return notice_outcome(await self.client.get_notice(poll_token))

    async def _assess(
        self, request: HandoffRequest, kind: ObligationKind, value_vnd: int, payer: Person
    ) -> HandoffResult:
        land = land_slip(request)
        slip = CadastralSlip(
            slip_no=land.cadastral_slip_no,
            dossier_code=request.dossier_code,
            kind=kind,
            parcel_id=land.parcel_id,
            area_m2=Decimal(str(land.area_m2)),
            value_vnd=value_vnd,
            payer_citizen_id=payer.citizen_id,
            payer_name=payer.full_name,
        )
        notice = await self.client.submit_cadastral_slip(slip, idempotency_key=request.handoff_id)
        return notice_outcome(notice)

    async def _register_household(self, request: HandoffRequest) -> HandoffResult:
        form = parse_form(request, HouseholdBusinessForm, agency=AGENCY)
        registration = HouseholdRegistration(
            dossier_code=request.dossier_code,
            business_name=form.business_name,
            owner_citizen_id=form.owner.citizen_id,
            owner_name=form.owner.full_name,
            address=form.business_address,
            trade=form.line_of_business,
        )
        code = await self.client.register_household(registration, idempotency_key=request.handoff_id)
        return Completed(
            result={"tax_code": code.tax_code, "issued_on": code.issued_on.isoformat()},
            reference=code.tax_code,
        )

"""The tax connector passes the conformance kit (the citizen pays each notice at the bank)."""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from typing import Any, ClassVar

from fastapi import FastAPI

from connectors.base import Connector, HandoffRequest, WaitingOnCitizen
from connectors.tax.adapter import TaxConnector, TaxSettings
from connectors.tax.client import TaxClient
from connectors.tax.sandbox.app import create_app
from connectors.testing import ConformanceCase, ConnectorConformance, Kit, KitEnvironment, RejectionCase

NOTICE = frozenset(
    {
        "notice_no",
        "personal_income_tax_vnd",
        "registration_fee_vnd",
        "land_use_levy_vnd",
        "total_vnd",
        "due_date",
        "payment_reference",
    }
)
_slips = itertools.count(1)


def land_slip(parcel_id: str, area_m2: float) -> dict[str, Any]:
    """What the land leg hands on: the cadastral information slip."""
    return {
        "cadastral_slip_no": f"PCTT-2026-{next(_slips):06d}",
        "parcel_id": parcel_id,
        "area_m2": area_m2,
        "land_use_purpose": "ODT",
        "assessed_value_vnd": 5_400_000_000,
    }


async def pays_at_the_bank(kit: Kit, waiting: WaitingOnCitizen) -> None:
    async with TaxClient(kit.env.base_url, transport=kit.env.transport) as tax:
        notice = await tax.get_notice(waiting.poll_token)
        if not notice.paid:
            await tax.pay(notice.notice_no, notice.total_vnd)


async def transfer(kit: Kit) -> HandoffRequest:
    parcel_id = kit.samples.parcel_id()
    form = kit.samples.land_transfer(parcel_id, kit.samples.person(), 120.5)
    inputs = {"check_dossier": land_slip(parcel_id, 120.5)}
    return kit.handoff("assess_transfer_obligations", "land_transfer", form, inputs=inputs)


async def first_certificate(kit: Kit) -> HandoffRequest:
    parcel_id = kit.samples.parcel_id()
    form = kit.samples.first_land_certificate(parcel_id, kit.samples.person(), 200.0)
    inputs = {"verify_parcel": land_slip(parcel_id, 200.0)}
    return kit.handoff("assess_first_certificate_fees", "first_land_certificate", form, inputs=inputs)


async def household(kit: Kit) -> HandoffRequest:
    return kit.handoff("register_household_tax", "household_business", kit.samples.household_business())


async def owner_with_a_household_already(kit: Kit) -> HandoffRequest:
    first = await household(kit)
    await kit.connector.handle(first)
    form = {**first.form, "business_name": "Hộ kinh doanh thứ hai"}
    return kit.handoff("register_household_tax", "household_business", form)


async def slip_sent_twice(kit: Kit) -> HandoffRequest:
    first = await transfer(kit)
    await kit.connector.handle(first)
    return kit.handoff(first.action, first.form_kind, first.form, inputs=first.inputs)


class TestTaxConformance(ConnectorConformance):
    assessed: ClassVar[dict[str, int]] = {"slips": 1, "notices": 1, "payments": 1}
    cases: ClassVar[Mapping[str, ConformanceCase]] = {
        "assess_transfer_obligations": ConformanceCase(
            transfer, assessed, NOTICE, answers_later=True, citizen_acts=pays_at_the_bank
        ),
        "assess_first_certificate_fees": ConformanceCase(
            first_certificate, assessed, NOTICE, answers_later=True, citizen_acts=pays_at_the_bank
        ),
        "register_household_tax": ConformanceCase(
            household, {"households": 1}, frozenset({"tax_code", "issued_on"})
        ),
    }
    rejections: ClassVar[Mapping[str, RejectionCase]] = {
        "owner_with_a_household_already": RejectionCase(
            owner_with_a_household_already, code="CHU_HO_DA_DANG_KY"
        ),
        "cadastral_slip_sent_twice": RejectionCase(slip_sent_twice, code="PHIEU_DA_TON_TAI"),
    }

    def connector_factory(self, env: KitEnvironment) -> Connector:
        return TaxConnector(TaxSettings(url=env.base_url, timeout_s=env.timeout_s), transport=env.transport)

    def sandbox_factory(self) -> FastAPI:
        return create_app(":memory:")

"""The land connector passes the conformance kit: every job answers ``Pending`` first (``wait_s=0``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from fastapi import FastAPI

from connectors.base import Completed, Connector, HandoffRequest
from connectors.land.adapter import LandConnector, LandSettings
from connectors.land.sandbox.app import LandSandboxSettings, create_app
from connectors.testing import ConformanceCase, ConnectorConformance, Kit, KitEnvironment, RejectionCase

SLIP = frozenset({"cadastral_slip_no", "parcel_id", "area_m2", "land_use_purpose", "assessed_value_vnd"})
CERTIFICATE = frozenset({"certificate_no", "parcel_id"})
PAID = {"assess": {"payment_reference": "CTNT-2026-000007"}}


async def parcel_of(kit: Kit, owner: dict[str, Any], *, certified: bool, area_m2: float = 120.5) -> str:
    parcel_id = kit.samples.parcel_id()
    answer = await kit.admin.post(
        "/_sandbox/parcels",
        json={
            "parcel_id": parcel_id,
            "area_m2": area_m2,
            "owner_citizen_id": owner["citizen_id"],
            "owner_name": owner["full_name"],
            "has_certificate": certified,
        },
    )
    assert answer.status_code == 201, answer.text
    return parcel_id


async def check(kit: Kit) -> HandoffRequest:
    owner = kit.samples.person()
    parcel_id = await parcel_of(kit, owner, certified=True)
    form = kit.samples.land_transfer(parcel_id, owner, 120.5)
    return kit.handoff("check_transfer", "land_transfer", form)


async def register(kit: Kit) -> HandoffRequest:
    checked = await check(kit)
    slip = await kit.settle(await kit.connector.handle(checked))
    assert isinstance(slip, Completed)
    inputs = {"check_dossier": slip.result, **PAID}
    return kit.handoff("register_transfer", "land_transfer", checked.form, inputs=inputs)


async def verify(kit: Kit) -> HandoffRequest:
    user = kit.samples.person()
    parcel_id = await parcel_of(kit, user, certified=False, area_m2=200.0)
    form = kit.samples.first_land_certificate(parcel_id, user, 200.0)
    return kit.handoff("verify_first_certificate", "first_land_certificate", form)


async def issue(kit: Kit) -> HandoffRequest:
    verified = await verify(kit)
    return kit.handoff("issue_first_certificate", "first_land_certificate", verified.form, inputs=PAID)


async def transferor_is_not_the_owner(kit: Kit) -> HandoffRequest:
    parcel_id = await parcel_of(kit, kit.samples.person(), certified=True)
    form = kit.samples.land_transfer(parcel_id, kit.samples.person(), 120.5)
    return kit.handoff("check_transfer", "land_transfer", form)


async def parcel_already_certified(kit: Kit) -> HandoffRequest:
    user = kit.samples.person()
    parcel_id = await parcel_of(kit, user, certified=True)
    form = kit.samples.first_land_certificate(parcel_id, user, 120.5)
    return kit.handoff("verify_first_certificate", "first_land_certificate", form)


class TestLandConformance(ConnectorConformance):
    cases: ClassVar[Mapping[str, ConformanceCase]] = {
        "check_transfer": ConformanceCase(
            check, {"jobs": 1}, SLIP | {"declared_value_vnd"}, answers_later=True
        ),
        "register_transfer": ConformanceCase(
            register, {"jobs": 1, "ownership_changes": 1, "certificates": 1}, CERTIFICATE, answers_later=True
        ),
        "verify_first_certificate": ConformanceCase(verify, {"jobs": 1}, SLIP, answers_later=True),
        "issue_first_certificate": ConformanceCase(
            issue, {"jobs": 1, "certificates": 1}, CERTIFICATE, answers_later=True
        ),
    }
    rejections: ClassVar[Mapping[str, RejectionCase]] = {
        "transferor_is_not_the_owner": RejectionCase(transferor_is_not_the_owner, code="NOT_OWNER"),
        "parcel_already_certified": RejectionCase(parcel_already_certified, code="ALREADY_CERTIFIED"),
    }

    def connector_factory(self, env: KitEnvironment) -> Connector:
        settings = LandSettings(url=env.base_url, timeout_s=env.timeout_s, wait_s=0)
        return LandConnector(settings, transport=env.transport)

    def sandbox_factory(self) -> FastAPI:
        return create_app(":memory:", settings=LandSandboxSettings(job_seconds=0.3, seed_parcels=False))

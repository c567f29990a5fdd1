"""The civil-status connector passes the conformance kit."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date
from typing import ClassVar

from fastapi import FastAPI

from connectors.base import Connector, HandoffRequest
from connectors.civil_status.adapter import CivilStatusConnector, CivilStatusSettings
from connectors.civil_status.sandbox.app import create_app
from connectors.testing import ConformanceCase, ConnectorConformance, Kit, KitEnvironment, RejectionCase
from schemas.values import Sex
from schemas.workdays import vn_today

REGISTRATION = frozenset({"registration_no", "registered_on", "book_no"})


async def marriage(kit: Kit) -> HandoffRequest:
    return kit.handoff("register_marriage", "marriage", kit.samples.marriage())


async def birth(kit: Kit) -> HandoffRequest:
    return kit.handoff("register_birth", "birth", kit.samples.birth())


async def death(kit: Kit) -> HandoffRequest:
    return kit.handoff("register_death", "death", kit.samples.death())


async def underage_marriage(kit: Kit) -> HandoffRequest:
    form = kit.samples.marriage()
    form["husband"] = kit.samples.person(Sex.MALE, date(vn_today().year - 19, 1, 1))
    return kit.handoff("register_marriage", "marriage", form)


async def death_registered_twice(kit: Kit) -> HandoffRequest:
    first = await death(kit)
    await kit.connector.handle(first)
    return kit.handoff("register_death", "death", first.form)  # another dossier, same deceased


class TestCivilStatusConformance(ConnectorConformance):
    cases: ClassVar[Mapping[str, ConformanceCase]] = {
        "register_marriage": ConformanceCase(marriage, {"marriages": 1}, REGISTRATION),
        "register_birth": ConformanceCase(birth, {"births": 1}, REGISTRATION | {"child_personal_id"}),
        "register_death": ConformanceCase(death, {"deaths": 1}, REGISTRATION),
    }
    rejections: ClassVar[Mapping[str, RejectionCase]] = {
        "husband_under_marriageable_age": RejectionCase(underage_marriage, code="CHUA_DU_TUOI"),
        "death_registered_twice": RejectionCase(death_registered_twice, code="DA_DANG_KY_KHAI_TU"),
    }

    def connector_factory(self, env: KitEnvironment) -> Connector:
        settings = CivilStatusSettings(url=env.base_url, timeout_s=env.timeout_s)
        return CivilStatusConnector(settings, transport=env.transport)

    def sandbox_factory(self) -> FastAPI:
        return create_app(":memory:")

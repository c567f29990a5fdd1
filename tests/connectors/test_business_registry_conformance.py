"""The business registry connector passes the conformance kit."""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

from fastapi import FastAPI

from connectors.base import Connector, HandoffRequest
from connectors.business_registry.adapter import BusinessRegistryConnector, BusinessRegistrySettings
from connectors.business_registry.sandbox.app import create_app
from connectors.testing import ConformanceCase, ConnectorConformance, Kit, KitEnvironment, RejectionCase


async def household(kit: Kit) -> HandoffRequest:
    form = kit.samples.household_business()
    form["business_name"] += f" {kit.samples.random.randrange(10**9)}"  # names are unique per district
    return kit.handoff("register_household_business", "household_business", form)


async def name_taken(kit: Kit) -> HandoffRequest:
    first = await household(kit)
    await kit.connector.handle(first)
    other = kit.samples.household_business()
    return kit.handoff(first.action, first.form_kind, {**other, "business_name": first.form["business_name"]})


async def owner_already_registered(kit: Kit) -> HandoffRequest:
    first = await household(kit)
    await kit.connector.handle(first)
    form = {**first.form, "business_name": first.form["business_name"] + " thứ hai"}
    return kit.handoff(first.action, first.form_kind, form)


class TestBusinessRegistryConformance(ConnectorConformance):
    cases: ClassVar[Mapping[str, ConformanceCase]] = {
        "register_household_business": ConformanceCase(
            household, {"businesses": 1}, frozenset({"business_code", "registered_on"})
        ),
    }
    rejections: ClassVar[Mapping[str, RejectionCase]] = {
        "name_taken": RejectionCase(name_taken, code="NAME_TAKEN"),
        "owner_already_registered": RejectionCase(owner_already_registered, code="OWNER_ALREADY_REGISTERED"),
    }

    def connector_factory(self, env: KitEnvironment) -> Connector:
        settings = BusinessRegistrySettings(url=env.base_url, timeout_s=env.timeout_s)
        return BusinessRegistryConnector(settings, transport=env.transport)

    def sandbox_factory(self) -> FastAPI:
        return create_app(":memory:")

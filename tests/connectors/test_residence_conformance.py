"""The residence connector passes the conformance kit."""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

from fastapi import FastAPI

from connectors.base import Connector, HandoffRequest
from connectors.residence.adapter import ResidenceConnector, ResidenceSettings
from connectors.residence.sandbox.app import create_app
from connectors.testing import ConformanceCase, ConnectorConformance, Kit, KitEnvironment, RejectionCase

_ids = iter(range(1, 10**6))


def birth_registered() -> dict[str, str]:
    """What the civil-status leg hands on after registering a birth."""
    serial = next(_ids)
    return {
        "registration_no": f"KS-2026-{serial:06d}",
        "registered_on": "2026-03-02",
        "book_no": "01/2026",
        "child_personal_id": f"079226{serial:06d}",
    }


async def register(kit: Kit) -> HandoffRequest:
    form = kit.samples.birth()
    return kit.handoff(
        "register_permanent_residence", "birth", form, inputs={"register_birth": birth_registered()}
    )


async def remove(kit: Kit) -> HandoffRequest:
    form = kit.samples.death()
    death = {"registration_no": f"KT-2026-{next(_ids):06d}", "registered_on": "2026-03-02", "book_no": "01"}
    return kit.handoff("remove_permanent_residence", "death", form, inputs={"register_death": death})


async def child_registered_twice(kit: Kit) -> HandoffRequest:
    first = await register(kit)
    await kit.connector.handle(first)
    return kit.handoff(first.action, first.form_kind, first.form, inputs=first.inputs)


async def residence_removed_twice(kit: Kit) -> HandoffRequest:
    first = await remove(kit)
    await kit.connector.handle(first)
    return kit.handoff(first.action, first.form_kind, first.form, inputs=first.inputs)


class TestResidenceConformance(ConnectorConformance):
    cases: ClassVar[Mapping[str, ConformanceCase]] = {
        "register_permanent_residence": ConformanceCase(
            register, {"ho_so": 1, "thuong_tru": 1}, frozenset({"residence_record_no", "registered_on"})
        ),
        "remove_permanent_residence": ConformanceCase(
            remove, {"ho_so": 1}, frozenset({"residence_record_no", "removed_on"})
        ),
    }
    rejections: ClassVar[Mapping[str, RejectionCase]] = {
        "child_registered_twice": RejectionCase(child_registered_twice, code="CT01"),
        "residence_removed_twice": RejectionCase(residence_removed_twice, code="CT02"),
    }

    def connector_factory(self, env: KitEnvironment) -> Connector:
        settings = ResidenceSettings(url=env.base_url, timeout_s=env.timeout_s)
        return ResidenceConnector(settings, transport=env.transport)

    def sandbox_factory(self) -> FastAPI:
        return create_app(":memory:")

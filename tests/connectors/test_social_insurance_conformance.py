"""The social insurance connector passes the conformance kit (every request answers ``Pending`` first)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date
from typing import ClassVar

from fastapi import FastAPI

from connectors.base import Connector, HandoffRequest
from connectors.social_insurance.adapter import SocialInsuranceConnector, SocialInsuranceSettings
from connectors.social_insurance.sandbox.app import create_app
from connectors.testing import ConformanceCase, ConnectorConformance, Kit, KitEnvironment, RejectionCase
from schemas.values import Sex
from schemas.workdays import vn_today

_ids = iter(range(1, 10**6))


def birth_registered() -> dict[str, str]:
    """What the civil-status leg hands on after registering a birth."""
    serial = next(_ids)
    return {"registration_no": f"KS-2026-{serial:06d}", "child_personal_id": f"079226{serial:06d}"}


async def card(kit: Kit) -> HandoffRequest:
    form = kit.samples.birth()
    return kit.handoff(
        "issue_child_health_card", "birth", form, inputs={"register_birth": birth_registered()}
    )


async def allowance(kit: Kit) -> HandoffRequest:
    form = kit.samples.death()
    death = {"registration_no": f"KT-2026-{next(_ids):06d}", "book_no": "01/2026"}
    return kit.handoff("pay_funeral_allowance", "death", form, inputs={"register_death": death})


async def child_aged_six_or_more(kit: Kit) -> HandoffRequest:
    form = kit.samples.birth()
    born = date(vn_today().year - 7, 1, 10)
    form["child_date_of_birth"] = born.isoformat()
    form["mother"] = kit.samples.person(Sex.FEMALE, date(1990, 3, 8))
    form["father"] = kit.samples.person(Sex.MALE, date(1988, 7, 21))
    return kit.handoff(
        "issue_child_health_card", "birth", form, inputs={"register_birth": birth_registered()}
    )


async def allowance_claimed_twice(kit: Kit) -> HandoffRequest:
    first = await allowance(kit)
    await kit.settle(await kit.connector.handle(first))
    return kit.handoff(first.action, first.form_kind, first.form, inputs=first.inputs)


class TestSocialInsuranceConformance(ConnectorConformance):
    cases: ClassVar[Mapping[str, ConformanceCase]] = {
        "issue_child_health_card": ConformanceCase(
            card,
            {"requests": 1, "health_cards": 1},
            frozenset({"health_card_no", "valid_from", "valid_to"}),
            answers_later=True,
        ),
        "pay_funeral_allowance": ConformanceCase(
            allowance,
            {"requests": 1, "funeral_allowances": 1},
            frozenset({"decision_no", "amount_vnd"}),
            answers_later=True,
        ),
    }
    rejections: ClassVar[Mapping[str, RejectionCase]] = {
        "child_aged_six_or_more": RejectionCase(child_aged_six_or_more, reason_contains="đủ 6 tuổi"),
        "allowance_claimed_twice": RejectionCase(allowance_claimed_twice, reason_contains="mai táng"),
    }

    def connector_factory(self, env: KitEnvironment) -> Connector:
        settings = SocialInsuranceSettings(url=env.base_url, timeout_s=env.timeout_s)
        return SocialInsuranceConnector(settings, transport=env.transport)

    def sandbox_factory(self) -> FastAPI:
        return create_app(":memory:")

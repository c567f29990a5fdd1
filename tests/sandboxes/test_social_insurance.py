"""Social insurance sandbox, in process: its age rule and decision numbers follow Vietnam's day."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import httpx
import pytest

from connectors.social_insurance.sandbox.app import SocialInsuranceSandboxSettings, create_app
from tests.clock import KIRITIMATI, LOS_ANGELES, fixed, machine_zone, travel, vn
from tests.sandboxes.helpers import asgi_client

AT_ONCE = SocialInsuranceSandboxSettings(processing_seconds=0)


def health_card(born: str) -> dict[str, Any]:
    return {
        "type": "CHILD_HEALTH_CARD",
        "dossierCode": "LT-260311-000001",
        "child": {"personalId": "079220000001", "fullName": "Trần Minh An", "dateOfBirth": born},
        "address": "12 Lê Lợi, TP. Hồ Chí Minh",
        "birthRegistrationNo": "KS-2020-000001",
    }


def funeral_allowance() -> dict[str, Any]:
    return {
        "type": "FUNERAL_ALLOWANCE",
        "dossierCode": "LT-270101-000001",
        "deceased": {"personalId": "079045000001", "fullName": "Trần Văn Minh", "dateOfBirth": "1945-01-15"},
        "dateOfDeath": "2026-12-30",
        "beneficiary": {"personalId": "079190000002", "fullName": "Trần Thị Lan"},
        "deathRegistrationNo": "KT-2026-000001",
    }


async def decided(http: httpx.AsyncClient, body: dict[str, Any]) -> dict[str, Any]:
    """Submit ``body`` and read the request back once it has been decided."""
    accepted = await http.post("/bhxh/api/requests", json=body, headers={"Idempotency-Key": "k"})
    assert accepted.status_code == 202, accepted.text
    answer = (await http.get(accepted.json()["statusUrl"])).json()
    assert answer["status"] != "PROCESSING", answer
    result: dict[str, Any] = answer
    return result


@pytest.mark.parametrize(
    ("zone", "moment", "status"),
    [
        # 00:01 on 11 March 2026 in Vietnam, still the 10th in Los Angeles: the child is 6 today.
        (LOS_ANGELES, vn(2026, 3, 11, 0, 1), "REJECTED"),
        # 23:59 on 10 March 2026 in Vietnam, already the 11th in Kiritimati: the child is still 5.
        (KIRITIMATI, vn(2026, 3, 10, 23, 59), "APPROVED"),
    ],
    ids=["00:01-sixth-birthday", "23:59-day-before"],
)
async def test_child_is_six_from_the_first_minute_of_the_birthday_in_vietnam(
    zone: str, moment: datetime, status: str
) -> None:
    with machine_zone(zone), travel(moment):
        async with asgi_client(create_app(settings=AT_ONCE)) as http:
            answer = await decided(http, health_card(born="2020-03-11"))
    assert answer["status"] == status
    if status == "REJECTED":
        assert answer["rejection"]["code"] == "CHILD_NOT_UNDER_6"
    else:
        assert answer["result"]["validTo"] == "2026-03-10"  # the day before the 6th birthday


async def test_funeral_allowance_decided_after_midnight_on_new_year_is_of_the_new_year() -> None:
    # 00:30 on 1 January 2027 in Vietnam is still 2026 in UTC and to the west of it.
    async with asgi_client(create_app(settings=AT_ONCE, clock=fixed(vn(2027, 1, 1, 0, 30)))) as http:
        answer = await decided(http, funeral_allowance())
    assert answer["status"] == "APPROVED"
    assert answer["result"]["decisionNo"] == "MT-2027-000001"

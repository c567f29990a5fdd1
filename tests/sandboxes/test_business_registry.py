"""Business registration office sandbox, in process: the registration date is Vietnam's day."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest

from connectors.business_registry.sandbox.app import create_app
from tests.clock import KIRITIMATI, LOS_ANGELES, fixed, machine_zone, travel, vn
from tests.sandboxes.helpers import asgi_client


def household_business() -> dict[str, Any]:
    return {
        "dossier_code": "LT-260311-000001",
        "business_name": "Hộ kinh doanh Phở Minh",
        "owner": {"citizen_id": "079090001234", "full_name": "Trần Văn Minh", "date_of_birth": "1990-05-17"},
        "address": "12 Lê Lợi, TP. Hồ Chí Minh",
        "line_of_business": "Dịch vụ ăn uống",
        "capital_vnd": 200_000_000,
    }


@pytest.mark.parametrize(
    ("zone", "moment", "day"),
    [
        (LOS_ANGELES, vn(2026, 3, 11, 0, 1), "2026-03-11"),  # still 10 March in Los Angeles
        (KIRITIMATI, vn(2026, 3, 10, 23, 59), "2026-03-10"),  # already 11 March in Kiritimati
    ],
    ids=["00:01", "23:59"],
)
async def test_registration_date_is_vietnams_day_in_any_machine_zone(
    zone: str, moment: datetime, day: str
) -> None:
    with machine_zone(zone), travel(moment):
        async with asgi_client(create_app()) as http:
            answer = await http.post("/v1/household-businesses", json=household_business())
            assert answer.status_code == 201, answer.text
            held = (await http.get(f"/v1/household-businesses/{answer.json()['business_code']}")).json()
    assert answer.json()["registration_date"] == day
    assert held["registration_date"] == day


async def test_registration_date_is_read_from_the_given_clock() -> None:
    async with asgi_client(create_app(clock=fixed(vn(2026, 3, 11, 0, 1)))) as http:
        answer = await http.post("/v1/household-businesses", json=household_business())
    assert answer.status_code == 201, answer.text
    assert answer.json()["registration_date"] == "2026-03-11"

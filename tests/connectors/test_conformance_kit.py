"""The conformance kit's handoffs: dossier codes carry Vietnam's day, as intake's receipts do."""

from __future__ import annotations

from datetime import datetime

import httpx
import pytest
from fastapi import FastAPI

from connectors.civil_status.adapter import CivilStatusConnector, CivilStatusSettings
from connectors.testing import Kit, KitEnvironment
from tests.clock import KIRITIMATI, LOS_ANGELES, machine_zone, travel, vn


@pytest.mark.parametrize(
    ("zone", "moment", "day"),
    [
        (LOS_ANGELES, vn(2026, 3, 11, 0, 1), "260311"),  # still 10 March in Los Angeles
        (KIRITIMATI, vn(2026, 3, 10, 23, 59), "260310"),  # already 11 March in Kiritimati
    ],
    ids=["00:01", "23:59"],
)
async def test_handoff_dossier_code_carries_vietnams_day(zone: str, moment: datetime, day: str) -> None:
    app = FastAPI()
    env = KitEnvironment("http://sandbox.test", httpx.ASGITransport(app=app), 1.0)
    connector = CivilStatusConnector(CivilStatusSettings(url=env.base_url), transport=env.transport)
    async with httpx.AsyncClient(transport=env.transport, base_url=env.base_url) as admin:
        kit = Kit(connector, env, app, admin)
        with machine_zone(zone), travel(moment):
            request = kit.handoff("register_marriage", "marriage", kit.samples.marriage())
    assert request.dossier_code.startswith(f"LT-{day}-")

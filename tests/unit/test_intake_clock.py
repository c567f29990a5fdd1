"""Intake's receipt at awkward moments: around midnight and 15:00 in Vietnam, before Tết, any machine zone."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from schemas.catalog import load_catalog
from schemas.workdays import default_calendar
from services.intake.api import add_routes
from services.intake.intake import Intake
from services.intake.store import IntakeStore
from services.tools.stack.samples import SampleDossiers
from tests.clock import LOS_ANGELES, MACHINE_ZONES, fixed, machine_zone, travel, vn


def land_transfer() -> dict[str, Any]:
    """A land-use-right transfer (9.900001): 10 working days in the catalog, as the dates below count."""
    samples = SampleDossiers(seed=7)
    return samples.land_transfer("TD-12-345", samples.person(), 120.5)


@asynccontextmanager
async def intake_at(
    tmp_path: Path, now: Callable[[], dt.datetime] | None = None
) -> AsyncIterator[httpx.AsyncClient]:
    app = FastAPI()
    intake = Intake(IntakeStore(tmp_path / "intake.db"), load_catalog(), default_calendar(), "")
    if now is None:
        add_routes(app, intake, relay=None)
    else:
        add_routes(app, intake, relay=None, now=now)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://intake") as http:
        yield http


async def receipt(tmp_path: Path, now: Callable[[], dt.datetime] | None = None) -> dict[str, Any]:
    async with intake_at(tmp_path, now) as http:
        answer = await http.post("/dossiers", json=land_transfer(), headers={"Idempotency-Key": "k"})
    assert answer.status_code == 201, answer.text
    body: dict[str, Any] = answer.json()
    return body


@pytest.mark.parametrize("zone", MACHINE_ZONES)
@pytest.mark.parametrize(
    ("moment", "code_day", "due"),
    [
        # Tue 10 Mar 2026 at 23:59: after the cut-off, so counted from Wed 11; day 10 is Wed 25.
        (vn(2026, 3, 10, 23, 59), "260310", "25/03/2026"),
        # Wed 11 Mar 2026 at 00:01: a new day in Vietnam (still the 10th in Los Angeles).
        (vn(2026, 3, 11, 0, 1), "260311", "25/03/2026"),
    ],
    ids=["23:59", "00:01"],
)
async def test_receipt_code_and_due_date_follow_vietnams_day(
    tmp_path: Path, zone: str, moment: dt.datetime, code_day: str, due: str
) -> None:
    with machine_zone(zone):
        body = await receipt(tmp_path, fixed(moment))
    assert body["dossier_code"].startswith(f"LT-{code_day}-")
    assert body["due_date"] == due
    assert dt.datetime.fromisoformat(body["received_at"]) == moment


@pytest.mark.parametrize(
    ("hour", "minute", "due"),
    [(14, 59, "24/03/2026"), (15, 0, "24/03/2026"), (15, 1, "25/03/2026")],
    ids=["14:59", "15:00", "15:01"],
)
async def test_a_dossier_after_three_pm_counts_from_the_next_working_day(
    tmp_path: Path, hour: int, minute: int, due: str
) -> None:
    # Tue 10 Mar 2026: up to 15:00:00 day 1 is Wed 11 and day 10 Tue 24; after it, Wed 25.
    body = await receipt(tmp_path, fixed(vn(2026, 3, 10, hour, minute)))
    assert body["dossier_code"].startswith("LT-260310-")
    assert body["due_date"] == due


@pytest.mark.parametrize(
    ("hour", "minute", "due"),
    [(14, 59, "24/02/2027"), (15, 1, "25/02/2027")],
    ids=["14:59", "15:01"],
)
async def test_the_last_working_day_before_tet_2027(tmp_path: Path, hour: int, minute: int, due: str) -> None:
    # Wed 3 Feb 2027 is the last working day before Tết (Thu 4 - Wed 10 Feb off). Before 15:00
    # day 1 is Thu 11 Feb and day 10 Wed 24; after 15:00 the dossier counts as received on
    # Thu 11 Feb, so day 10 is Thu 25 Feb. The receipt code keeps the day it was handed in.
    body = await receipt(tmp_path, fixed(vn(2027, 2, 3, hour, minute)))
    assert body["dossier_code"].startswith("LT-270203-")
    assert body["due_date"] == due


async def test_by_default_the_receipt_is_stamped_by_the_real_clock(tmp_path: Path) -> None:
    with machine_zone(LOS_ANGELES), travel(vn(2026, 3, 11, 0, 1)):
        body = await receipt(tmp_path)
    assert body["dossier_code"].startswith("LT-260311-")
    assert body["due_date"] == "25/03/2026"

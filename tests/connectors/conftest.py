"""Fixtures for the connector adapter tests: each connector against its sandbox app, in process."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Generic, TypeVar
from uuid import uuid4

import httpx
import pytest
from fastapi import FastAPI

from connectors.base import Connector, HandoffRequest
from connectors.civil_status.adapter import CivilStatusConnector, CivilStatusSettings
from connectors.civil_status.client import CivilStatusClient
from connectors.civil_status.sandbox.app import create_app as create_civil_status_app
from connectors.land.adapter import LandConnector, LandSettings
from connectors.land.client import LandClient, Parcel
from connectors.land.sandbox.app import LandSandboxSettings
from connectors.land.sandbox.app import create_app as create_land_app
from connectors.sandbox_kit.admin import ADMIN_TOKEN_ENV
from connectors.tax.adapter import TaxConnector, TaxSettings
from connectors.tax.client import TaxClient
from connectors.tax.sandbox.app import create_app as create_tax_app
from connectors.testing import SampleForms
from tests.sandboxes.helpers import BASE_URL, TEST_ADMIN_TOKEN, asgi_client


@pytest.fixture(autouse=True)
def sandbox_admin_token(monkeypatch: pytest.MonkeyPatch) -> str:
    """The in-process sandboxes get the tests' admin token (``asgi_client`` sends it)."""
    monkeypatch.setenv(ADMIN_TOKEN_ENV, TEST_ADMIN_TOKEN)
    return TEST_ADMIN_TOKEN


C = TypeVar("C", bound=Connector)
K = TypeVar("K")


@dataclass
class Sandbox(Generic[C, K]):
    """A connector, the agency's own client and the sandbox's admin endpoints, all on one app."""

    connector: C
    client: K
    http: httpx.AsyncClient
    app: FastAPI

    async def faults(self, **change: Any) -> None:
        answer = await self.http.put("/_sandbox/faults", json=change)
        assert answer.status_code == 200, answer.text

    async def count(self, table: str) -> int:
        answer = await self.http.get("/_sandbox/records")
        assert answer.status_code == 200, answer.text
        counts: dict[str, int] = answer.json()["counts"]
        return counts[table]


LandSandbox = Sandbox[LandConnector, LandClient]
TaxSandbox = Sandbox[TaxConnector, TaxClient]
CivilSandbox = Sandbox[CivilStatusConnector, CivilStatusClient]


@asynccontextmanager
async def land_sandbox(*, job_seconds: float = 0.05, wait_s: float = 2.0) -> AsyncIterator[LandSandbox]:
    app = create_land_app(":memory:", settings=LandSandboxSettings(job_seconds=job_seconds))
    transport = httpx.ASGITransport(app=app)
    connector = LandConnector(LandSettings(url=BASE_URL, wait_s=wait_s), transport=transport)
    await connector.start()
    try:
        async with LandClient(BASE_URL, transport=transport) as client, asgi_client(app) as http:
            yield Sandbox(connector, client, http, app)
    finally:
        await connector.stop()


@pytest.fixture
async def land() -> AsyncIterator[LandSandbox]:
    async with land_sandbox() as sandbox:
        yield sandbox


@pytest.fixture
async def tax() -> AsyncIterator[TaxSandbox]:
    app = create_tax_app(":memory:")
    transport = httpx.ASGITransport(app=app)
    connector = TaxConnector(TaxSettings(url=BASE_URL), transport=transport)
    await connector.start()
    try:
        async with TaxClient(BASE_URL, transport=transport) as client, asgi_client(app) as http:
            yield Sandbox(connector, client, http, app)
    finally:
        await connector.stop()


@pytest.fixture
async def civil() -> AsyncIterator[CivilSandbox]:
    app = create_civil_status_app(":memory:")
    transport = httpx.ASGITransport(app=app)
    connector = CivilStatusConnector(CivilStatusSettings(url=BASE_URL), transport=transport)
    await connector.start()
    try:
        async with CivilStatusClient(BASE_URL, transport=transport) as client, asgi_client(app) as http:
            yield Sandbox(connector, client, http, app)
    finally:
        await connector.stop()


@pytest.fixture
def samples() -> SampleForms:
    return SampleForms(seed=2026)


def handoff(
    action: str,
    form_kind: str,
    form: dict[str, Any],
    *,
    inputs: dict[str, dict[str, Any]] | None = None,
    handoff_id: str | None = None,
    procedure_code: str = "9.900001",
) -> HandoffRequest:
    """A handoff request as the connector host builds it from a ``HandoffRequested`` event."""
    return HandoffRequest(
        handoff_id=handoff_id or str(uuid4()),
        dossier_id=str(uuid4()),
        dossier_code="LT-260301-000042",
        procedure_code=procedure_code,
        step_id=f"step_{action}",
        action=action,
        form_kind=form_kind,
        form=form,
        inputs=inputs or {},
    )


async def add_parcel(
    land: LandSandbox,
    owner: dict[str, Any],
    parcel_id: str,
    *,
    area_m2: float = 120.5,
    certified: bool = True,
) -> Parcel:
    """Registers ``owner`` as the land user of a new parcel."""
    return await land.client.add_parcel(
        Parcel(
            parcel_id=parcel_id,
            area_m2=area_m2,
            owner_citizen_id=owner["citizen_id"],
            owner_name=owner["full_name"],
            land_use_purpose="ODT",
            has_certificate=certified,
            address="Thửa 42, tờ bản đồ số 60, Phường Bến Nghé, Quận 1, TP. Hồ Chí Minh",
        )
    )

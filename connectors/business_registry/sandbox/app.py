"""Business registration office sandbox (đăng ký hộ kinh doanh): English JSON, RFC 7807 problems.

Endpoints (``POST`` honours ``Idempotency-Key``):

- ``POST /v1/household-businesses`` ``{dossier_code, business_name, owner {citizen_id, full_name,
  date_of_birth}, address, line_of_business, capital_vnd}`` → 201 ``{business_code,
  registration_date, status}``: the business code (mã số hộ kinh doanh) is illustrative — the
  district code, a letter, ``8`` and a 6-digit serial.
- ``GET /v1/household-businesses/{business_code}`` → the registration (404 problem if unknown).

Refusals are ``application/problem+json`` ``{type, title, status, detail, code}``: 409 ``NAME_TAKEN``
(the name is registered in the district already), 422 ``OWNER_ALREADY_REGISTERED`` (an individual
registers one household business only — Decree 01/2021/NĐ-CP, art. 80). 400 ``INVALID_REQUEST`` for a
body that does not fit. The registration date is Vietnam's day by the ``clock`` given to
:func:`create_app` (the real clock by default).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from connectors.sandbox_kit.admin import install_sandbox_kit
from connectors.sandbox_kit.faults import FaultInjector, FaultSettings
from connectors.sandbox_kit.idempotency import IdempotencyKeys
from connectors.sandbox_kit.store import Store
from schemas.workdays import vn_today

PROBLEM = "application/problem+json"

SCHEMA = """
CREATE TABLE IF NOT EXISTS businesses (
    business_code TEXT PRIMARY KEY,
    business_name TEXT NOT NULL UNIQUE COLLATE NOCASE,
    owner_citizen_id TEXT NOT NULL UNIQUE,
    owner_name TEXT NOT NULL,
    address TEXT NOT NULL,
    line_of_business TEXT NOT NULL,
    capital_vnd INTEGER NOT NULL,
    dossier_code TEXT NOT NULL,
    registration_date TEXT NOT NULL
);
"""


class BusinessRegistrySandboxSettings(BaseSettings):
    """From ``BUSINESS_REGISTRY_SANDBOX_*`` environment variables or constructor args."""

    model_config = SettingsConfigDict(env_prefix="BUSINESS_REGISTRY_SANDBOX_", extra="ignore")

    district_code: str = Field(default="41", pattern=r"^\d{2}$")


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class OwnerIn(_In):
    citizen_id: str = Field(pattern=r"^\d{12}$")
    full_name: str = Field(min_length=1, max_length=200)
    date_of_birth: date


class HouseholdBusinessIn(_In):
    dossier_code: str = Field(min_length=1, max_length=64)
    business_name: str = Field(min_length=1, max_length=200)
    owner: OwnerIn
    address: str = Field(min_length=1, max_length=300)
    line_of_business: str = Field(min_length=1, max_length=300)
    capital_vnd: int = Field(gt=0, lt=2**63)  # what the registry's INTEGER column holds


def problem(status: int, code: str, detail: str) -> Response:
    slug = code.lower().replace("_", "-")
    body = {
        "type": f"urn:business-registry:{slug}",
        "title": code.replace("_", " ").capitalize(),
        "status": status,
        "detail": detail,
        "code": code,
    }
    return JSONResponse(body, status_code=status, media_type=PROBLEM)


def _utc_now() -> datetime:
    return datetime.now(UTC)


class BusinessRegistry:
    def __init__(
        self,
        store: Store,
        settings: BusinessRegistrySandboxSettings,
        clock: Callable[[], datetime] = _utc_now,
    ) -> None:
        self.store = store
        self.settings = settings
        self.clock = clock

    def register(self, body: HouseholdBusinessIn) -> Response:
        with self.store.transaction() as conn:
            taken = conn.execute(
                "SELECT business_code FROM businesses WHERE business_name = ?", (body.business_name,)
            ).fetchone()
            if taken is not None:
                return problem(
                    409,
                    "NAME_TAKEN",
                    f"Tên hộ kinh doanh '{body.business_name}' đã được đăng ký trong quận/huyện",
                )
            owned = conn.execute(
                "SELECT business_code FROM businesses WHERE owner_citizen_id = ?", (body.owner.citizen_id,)
            ).fetchone()
            if owned is not None:
                return problem(
                    422,
                    "OWNER_ALREADY_REGISTERED",
                    f"Cá nhân đã đăng ký hộ kinh doanh {owned['business_code']}; mỗi cá nhân chỉ được "
                    "đăng ký một hộ kinh doanh (Nghị định 01/2021/NĐ-CP, Điều 80)",
                )
            code = f"{self.settings.district_code}A8{Store.next_sequence(conn, 'business'):06d}"
            today = vn_today(self.clock()).isoformat()
            conn.execute(
                "INSERT INTO businesses VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    code,
                    body.business_name,
                    body.owner.citizen_id,
                    body.owner.full_name,
                    body.address,
                    body.line_of_business,
                    body.capital_vnd,
                    body.dossier_code,
                    today,
                ),
            )
        return JSONResponse(
            {"business_code": code, "registration_date": today, "status": "active"}, status_code=201
        )

    def business(self, code: str) -> dict[str, Any] | None:
        return self.store.fetch_one("SELECT * FROM businesses WHERE business_code = ?", (code,))


def create_app(
    db_path: str = ":memory:",
    faults: FaultSettings | None = None,
    settings: BusinessRegistrySandboxSettings | None = None,
    *,
    clock: Callable[[], datetime] = _utc_now,
) -> FastAPI:
    store = Store(db_path, SCHEMA)
    registry = BusinessRegistry(store, settings or BusinessRegistrySandboxSettings(), clock)
    idempotency = IdempotencyKeys(store, error_response=problem)
    app = FastAPI(title="Business registration office sandbox", version="1")
    install_sandbox_kit(app, name="business_registry", store=store, injector=FaultInjector(faults))

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> Response:
        first = exc.errors()[0]
        field = ".".join(str(part) for part in first["loc"] if part != "body")
        return problem(400, "INVALID_REQUEST", f"{field}: {first['msg']}")

    @app.post("/v1/household-businesses", status_code=201)
    async def register(body: HouseholdBusinessIn, request: Request) -> Response:
        return await idempotency.run(request, lambda: registry.register(body))

    @app.get("/v1/household-businesses/{business_code}")
    async def get_business(business_code: str) -> Response:
        found = registry.business(business_code)
        if found is None:
            return problem(404, "NOT_FOUND", f"no household business {business_code}")
        return JSONResponse(found)

    return app

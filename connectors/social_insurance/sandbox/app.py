"""Social insurance sandbox (Bảo hiểm xã hội): camelCase JSON, every request an asynchronous job.

Endpoints (``POST`` honours ``Idempotency-Key``):

- ``POST /bhxh/api/requests`` → 202 ``{requestId, status: "PROCESSING", statusUrl}``, with a body of
  ``type`` ``CHILD_HEALTH_CARD`` (``child {personalId, fullName, dateOfBirth, sex}``, ``address``,
  ``birthRegistrationNo``) or ``FUNERAL_ALLOWANCE`` (``deceased {personalId, fullName, dateOfBirth}``,
  ``dateOfDeath``, ``beneficiary {personalId, fullName}``, ``deathRegistrationNo``); dates ISO.
- ``GET /bhxh/api/requests/{requestId}`` → ``{requestId, type, status, result, rejection}``; status
  ``PROCESSING`` until ``processing_seconds`` after submission, then ``APPROVED`` with ``result`` or
  ``REJECTED`` with ``rejection {code, message}``. The rules run when the request completes.

Rules: a health card (thẻ BHYT) only for a child under 6, once per child (``CHILD_NOT_UNDER_6``,
``CARD_ALREADY_ISSUED``); its number is ``TE1`` + the 2-digit province + a 10-digit social insurance
number, valid until the day before the 6th birthday. The funeral allowance (trợ cấp mai táng) is
``funeral_multiplier`` × ``base_salary_vnd`` (10 × 2,340,000 đồng since 1 July 2024; keep them
configurable), once per deceased (``ALLOWANCE_ALREADY_PAID``). Ages and the decision year are
Vietnam's, by the ``clock`` given to :func:`create_app` (the real clock by default).
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal

from fastapi import FastAPI, HTTPException, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel
from pydantic_settings import BaseSettings, SettingsConfigDict

from connectors.sandbox_kit.admin import install_sandbox_kit
from connectors.sandbox_kit.faults import FaultInjector, FaultSettings
from connectors.sandbox_kit.idempotency import IdempotencyKeys
from connectors.sandbox_kit.store import Store
from schemas.workdays import vn_today

SCHEMA = """
CREATE TABLE IF NOT EXISTS requests (
    request_id TEXT PRIMARY KEY,
    type TEXT NOT NULL,
    body TEXT NOT NULL,
    status TEXT NOT NULL,
    result TEXT,
    rejection TEXT,
    ready_at REAL NOT NULL,
    created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS health_cards (
    card_no TEXT PRIMARY KEY,
    personal_id TEXT NOT NULL UNIQUE,
    valid_from TEXT NOT NULL,
    valid_to TEXT NOT NULL,
    request_id TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS funeral_allowances (
    decision_no TEXT PRIMARY KEY,
    deceased_id TEXT NOT NULL UNIQUE,
    beneficiary_id TEXT NOT NULL,
    amount_vnd INTEGER NOT NULL,
    request_id TEXT NOT NULL
);
"""


class SocialInsuranceSandboxSettings(BaseSettings):
    """From ``SOCIAL_INSURANCE_SANDBOX_*`` environment variables or constructor args."""

    model_config = SettingsConfigDict(env_prefix="SOCIAL_INSURANCE_SANDBOX_", extra="ignore")

    processing_seconds: float = Field(default=0.3, ge=0.0, description="how long a request is PROCESSING")
    province: str = Field(default="79", pattern=r"^\d{2}$", description="province digits of card numbers")
    base_salary_vnd: int = Field(default=2_340_000, gt=0, description="mức lương cơ sở")
    funeral_multiplier: int = Field(default=10, gt=0, description="Social Insurance Law, art. 66")


class _Camel(BaseModel):
    model_config = ConfigDict(extra="forbid", alias_generator=to_camel, populate_by_name=True)


class PersonIn(_Camel):
    personal_id: str = Field(pattern=r"^\d{12}$")
    full_name: str = Field(min_length=1, max_length=200)
    date_of_birth: date | None = None
    sex: Literal["male", "female"] | None = None


class HealthCardIn(_Camel):
    type: Literal["CHILD_HEALTH_CARD"]
    dossier_code: str = Field(min_length=1)
    child: PersonIn
    address: str = Field(min_length=1, max_length=300)
    birth_registration_no: str = Field(min_length=1)


class FuneralAllowanceIn(_Camel):
    type: Literal["FUNERAL_ALLOWANCE"]
    dossier_code: str = Field(min_length=1)
    deceased: PersonIn
    date_of_death: date
    beneficiary: PersonIn
    death_registration_no: str = Field(min_length=1)


def _rejection(code: str, message: str) -> dict[str, str]:
    return {"code": code, "message": message}


def _utc_now() -> datetime:
    return datetime.now(UTC)


class SocialInsuranceOffice:
    def __init__(
        self,
        store: Store,
        settings: SocialInsuranceSandboxSettings,
        clock: Callable[[], datetime] = _utc_now,
    ) -> None:
        self.store = store
        self.settings = settings
        self.clock = clock

    def submit(self, body: HealthCardIn | FuneralAllowanceIn) -> Response:
        request_id = uuid.uuid4().hex
        self.store.execute(
            "INSERT INTO requests (request_id, type, body, status, ready_at, created_at) "
            "VALUES (?, ?, ?, 'PROCESSING', ?, ?)",
            (
                request_id,
                body.type,
                body.model_dump_json(),
                time.time() + self.settings.processing_seconds,
                datetime.now(UTC).isoformat(),
            ),
        )
        status_url = f"/bhxh/api/requests/{request_id}"
        return JSONResponse(
            {"requestId": request_id, "status": "PROCESSING", "statusUrl": status_url}, status_code=202
        )

    def status(self, request_id: str) -> dict[str, Any] | None:
        self._complete_if_due(request_id)
        row = self.store.fetch_one("SELECT * FROM requests WHERE request_id = ?", (request_id,))
        if row is None:
            return None
        return {
            "requestId": row["request_id"],
            "type": row["type"],
            "status": row["status"],
            "result": json.loads(row["result"]) if row["result"] else None,
            "rejection": json.loads(row["rejection"]) if row["rejection"] else None,
        }

    def _complete_if_due(self, request_id: str) -> None:
        with self.store.transaction() as conn:
            row = conn.execute(
                "SELECT type, body, status, ready_at FROM requests WHERE request_id = ?", (request_id,)
            ).fetchone()
            if row is None or row["status"] != "PROCESSING" or row["ready_at"] > time.time():
                return
            if row["type"] == "CHILD_HEALTH_CARD":
                result, rejection = self._card(
                    conn, HealthCardIn.model_validate_json(row["body"]), request_id
                )
            else:
                body = FuneralAllowanceIn.model_validate_json(row["body"])
                result, rejection = self._allowance(conn, body, request_id)
            conn.execute(
                "UPDATE requests SET status = ?, result = ?, rejection = ? WHERE request_id = ?",
                (
                    "REJECTED" if rejection else "APPROVED",
                    json.dumps(result) if result else None,
                    json.dumps(rejection, ensure_ascii=False) if rejection else None,
                    request_id,
                ),
            )

    def _card(self, conn: Any, body: HealthCardIn, request_id: str) -> tuple[Any, Any]:
        born = body.child.date_of_birth
        today = vn_today(self.clock())
        if born is None or born > today:
            return None, _rejection("BIRTH_DATE_INVALID", "Ngày sinh của trẻ không hợp lệ")
        try:
            sixth = born.replace(year=born.year + 6)
        except ValueError:  # born on 29 February
            sixth = date(born.year + 6, 3, 1)
        if today >= sixth:
            return None, _rejection(
                "CHILD_NOT_UNDER_6", "Trẻ đã đủ 6 tuổi, không thuộc đối tượng cấp thẻ BHYT trẻ em"
            )
        issued = conn.execute(
            "SELECT card_no FROM health_cards WHERE personal_id = ?", (body.child.personal_id,)
        ).fetchone()
        if issued is not None:
            return None, _rejection("CARD_ALREADY_ISSUED", f"Trẻ đã được cấp thẻ BHYT số {issued['card_no']}")
        insurance_no = f"{self.settings.province}{Store.next_sequence(conn, 'insurance-no'):08d}"
        card_no = f"TE1{self.settings.province}{insurance_no}"
        valid_to = sixth - timedelta(days=1)
        conn.execute(
            "INSERT INTO health_cards VALUES (?, ?, ?, ?, ?)",
            (card_no, body.child.personal_id, born.isoformat(), valid_to.isoformat(), request_id),
        )
        result = {
            "cardNo": card_no,
            "socialInsuranceNo": insurance_no,
            "validFrom": born.isoformat(),
            "validTo": valid_to.isoformat(),
        }
        return result, None

    def _allowance(self, conn: Any, body: FuneralAllowanceIn, request_id: str) -> tuple[Any, Any]:
        paid = conn.execute(
            "SELECT decision_no FROM funeral_allowances WHERE deceased_id = ?", (body.deceased.personal_id,)
        ).fetchone()
        if paid is not None:
            return None, _rejection(
                "ALLOWANCE_ALREADY_PAID",
                f"Trợ cấp mai táng đã được giải quyết theo quyết định {paid['decision_no']}",
            )
        year = vn_today(self.clock()).year
        decision_no = f"MT-{year}-{Store.next_sequence(conn, f'decision-{year}'):06d}"
        amount = self.settings.base_salary_vnd * self.settings.funeral_multiplier
        conn.execute(
            "INSERT INTO funeral_allowances VALUES (?, ?, ?, ?, ?)",
            (decision_no, body.deceased.personal_id, body.beneficiary.personal_id, amount, request_id),
        )
        return {"decisionNo": decision_no, "amountVnd": amount}, None


def create_app(
    db_path: str = ":memory:",
    faults: FaultSettings | None = None,
    settings: SocialInsuranceSandboxSettings | None = None,
    *,
    clock: Callable[[], datetime] = _utc_now,
) -> FastAPI:
    settings = settings or SocialInsuranceSandboxSettings()
    store = Store(db_path, SCHEMA)
    office = SocialInsuranceOffice(store, settings, clock)
    idempotency = IdempotencyKeys(store)
    app = FastAPI(title="Social insurance sandbox", version="1")
    install_sandbox_kit(app, name="social_insurance", store=store, injector=FaultInjector(faults))

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> Response:
        # FastAPI's default handler echoes the input, and fails (500) on a body that is not UTF-8.
        errors = [
            {"loc": [str(part) for part in error["loc"]], "msg": error["msg"], "type": error["type"]}
            for error in exc.errors()
        ]
        return JSONResponse({"detail": errors}, status_code=422)

    @app.post("/bhxh/api/requests", status_code=202)
    async def submit(body: HealthCardIn | FuneralAllowanceIn, request: Request) -> Response:
        return await idempotency.run(request, lambda: office.submit(body))

    @app.get("/bhxh/api/requests/{request_id}")
    async def status(request_id: str) -> dict[str, Any]:
        found = office.status(request_id)
        if found is None:
            raise HTTPException(404, f"no request {request_id}")
        return found

    return app

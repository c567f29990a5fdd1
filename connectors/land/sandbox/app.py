"""Land registration office sandbox (Văn phòng đăng ký đất đai): REST/JSON with 202 + jobs.

Endpoints (write endpoints honour ``Idempotency-Key``):

- ``POST /api/v1/transfer-checks``           → 202 job; checks a land-use-right transfer and
  issues the cadastral information slip number (phiếu chuyển thông tin địa chính).
- ``POST /api/v1/transfer-registrations``    → 202 job; registers the transfer, issues a certificate.
- ``POST /api/v1/first-certificate-checks``  → 202 job; checks a first-time certificate application.
- ``POST /api/v1/first-certificates``        → 202 job; issues the first certificate.
- ``GET  /api/v1/jobs/{job_id}``             → the job: running | succeeded | rejected | failed.
- ``GET  /api/v1/parcels/{parcel_id}``       → the parcel and its current registered user (owner).
- ``POST /_sandbox/parcels``                 → add a parcel (tests).

A job completes ``job_seconds`` after it was accepted (a background task; a poll of an overdue
job completes it too, so jobs survive a restart). Checks run when the job completes, against
the parcel as it is then. Rejections carry a Vietnamese and an English reason. Slip and
certificate numbers carry Vietnam's year by the ``clock`` given to :func:`create_app` (the real
clock by default): a slip issued at 00:30 on 1 January in Vietnam is already of the new year.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Literal

from fastapi import FastAPI, HTTPException, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from connectors.sandbox_kit.admin import install_sandbox_kit
from connectors.sandbox_kit.faults import FaultInjector, FaultSettings
from connectors.sandbox_kit.idempotency import IdempotencyKeys
from connectors.sandbox_kit.store import Store
from schemas.examples.land_parcels import SEED_PARCELS
from schemas.workdays import vn_today

SCHEMA = """
CREATE TABLE IF NOT EXISTS parcels (
    parcel_id TEXT PRIMARY KEY,
    area_m2 REAL NOT NULL,
    owner_citizen_id TEXT NOT NULL,
    owner_name TEXT NOT NULL,
    land_use_purpose TEXT NOT NULL,
    has_certificate INTEGER NOT NULL,
    certificate_no TEXT,
    address TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS jobs (
    job_id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    status TEXT NOT NULL,
    request TEXT NOT NULL,
    result TEXT,
    reason TEXT,
    created_at TEXT NOT NULL,
    ready_at REAL NOT NULL,
    finished_at TEXT
);
CREATE TABLE IF NOT EXISTS ownership_changes (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    parcel_id TEXT NOT NULL,
    from_citizen_id TEXT NOT NULL,
    from_name TEXT NOT NULL,
    to_citizen_id TEXT NOT NULL,
    to_name TEXT NOT NULL,
    certificate_no TEXT NOT NULL,
    tax_paid_reference TEXT NOT NULL,
    job_id TEXT NOT NULL,
    changed_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS certificates (
    certificate_no TEXT PRIMARY KEY,
    parcel_id TEXT NOT NULL,
    holder_citizen_id TEXT NOT NULL,
    holder_name TEXT NOT NULL,
    kind TEXT NOT NULL,
    job_id TEXT NOT NULL,
    issued_at TEXT NOT NULL
);
"""

# Illustrative unit land prices (VND per m²) by land-use purpose, standing in for a province's price table.
UNIT_PRICES_VND: dict[str, int] = {"ODT": 45_000_000, "ONT": 8_000_000, "CLN": 1_200_000, "LUC": 600_000}
DEFAULT_UNIT_PRICE_VND = 1_000_000

JobKind = Literal["transfer_check", "transfer_registration", "first_certificate_check", "first_certificate"]
JobStatus = Literal["running", "succeeded", "rejected", "failed"]


class LandSandboxSettings(BaseSettings):
    """Business settings, from ``LAND_SANDBOX_*`` environment variables or constructor args."""

    model_config = SettingsConfigDict(env_prefix="LAND_SANDBOX_", extra="ignore")

    job_seconds: float = Field(default=0.2, ge=0.0, description="how long a job runs before it completes")
    area_tolerance_m2: float = Field(
        default=0.5, ge=0.0, description="allowed gap between declared and recorded area"
    )
    seed_parcels: bool = True


CitizenId = Field(pattern=r"^\d{12}$", description="12-digit citizen id (CCCD)")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class TransferCheckIn(_Strict):
    parcel_id: str = Field(min_length=1, max_length=64)
    transferor_citizen_id: str = CitizenId
    transferee_citizen_id: str = CitizenId
    transferee_name: str = Field(min_length=1, max_length=200)
    declared_value_vnd: int = Field(ge=0)
    area_m2: float = Field(gt=0)


class TransferRegistrationIn(_Strict):
    parcel_id: str = Field(min_length=1, max_length=64)
    transferee_citizen_id: str = CitizenId
    transferee_name: str = Field(min_length=1, max_length=200)
    tax_paid_reference: str = Field(min_length=1, max_length=64)


class FirstCertificateCheckIn(_Strict):
    parcel_id: str = Field(min_length=1, max_length=64)
    applicant_citizen_id: str = CitizenId
    applicant_name: str = Field(min_length=1, max_length=200)
    area_m2: float = Field(gt=0)


class FirstCertificateIn(_Strict):
    parcel_id: str = Field(min_length=1, max_length=64)
    applicant_citizen_id: str = CitizenId
    applicant_name: str = Field(min_length=1, max_length=200)
    tax_paid_reference: str = Field(min_length=1, max_length=64)


class ParcelIn(_Strict):
    parcel_id: str = Field(pattern=r"^TD-\d{1,4}-\d{1,5}$")
    area_m2: float = Field(gt=0)
    owner_citizen_id: str = CitizenId
    owner_name: str = Field(min_length=1, max_length=200)
    land_use_purpose: str = Field(default="ODT", min_length=2, max_length=8)
    has_certificate: bool = True
    address: str = ""


def _now() -> str:
    return datetime.now(UTC).isoformat()


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _reason(code: str, vi: str, en: str) -> dict[str, str]:
    return {"code": code, "vi": vi, "en": en}


Outcome = tuple[JobStatus, dict[str, Any] | None, dict[str, str] | None]


class LandRegistry:
    """The office's records and job processing."""

    def __init__(
        self, store: Store, settings: LandSandboxSettings, clock: Callable[[], datetime] = _utc_now
    ) -> None:
        self.store = store
        self.settings = settings
        self.clock = clock
        self._tasks: set[asyncio.Task[None]] = set()

    # --- parcels -------------------------------------------------------------------------

    def seed(self) -> None:
        with self.store.transaction() as conn:
            for parcel in SEED_PARCELS:
                conn.execute(
                    "INSERT OR IGNORE INTO parcels (parcel_id, area_m2, owner_citizen_id, owner_name, "
                    "land_use_purpose, has_certificate, certificate_no, address, updated_at) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        parcel["parcel_id"],
                        parcel["area_m2"],
                        parcel["owner_citizen_id"],
                        parcel["owner_name"],
                        parcel["land_use_purpose"],
                        int(parcel["has_certificate"]),
                        f"SEED-{parcel['parcel_id']}" if parcel["has_certificate"] else None,
                        parcel["address"],
                        _now(),
                    ),
                )

    def add_parcel(self, parcel: ParcelIn) -> bool:
        with self.store.transaction() as conn:
            cursor = conn.execute(
                "INSERT OR IGNORE INTO parcels (parcel_id, area_m2, owner_citizen_id, owner_name, "
                "land_use_purpose, has_certificate, certificate_no, address, updated_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    parcel.parcel_id,
                    parcel.area_m2,
                    parcel.owner_citizen_id,
                    parcel.owner_name,
                    parcel.land_use_purpose,
                    int(parcel.has_certificate),
                    f"SEED-{parcel.parcel_id}" if parcel.has_certificate else None,
                    parcel.address,
                    _now(),
                ),
            )
            return cursor.rowcount == 1

    def parcel(self, parcel_id: str) -> dict[str, Any] | None:
        row = self.store.fetch_one("SELECT * FROM parcels WHERE parcel_id = ?", (parcel_id,))
        if row is None:
            return None
        row["has_certificate"] = bool(row["has_certificate"])
        row.pop("updated_at", None)
        return row

    # --- jobs ----------------------------------------------------------------------------

    def start_job(self, kind: JobKind, request: BaseModel) -> Response:
        job_id = uuid.uuid4().hex
        self.store.execute(
            "INSERT INTO jobs (job_id, kind, status, request, created_at, ready_at) "
            "VALUES (?, ?, 'running', ?, ?, ?)",
            (job_id, kind, request.model_dump_json(), _now(), time.time() + self.settings.job_seconds),
        )
        task = asyncio.get_running_loop().create_task(self._finish_later(job_id))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        poll = f"/api/v1/jobs/{job_id}"
        return JSONResponse(
            {"job_id": job_id, "kind": kind, "status": "running", "poll": poll},
            status_code=202,
            headers={"Location": poll},
        )

    async def _finish_later(self, job_id: str) -> None:
        await asyncio.sleep(self.settings.job_seconds)
        self.finish_if_due(job_id)

    def finish_if_due(self, job_id: str) -> None:
        with self.store.transaction() as conn:
            row = conn.execute(
                "SELECT kind, status, request, ready_at FROM jobs WHERE job_id = ?", (job_id,)
            ).fetchone()
            if row is None or row["status"] != "running" or row["ready_at"] > time.time():
                return
            request = json.loads(row["request"])
            try:
                status, result, reason = self._evaluate(conn, row["kind"], request, job_id)
            except Exception as exc:  # an internal failure becomes a failed job, not a crash
                status, result, reason = "failed", None, _reason("LOI_HE_THONG", "Lỗi hệ thống", repr(exc))
            conn.execute(
                "UPDATE jobs SET status = ?, result = ?, reason = ?, finished_at = ? WHERE job_id = ?",
                (
                    status,
                    None if result is None else json.dumps(result, ensure_ascii=False),
                    None if reason is None else json.dumps(reason, ensure_ascii=False),
                    _now(),
                    job_id,
                ),
            )

    def job(self, job_id: str) -> dict[str, Any] | None:
        self.finish_if_due(job_id)
        row = self.store.fetch_one("SELECT * FROM jobs WHERE job_id = ?", (job_id,))
        if row is None:
            return None
        return {
            "job_id": row["job_id"],
            "kind": row["kind"],
            "status": row["status"],
            "result": None if row["result"] is None else json.loads(row["result"]),
            "reason": None if row["reason"] is None else json.loads(row["reason"]),
            "created_at": row["created_at"],
            "finished_at": row["finished_at"],
        }

    # --- business rules ------------------------------------------------------------------

    def _evaluate(self, conn: Any, kind: str, req: dict[str, Any], job_id: str) -> Outcome:
        parcel = conn.execute("SELECT * FROM parcels WHERE parcel_id = ?", (req["parcel_id"],)).fetchone()
        if parcel is None:
            return (
                "rejected",
                None,
                _reason(
                    "PARCEL_NOT_FOUND",
                    f"Thửa đất {req['parcel_id']} không có trong cơ sở dữ liệu địa chính",
                    f"Parcel {req['parcel_id']} does not exist in the cadastral database",
                ),
            )
        if kind == "transfer_check":
            return self._transfer_check(conn, parcel, req)
        if kind == "transfer_registration":
            return self._transfer_registration(conn, parcel, req, job_id)
        if kind == "first_certificate_check":
            return self._first_certificate_check(conn, parcel, req)
        return self._first_certificate(conn, parcel, req, job_id)

    def _area_mismatch(self, parcel: Any, declared: float) -> dict[str, str] | None:
        if abs(float(parcel["area_m2"]) - declared) <= self.settings.area_tolerance_m2:
            return None
        return _reason(
            "AREA_MISMATCH",
            f"Diện tích kê khai {declared:g} m² không khớp với diện tích trong hồ sơ địa chính "
            f"{parcel['area_m2']:g} m²",
            f"Declared area {declared:g} m² does not match the recorded area {parcel['area_m2']:g} m²",
        )

    def _slip(self, conn: Any, parcel: Any) -> dict[str, Any]:
        year = vn_today(self.clock()).year
        seq = Store.next_sequence(conn, f"slip-{year}")
        unit_price = UNIT_PRICES_VND.get(parcel["land_use_purpose"], DEFAULT_UNIT_PRICE_VND)
        return {
            "cadastral_slip_no": f"PCTT-{year}-{seq:06d}",
            "parcel_id": parcel["parcel_id"],
            "area_m2": parcel["area_m2"],
            "land_use_purpose": parcel["land_use_purpose"],
            "assessed_value_vnd": round(float(parcel["area_m2"]) * unit_price),
        }

    def _transfer_check(self, conn: Any, parcel: Any, req: dict[str, Any]) -> Outcome:
        if parcel["owner_citizen_id"] != req["transferor_citizen_id"]:
            return (
                "rejected",
                None,
                _reason(
                    "NOT_OWNER",
                    "Bên chuyển nhượng không phải là người sử dụng đất đã đăng ký của thửa đất",
                    "The transferor is not the registered land user of the parcel",
                ),
            )
        if req["transferee_citizen_id"] == req["transferor_citizen_id"]:
            return (
                "rejected",
                None,
                _reason(
                    "SAME_PARTY",
                    "Bên nhận chuyển nhượng trùng với bên chuyển nhượng",
                    "The transferee is the transferor",
                ),
            )
        if not parcel["has_certificate"]:
            return (
                "rejected",
                None,
                _reason(
                    "NO_CERTIFICATE",
                    "Thửa đất chưa được cấp Giấy chứng nhận nên chưa đủ điều kiện chuyển nhượng",
                    "The parcel has no certificate yet, so it cannot be transferred",
                ),
            )
        mismatch = self._area_mismatch(parcel, float(req["area_m2"]))
        if mismatch:
            return "rejected", None, mismatch
        return "succeeded", self._slip(conn, parcel), None

    def _transfer_registration(self, conn: Any, parcel: Any, req: dict[str, Any], job_id: str) -> Outcome:
        if parcel["owner_citizen_id"] == req["transferee_citizen_id"]:
            return (
                "rejected",
                None,
                _reason(
                    "ALREADY_OWNER",
                    "Bên nhận chuyển nhượng đã là người sử dụng đất của thửa đất",
                    "The transferee is already the registered land user",
                ),
            )
        checked = conn.execute(
            "SELECT 1 FROM jobs WHERE kind = 'transfer_check' AND status = 'succeeded' "
            "AND json_extract(request, '$.parcel_id') = ? "
            "AND json_extract(request, '$.transferor_citizen_id') = ? "
            "AND json_extract(request, '$.transferee_citizen_id') = ?",
            (parcel["parcel_id"], parcel["owner_citizen_id"], req["transferee_citizen_id"]),
        ).fetchone()
        if checked is None:
            return (
                "rejected",
                None,
                _reason(
                    "NO_TRANSFER_CHECK",
                    "Chưa có kết quả kiểm tra hồ sơ chuyển nhượng hợp lệ cho thửa đất và bên nhận này",
                    "No successful transfer check exists for this parcel and transferee",
                ),
            )
        certificate_no = self._issue_certificate(
            conn,
            parcel["parcel_id"],
            req["transferee_citizen_id"],
            req["transferee_name"],
            "transfer",
            job_id,
        )
        conn.execute(
            "INSERT INTO ownership_changes (parcel_id, from_citizen_id, from_name, to_citizen_id, to_name, "
            "certificate_no, tax_paid_reference, job_id, changed_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                parcel["parcel_id"],
                parcel["owner_citizen_id"],
                parcel["owner_name"],
                req["transferee_citizen_id"],
                req["transferee_name"],
                certificate_no,
                req["tax_paid_reference"],
                job_id,
                _now(),
            ),
        )
        conn.execute(
            "UPDATE parcels SET owner_citizen_id = ?, owner_name = ?, has_certificate = 1, "
            "certificate_no = ?, updated_at = ? WHERE parcel_id = ?",
            (
                req["transferee_citizen_id"],
                req["transferee_name"],
                certificate_no,
                _now(),
                parcel["parcel_id"],
            ),
        )
        return (
            "succeeded",
            {
                "certificate_no": certificate_no,
                "parcel_id": parcel["parcel_id"],
                "owner_citizen_id": req["transferee_citizen_id"],
                "owner_name": req["transferee_name"],
            },
            None,
        )

    def _first_certificate_rules(self, parcel: Any, req: dict[str, Any]) -> dict[str, str] | None:
        if parcel["has_certificate"]:
            return _reason(
                "ALREADY_CERTIFIED",
                "Thửa đất đã được cấp Giấy chứng nhận",
                "The parcel already has a certificate",
            )
        if parcel["owner_citizen_id"] != req["applicant_citizen_id"]:
            return _reason(
                "NOT_REGISTERED_USER",
                "Người nộp hồ sơ không phải là người sử dụng đất đã kê khai đăng ký",
                "The applicant is not the registered land user",
            )
        return None

    def _first_certificate_check(self, conn: Any, parcel: Any, req: dict[str, Any]) -> Outcome:
        reason = self._first_certificate_rules(parcel, req) or self._area_mismatch(
            parcel, float(req["area_m2"])
        )
        if reason:
            return "rejected", None, reason
        return "succeeded", self._slip(conn, parcel), None

    def _first_certificate(self, conn: Any, parcel: Any, req: dict[str, Any], job_id: str) -> Outcome:
        reason = self._first_certificate_rules(parcel, req)
        if reason:
            return "rejected", None, reason
        certificate_no = self._issue_certificate(
            conn, parcel["parcel_id"], req["applicant_citizen_id"], req["applicant_name"], "first", job_id
        )
        conn.execute(
            "UPDATE parcels SET has_certificate = 1, certificate_no = ?, owner_name = ?, updated_at = ? "
            "WHERE parcel_id = ?",
            (certificate_no, req["applicant_name"], _now(), parcel["parcel_id"]),
        )
        return (
            "succeeded",
            {
                "certificate_no": certificate_no,
                "parcel_id": parcel["parcel_id"],
                "owner_citizen_id": req["applicant_citizen_id"],
                "owner_name": req["applicant_name"],
            },
            None,
        )

    def _issue_certificate(
        self, conn: Any, parcel_id: str, holder_id: str, holder_name: str, kind: str, job_id: str
    ) -> str:
        year = vn_today(self.clock()).year
        certificate_no = f"GCN-{year}-{Store.next_sequence(conn, f'certificate-{year}'):06d}"
        conn.execute(
            "INSERT INTO certificates (certificate_no, parcel_id, holder_citizen_id, holder_name, kind, "
            "job_id, issued_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (certificate_no, parcel_id, holder_id, holder_name, kind, job_id, _now()),
        )
        return certificate_no


def create_app(
    db_path: str = ":memory:",
    faults: FaultSettings | None = None,
    settings: LandSandboxSettings | None = None,
    *,
    clock: Callable[[], datetime] = _utc_now,
) -> FastAPI:
    settings = settings or LandSandboxSettings()
    store = Store(db_path, SCHEMA)
    registry = LandRegistry(store, settings, clock)
    if settings.seed_parcels:
        registry.seed()
    idempotency = IdempotencyKeys(store)
    app = FastAPI(title="Land registration office sandbox", version="1")
    install_sandbox_kit(app, name="land", store=store, injector=FaultInjector(faults))
    app.state.registry = registry

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        # 400, not FastAPI's 422: in this API 422 only means "idempotency key reused".
        return JSONResponse(
            {
                "error": "INVALID_REQUEST",
                "message": "request body is invalid",
                "details": jsonable_errors(exc),
            },
            status_code=400,
        )

    @app.post("/api/v1/transfer-checks", status_code=202)
    async def transfer_checks(body: TransferCheckIn, request: Request) -> Response:
        return await idempotency.run(request, lambda: registry.start_job("transfer_check", body))

    @app.post("/api/v1/transfer-registrations", status_code=202)
    async def transfer_registrations(body: TransferRegistrationIn, request: Request) -> Response:
        return await idempotency.run(request, lambda: registry.start_job("transfer_registration", body))

    @app.post("/api/v1/first-certificate-checks", status_code=202)
    async def first_certificate_checks(body: FirstCertificateCheckIn, request: Request) -> Response:
        return await idempotency.run(request, lambda: registry.start_job("first_certificate_check", body))

    @app.post("/api/v1/first-certificates", status_code=202)
    async def first_certificates(body: FirstCertificateIn, request: Request) -> Response:
        return await idempotency.run(request, lambda: registry.start_job("first_certificate", body))

    @app.get("/api/v1/jobs/{job_id}")
    async def get_job(job_id: str) -> dict[str, Any]:
        job = registry.job(job_id)
        if job is None:
            raise HTTPException(404, f"no job {job_id}")
        return job

    @app.get("/api/v1/parcels/{parcel_id}")
    async def get_parcel(parcel_id: str) -> dict[str, Any]:
        parcel = registry.parcel(parcel_id)
        if parcel is None:
            raise HTTPException(404, f"no parcel {parcel_id}")
        return parcel

    @app.post("/_sandbox/parcels", status_code=201, tags=["sandbox"])
    async def add_parcel(body: ParcelIn) -> dict[str, Any]:
        if not registry.add_parcel(body):
            raise HTTPException(409, f"parcel {body.parcel_id} already exists")
        return registry.parcel(body.parcel_id) or {}

    return app


def jsonable_errors(exc: RequestValidationError) -> list[dict[str, Any]]:
    return [
        {"field": ".".join(str(part) for part in error["loc"] if part != "body"), "message": error["msg"]}
        for error in exc.errors()
    ]

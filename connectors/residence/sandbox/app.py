"""Police residence registration sandbox (đăng ký cư trú): REST/JSON, Vietnamese keys, a result envelope.

Every answer is synchronous and wrapped the way many provincial systems answer:
``{"ma_ket_qua": "00", "thong_diep": "Thành công", "du_lieu": {...}}``. A business refusal is still
HTTP 200, with another ``ma_ket_qua`` and the reason in ``thong_diep``. Endpoints (writes honour
``Idempotency-Key``; dates are dd/mm/yyyy):

- ``POST /api/v1/cu-tru/dang-ky-thuong-tru`` ``{so_dinh_danh, ho_ten, ngay_sinh, dia_chi, can_cu:
  {loai, so_giay_to}}`` → ``du_lieu: {so_ho_so, ngay_dang_ky}``; ``CT01`` when the citizen already
  has a permanent residence.
- ``POST /api/v1/cu-tru/xoa-thuong-tru`` ``{so_dinh_danh, ho_ten, dia_chi, ly_do, so_giay_to}`` →
  ``du_lieu: {so_ho_so, ngay_xoa}``; ``CT02`` when the residence was removed already. A citizen the
  sandbox never saw is taken as registered at ``dia_chi`` (it does not hold the whole population).
- ``GET /api/v1/cu-tru/cong-dan/{so_dinh_danh}`` → ``du_lieu``: the citizen's residence; ``CT04`` if none.

A malformed request is HTTP 400 with ``ma_ket_qua`` ``99``.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any, Literal

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from connectors.sandbox_kit.admin import install_sandbox_kit
from connectors.sandbox_kit.faults import FaultInjector, FaultSettings
from connectors.sandbox_kit.idempotency import IdempotencyKeys
from connectors.sandbox_kit.store import Store

VIETNAM_TZ = timezone(timedelta(hours=7))
OK = "00"

SCHEMA = """
CREATE TABLE IF NOT EXISTS thuong_tru (
    so_dinh_danh TEXT PRIMARY KEY,
    ho_ten TEXT NOT NULL,
    ngay_sinh TEXT,
    dia_chi TEXT NOT NULL,
    trang_thai TEXT NOT NULL CHECK (trang_thai IN ('dang_cu_tru', 'da_xoa')),
    cap_nhat TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS ho_so (
    so_ho_so TEXT PRIMARY KEY,
    loai TEXT NOT NULL,
    so_dinh_danh TEXT NOT NULL,
    can_cu TEXT NOT NULL,
    ngay TEXT NOT NULL
);
"""

SoDinhDanh = Field(pattern=r"^\d{12}$")
Ngay = Field(pattern=r"^\d{2}/\d{2}/\d{4}$")


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class CanCu(_In):
    loai: Literal["khai_sinh"]
    so_giay_to: str = Field(min_length=1, max_length=64)


class DangKyIn(_In):
    so_dinh_danh: str = SoDinhDanh
    ho_ten: str = Field(min_length=1, max_length=200)
    ngay_sinh: str = Ngay
    dia_chi: str = Field(min_length=1, max_length=300)
    can_cu: CanCu


class XoaIn(_In):
    so_dinh_danh: str = SoDinhDanh
    ho_ten: str = Field(min_length=1, max_length=200)
    dia_chi: str = Field(default="", max_length=300)
    ly_do: Literal["chet"]
    so_giay_to: str = Field(min_length=1, max_length=64)


def answer(code: str, message: str, data: dict[str, Any] | None = None, status_code: int = 200) -> Response:
    body: dict[str, Any] = {"ma_ket_qua": code, "thong_diep": message}
    if data is not None:
        body["du_lieu"] = data
    return JSONResponse(body, status_code=status_code)


def envelope_error(status_code: int, code: str, message: str) -> Response:
    return answer(code, message, status_code=status_code)


def today() -> str:
    return datetime.now(VIETNAM_TZ).strftime("%d/%m/%Y")


class ResidenceOffice:
    def __init__(self, store: Store) -> None:
        self.store = store

    def _file(self, conn: Any, kind: str, so_dinh_danh: str, can_cu: str) -> str:
        year = datetime.now(VIETNAM_TZ).year
        so_ho_so = f"CT-{year}-{Store.next_sequence(conn, f'ho-so-{year}'):06d}"
        conn.execute(
            "INSERT INTO ho_so VALUES (?, ?, ?, ?, ?)", (so_ho_so, kind, so_dinh_danh, can_cu, today())
        )
        return so_ho_so

    def register(self, body: DangKyIn) -> Response:
        with self.store.transaction() as conn:
            row = conn.execute(
                "SELECT trang_thai FROM thuong_tru WHERE so_dinh_danh = ?", (body.so_dinh_danh,)
            ).fetchone()
            if row is not None and row["trang_thai"] == "dang_cu_tru":
                return answer("CT01", f"Công dân {body.so_dinh_danh} đã có nơi thường trú")
            conn.execute(
                "INSERT INTO thuong_tru VALUES (?, ?, ?, ?, 'dang_cu_tru', ?) ON CONFLICT (so_dinh_danh) "
                "DO UPDATE SET trang_thai = 'dang_cu_tru', dia_chi = excluded.dia_chi, "
                "cap_nhat = excluded.cap_nhat",
                (body.so_dinh_danh, body.ho_ten, body.ngay_sinh, body.dia_chi, today()),
            )
            so_ho_so = self._file(conn, "dang_ky", body.so_dinh_danh, body.can_cu.so_giay_to)
        return answer(OK, "Thành công", {"so_ho_so": so_ho_so, "ngay_dang_ky": today()})

    def remove(self, body: XoaIn) -> Response:
        with self.store.transaction() as conn:
            row = conn.execute(
                "SELECT trang_thai FROM thuong_tru WHERE so_dinh_danh = ?", (body.so_dinh_danh,)
            ).fetchone()
            if row is not None and row["trang_thai"] == "da_xoa":
                return answer("CT02", f"Công dân {body.so_dinh_danh} đã được xóa đăng ký thường trú")
            conn.execute(
                "INSERT INTO thuong_tru VALUES (?, ?, NULL, ?, 'da_xoa', ?) ON CONFLICT (so_dinh_danh) "
                "DO UPDATE SET trang_thai = 'da_xoa', cap_nhat = excluded.cap_nhat",
                (body.so_dinh_danh, body.ho_ten, body.dia_chi or "không rõ", today()),
            )
            so_ho_so = self._file(conn, "xoa", body.so_dinh_danh, body.so_giay_to)
        return answer(OK, "Thành công", {"so_ho_so": so_ho_so, "ngay_xoa": today()})

    def resident(self, so_dinh_danh: str) -> Response:
        row = self.store.fetch_one("SELECT * FROM thuong_tru WHERE so_dinh_danh = ?", (so_dinh_danh,))
        if row is None:
            return answer("CT04", f"Không có thông tin cư trú của {so_dinh_danh}")
        return answer(OK, "Thành công", row)


def create_app(db_path: str = ":memory:", faults: FaultSettings | None = None) -> FastAPI:
    store = Store(db_path, SCHEMA)
    office = ResidenceOffice(store)
    idempotency = IdempotencyKeys(store, error_response=envelope_error)
    app = FastAPI(title="Residence registration sandbox", version="1")
    install_sandbox_kit(app, name="residence", store=store, injector=FaultInjector(faults))

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> Response:
        first = exc.errors()[0]
        field = ".".join(str(part) for part in first["loc"] if part != "body")
        return answer("99", f"Dữ liệu không hợp lệ: '{field}' {first['msg']}", status_code=400)

    @app.post("/api/v1/cu-tru/dang-ky-thuong-tru")
    async def dang_ky(body: DangKyIn, request: Request) -> Response:
        return await idempotency.run(request, lambda: office.register(body))

    @app.post("/api/v1/cu-tru/xoa-thuong-tru")
    async def xoa(body: XoaIn, request: Request) -> Response:
        return await idempotency.run(request, lambda: office.remove(body))

    @app.get("/api/v1/cu-tru/cong-dan/{so_dinh_danh}")
    async def cong_dan(so_dinh_danh: str) -> Response:
        return office.resident(so_dinh_danh)

    return app

"""Commune/ward civil-status registry sandbox (hộ tịch): REST/JSON, Vietnamese keys, dd/mm/yyyy dates.

Every answer is synchronous. Endpoints (writes honour ``Idempotency-Key``):

- ``POST /api/ho-tich/ket-hon``  marriage → 201 ``{so_dang_ky, ngay_dang_ky, quyen_so}``
- ``POST /api/ho-tich/khai-sinh`` birth → 201 ``{so_dang_ky, ngay_dang_ky, quyen_so, so_dinh_danh_ca_nhan}``
- ``POST /api/ho-tich/khai-tu``  death → 201 ``{so_dang_ky, ngay_dang_ky, quyen_so}``
- ``GET  /api/ho-tich/ket-hon/{so_dinh_danh}`` the marriage registered for a person (404 if none)

Answers: 400 ``{ma_loi, mo_ta, truong}`` for a malformed request (a date that is not dd/mm/yyyy
names its field); 422 ``{ma_loi, mo_ta}`` for a business rejection: under marriageable age
(man under 20, woman under 18 — Law on Marriage and Family 2014, art. 8), already married or
deceased in this registry, death registered twice, a birth registered twice.
"""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta, timezone
from typing import Annotated, Any, Literal

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, PlainSerializer
from pydantic_core import PydanticCustomError
from pydantic_settings import BaseSettings, SettingsConfigDict

from connectors.sandbox_kit.admin import install_sandbox_kit
from connectors.sandbox_kit.faults import FaultInjector, FaultSettings
from connectors.sandbox_kit.idempotency import IdempotencyKeys
from connectors.sandbox_kit.store import Store

VIETNAM_TZ = timezone(timedelta(hours=7))
DATE_FORMAT = "%d/%m/%Y"
_DMY = re.compile(r"^\d{2}/\d{2}/\d{4}$")

SCHEMA = """
CREATE TABLE IF NOT EXISTS marriages (
    so_dang_ky TEXT PRIMARY KEY,
    quyen_so TEXT NOT NULL,
    ngay_dang_ky TEXT NOT NULL,
    chong_so_dinh_danh TEXT NOT NULL,
    chong_ho_ten TEXT NOT NULL,
    chong_ngay_sinh TEXT NOT NULL,
    vo_so_dinh_danh TEXT NOT NULL,
    vo_ho_ten TEXT NOT NULL,
    vo_ngay_sinh TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS births (
    so_dang_ky TEXT PRIMARY KEY,
    quyen_so TEXT NOT NULL,
    ngay_dang_ky TEXT NOT NULL,
    so_dinh_danh_ca_nhan TEXT NOT NULL UNIQUE,
    ho_ten TEXT NOT NULL,
    ngay_sinh TEXT NOT NULL,
    gioi_tinh TEXT NOT NULL,
    noi_sinh TEXT NOT NULL,
    me_so_dinh_danh TEXT,
    me_ho_ten TEXT NOT NULL,
    cha_so_dinh_danh TEXT,
    cha_ho_ten TEXT
);
CREATE TABLE IF NOT EXISTS deaths (
    so_dang_ky TEXT PRIMARY KEY,
    quyen_so TEXT NOT NULL,
    ngay_dang_ky TEXT NOT NULL,
    so_dinh_danh TEXT NOT NULL UNIQUE,
    ho_ten TEXT NOT NULL,
    ngay_mat TEXT NOT NULL,
    noi_mat TEXT NOT NULL,
    nguoi_khai_so_dinh_danh TEXT NOT NULL,
    nguoi_khai_ho_ten TEXT NOT NULL,
    quan_he TEXT NOT NULL
);
"""


class CivilStatusSandboxSettings(BaseSettings):
    """From ``CIVIL_STATUS_SANDBOX_*`` environment variables or constructor args."""

    model_config = SettingsConfigDict(env_prefix="CIVIL_STATUS_SANDBOX_", extra="ignore")

    province_code: str = Field(default="079", pattern=r"^\d{3}$", description="first 3 digits of issued ids")
    min_age_man: int = 20
    min_age_woman: int = 18


def parse_dmy(value: Any) -> date:
    if isinstance(value, date):
        return value
    if not isinstance(value, str) or not _DMY.match(value):
        raise PydanticCustomError("date_format", "phải có dạng dd/mm/yyyy / must be dd/mm/yyyy")
    try:
        return datetime.strptime(value, DATE_FORMAT).date()
    except ValueError:
        raise PydanticCustomError("date_format", "không phải ngày hợp lệ / not a valid date") from None


def format_dmy(value: date) -> str:
    return value.strftime(DATE_FORMAT)


VnDate = Annotated[date, BeforeValidator(parse_dmy), PlainSerializer(format_dmy, return_type=str)]
SoDinhDanh = Annotated[str, Field(pattern=r"^\d{12}$")]
HoTen = Annotated[str, Field(min_length=1, max_length=200)]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class NguoiIn(_In):
    ho_ten: HoTen
    ngay_sinh: VnDate
    so_dinh_danh: SoDinhDanh


class KetHonIn(_In):
    chong: NguoiIn
    vo: NguoiIn


class ChaMeIn(_In):
    ho_ten: HoTen
    so_dinh_danh: SoDinhDanh | None = None


class KhaiSinhIn(_In):
    ho_ten: HoTen
    ngay_sinh: VnDate
    gioi_tinh: Literal["Nam", "Nu"]
    noi_sinh: str = Field(min_length=1, max_length=300)
    me: ChaMeIn
    cha: ChaMeIn | None = None


class NguoiKhaiIn(_In):
    ho_ten: HoTen
    so_dinh_danh: SoDinhDanh
    quan_he: str = Field(min_length=1, max_length=100)


class KhaiTuIn(_In):
    nguoi_mat: NguoiIn
    ngay_mat: VnDate
    noi_mat: str = Field(min_length=1, max_length=300)
    nguoi_khai: NguoiKhaiIn


class Rejection(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def error_json(status_code: int, code: str, message: str) -> Response:
    return JSONResponse({"ma_loi": code, "mo_ta": message}, status_code=status_code)


def age_on(born: date, on: date) -> int:
    return on.year - born.year - ((on.month, on.day) < (born.month, born.day))


def today() -> date:
    return datetime.now(VIETNAM_TZ).date()


class Registry:
    def __init__(self, store: Store, settings: CivilStatusSandboxSettings) -> None:
        self.store = store
        self.settings = settings

    def _number(self, conn: Any, book: str) -> tuple[str, str, str]:
        """(so_dang_ky, quyen_so, ngay_dang_ky) — one register book per kind and year."""
        now = today()
        seq = Store.next_sequence(conn, f"{book}-{now.year}")
        return f"{book}-{now.year}-{seq:06d}", f"01/{now.year}", format_dmy(now)

    def _deceased(self, conn: Any, so_dinh_danh: str) -> bool:
        return (
            conn.execute("SELECT 1 FROM deaths WHERE so_dinh_danh = ?", (so_dinh_danh,)).fetchone()
            is not None
        )

    def register_marriage(self, body: KetHonIn) -> Response:
        now = today()
        if body.chong.so_dinh_danh == body.vo.so_dinh_danh:
            raise Rejection("TRUNG_NGUOI", "Chồng và vợ không thể là cùng một người")
        if age_on(body.chong.ngay_sinh, now) < self.settings.min_age_man:
            raise Rejection(
                "CHUA_DU_TUOI",
                f"Bên nam chưa đủ {self.settings.min_age_man} tuổi (Luật Hôn nhân và gia đình 2014, Điều 8)",
            )
        if age_on(body.vo.ngay_sinh, now) < self.settings.min_age_woman:
            raise Rejection(
                "CHUA_DU_TUOI",
                f"Bên nữ chưa đủ {self.settings.min_age_woman} tuổi (Luật Hôn nhân và gia đình 2014, Điều 8)",
            )
        with self.store.transaction() as conn:
            for role, person in (("Bên nam", body.chong), ("Bên nữ", body.vo)):
                if self._deceased(conn, person.so_dinh_danh):
                    raise Rejection("DA_CHET", f"{role} ({person.so_dinh_danh}) đã được đăng ký khai tử")
                married = conn.execute(
                    "SELECT so_dang_ky FROM marriages WHERE chong_so_dinh_danh = ? OR vo_so_dinh_danh = ?",
                    (person.so_dinh_danh, person.so_dinh_danh),
                ).fetchone()
                if married is not None:
                    raise Rejection(
                        "DA_KET_HON",
                        f"{role} ({person.so_dinh_danh}) đang có đăng ký kết hôn số {married['so_dang_ky']}",
                    )
            so_dang_ky, quyen_so, ngay = self._number(conn, "KH")
            conn.execute(
                "INSERT INTO marriages VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    so_dang_ky,
                    quyen_so,
                    ngay,
                    body.chong.so_dinh_danh,
                    body.chong.ho_ten,
                    format_dmy(body.chong.ngay_sinh),
                    body.vo.so_dinh_danh,
                    body.vo.ho_ten,
                    format_dmy(body.vo.ngay_sinh),
                ),
            )
        return JSONResponse(
            {"so_dang_ky": so_dang_ky, "ngay_dang_ky": ngay, "quyen_so": quyen_so}, status_code=201
        )

    def marriage(self, so_dinh_danh: str) -> dict[str, Any] | None:
        row = self.store.fetch_one(
            "SELECT * FROM marriages WHERE chong_so_dinh_danh = ? OR vo_so_dinh_danh = ?",
            (so_dinh_danh, so_dinh_danh),
        )
        if row is None:
            return None
        return {
            "so_dang_ky": row["so_dang_ky"],
            "quyen_so": row["quyen_so"],
            "ngay_dang_ky": row["ngay_dang_ky"],
            "chong": {
                "ho_ten": row["chong_ho_ten"],
                "ngay_sinh": row["chong_ngay_sinh"],
                "so_dinh_danh": row["chong_so_dinh_danh"],
            },
            "vo": {
                "ho_ten": row["vo_ho_ten"],
                "ngay_sinh": row["vo_ngay_sinh"],
                "so_dinh_danh": row["vo_so_dinh_danh"],
            },
        }

    def register_birth(self, body: KhaiSinhIn) -> Response:
        if body.ngay_sinh > today():
            raise Rejection("NGAY_SINH_TUONG_LAI", "Ngày sinh không thể sau ngày đăng ký")
        with self.store.transaction() as conn:
            duplicate = conn.execute(
                "SELECT so_dang_ky FROM births WHERE ho_ten = ? AND ngay_sinh = ? AND me_ho_ten = ? "
                "AND COALESCE(me_so_dinh_danh, '') = ?",
                (body.ho_ten, format_dmy(body.ngay_sinh), body.me.ho_ten, body.me.so_dinh_danh or ""),
            ).fetchone()
            if duplicate is not None:
                raise Rejection(
                    "DA_DANG_KY_KHAI_SINH", f"Trẻ đã được đăng ký khai sinh, số {duplicate['so_dang_ky']}"
                )
            so_dang_ky, quyen_so, ngay = self._number(conn, "KS")
            personal_id = self._personal_id(conn, body.ngay_sinh, body.gioi_tinh)
            conn.execute(
                "INSERT INTO births VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    so_dang_ky,
                    quyen_so,
                    ngay,
                    personal_id,
                    body.ho_ten,
                    format_dmy(body.ngay_sinh),
                    body.gioi_tinh,
                    body.noi_sinh,
                    body.me.so_dinh_danh,
                    body.me.ho_ten,
                    body.cha.so_dinh_danh if body.cha else None,
                    body.cha.ho_ten if body.cha else None,
                ),
            )
        return JSONResponse(
            {
                "so_dang_ky": so_dang_ky,
                "ngay_dang_ky": ngay,
                "quyen_so": quyen_so,
                "so_dinh_danh_ca_nhan": personal_id,
            },
            status_code=201,
        )

    def _personal_id(self, conn: Any, born: date, sex: str) -> str:
        """Province (3) + century-and-sex (1) + year of birth (2) + serial (6): the CCCD layout."""
        century = (born.year // 100) - 19  # 1900s → 0, 2000s → 1, …
        sex_digit = 2 * century + (0 if sex == "Nam" else 1)
        serial = Store.next_sequence(conn, "personal-id")
        return f"{self.settings.province_code}{sex_digit % 10}{born.year % 100:02d}{serial:06d}"

    def register_death(self, body: KhaiTuIn) -> Response:
        if body.ngay_mat > today():
            raise Rejection("NGAY_MAT_TUONG_LAI", "Ngày chết không thể sau ngày đăng ký")
        if body.ngay_mat < body.nguoi_mat.ngay_sinh:
            raise Rejection("NGAY_MAT_TRUOC_NGAY_SINH", "Ngày chết không thể trước ngày sinh")
        with self.store.transaction() as conn:
            existing = conn.execute(
                "SELECT so_dang_ky FROM deaths WHERE so_dinh_danh = ?", (body.nguoi_mat.so_dinh_danh,)
            ).fetchone()
            if existing is not None:
                raise Rejection(
                    "DA_DANG_KY_KHAI_TU",
                    f"Người có số định danh {body.nguoi_mat.so_dinh_danh} đã được đăng ký khai tử, "
                    f"số {existing['so_dang_ky']}",
                )
            so_dang_ky, quyen_so, ngay = self._number(conn, "KT")
            conn.execute(
                "INSERT INTO deaths VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    so_dang_ky,
                    quyen_so,
                    ngay,
                    body.nguoi_mat.so_dinh_danh,
                    body.nguoi_mat.ho_ten,
                    format_dmy(body.ngay_mat),
                    body.noi_mat,
                    body.nguoi_khai.so_dinh_danh,
                    body.nguoi_khai.ho_ten,
                    body.nguoi_khai.quan_he,
                ),
            )
        return JSONResponse(
            {"so_dang_ky": so_dang_ky, "ngay_dang_ky": ngay, "quyen_so": quyen_so}, status_code=201
        )


def _field(loc: tuple[Any, ...]) -> str:
    return ".".join(str(part) for part in loc if part != "body")


def create_app(
    db_path: str = ":memory:",
    faults: FaultSettings | None = None,
    settings: CivilStatusSandboxSettings | None = None,
) -> FastAPI:
    settings = settings or CivilStatusSandboxSettings()
    store = Store(db_path, SCHEMA)
    registry = Registry(store, settings)
    idempotency = IdempotencyKeys(store, error_response=error_json)
    app = FastAPI(title="Civil-status registry sandbox", version="1")
    install_sandbox_kit(app, name="civil_status", store=store, injector=FaultInjector(faults))
    app.state.registry = registry

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        dates = [e for e in errors if e["type"] == "date_format"]
        first = (dates or errors)[0]
        field = _field(tuple(first["loc"]))
        if dates:
            body = {
                "ma_loi": "NGAY_KHONG_HOP_LE",
                "mo_ta": f"Trường '{field}' {first['msg']}",
                "truong": field,
            }
        else:
            body = {
                "ma_loi": "DU_LIEU_KHONG_HOP_LE",
                "mo_ta": f"Trường '{field}': {first['msg']}",
                "truong": field,
            }
        return JSONResponse(body, status_code=400)

    def guarded(action: Any) -> Response:
        try:
            response: Response = action()
        except Rejection as exc:
            return error_json(422, exc.code, exc.message)
        return response

    @app.post("/api/ho-tich/ket-hon", status_code=201)
    async def ket_hon(body: KetHonIn, request: Request) -> Response:
        return await idempotency.run(request, lambda: guarded(lambda: registry.register_marriage(body)))

    @app.get("/api/ho-tich/ket-hon/{so_dinh_danh}")
    async def tra_cuu_ket_hon(so_dinh_danh: str) -> Response:
        marriage = registry.marriage(so_dinh_danh)
        if marriage is None:
            return error_json(404, "KHONG_TIM_THAY", f"Không có đăng ký kết hôn cho {so_dinh_danh}")
        return JSONResponse(marriage)

    @app.post("/api/ho-tich/khai-sinh", status_code=201)
    async def khai_sinh(body: KhaiSinhIn, request: Request) -> Response:
        return await idempotency.run(request, lambda: guarded(lambda: registry.register_birth(body)))

    @app.post("/api/ho-tich/khai-tu", status_code=201)
    async def khai_tu(body: KhaiTuIn, request: Request) -> Response:
        return await idempotency.run(request, lambda: guarded(lambda: registry.register_death(body)))

    return app

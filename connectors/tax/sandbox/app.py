"""Tax authority sandbox (cơ quan thuế): XML documents in and out.

Endpoints (write endpoints honour ``Idempotency-Key``):

- ``POST /tax/cadastral-slips``          ``<PhieuChuyenThongTinDiaChinh>`` → 201 ``<ThongBaoNopTien>``
- ``GET  /tax/notices/{so_thong_bao}``   → ``<ThongBaoNopTien>`` with ``<TrangThai>`` CHUA_NOP | DA_NOP
- ``POST /tax/bank/payments``            the citizen paying at the bank: XML ``<NopTien>`` or JSON
  ``{"so_thong_bao", "amount"}`` → 200 receipt (same format as the request); then, when the slip
  carried a ``<CallbackUrl>``, an XML ``<XacNhanNopTien>`` is POSTed there in the background
  (retried with backoff; every attempt is recorded in ``callback_deliveries``).
- ``POST /tax/household-registrations``  ``<DangKyThueHoKinhDoanh>`` → 201 ``<ThongBaoMaSoThue>``
  with a 10-digit tax code.

Amounts are whole đồng: each obligation is ``value × rate`` rounded half up to the nearest đồng
(``Decimal`` arithmetic, ``ROUND_HALF_UP``), and the total is the sum of the rounded parts.
``chuyen_nhuong`` (transfer): personal income tax (``pit_rate``, 2 %) + registration fee
(``registration_fee_rate``, 0.5 %). ``cap_lan_dau`` (first certificate): registration fee +
land-use levy (``land_use_levy_rate``, 0 by default), no income tax.

Errors are XML ``<Loi><Ma/><MoTa/></Loi>``: 400 malformed or forbidden XML (DTDs and entities are
refused, so entity-expansion and external-entity payloads never expand), 404 unknown notice,
409 duplicate slip / already paid, 422 a business rejection or an idempotency key reused.
"""

from __future__ import annotations

import asyncio
import json
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta, timezone
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, Literal

import defusedxml.ElementTree as SafeET
import httpx
from defusedxml import DefusedXmlException
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from connectors.sandbox_kit.admin import install_sandbox_kit
from connectors.sandbox_kit.faults import FaultInjector, FaultSettings
from connectors.sandbox_kit.idempotency import IdempotencyKeys
from connectors.sandbox_kit.store import Store

XML = "application/xml"
VIETNAM_TZ = timezone(timedelta(hours=7))
TAX_CODE_WEIGHTS = (31, 29, 23, 19, 17, 13, 7, 5, 3)

SCHEMA = """
CREATE TABLE IF NOT EXISTS slips (
    so_phieu TEXT PRIMARY KEY,
    ma_ho_so TEXT NOT NULL,
    loai_nghia_vu TEXT NOT NULL,
    thua_dat TEXT NOT NULL,
    dien_tich TEXT NOT NULL,
    gia_tri INTEGER NOT NULL,
    nguoi_nop_id TEXT NOT NULL,
    nguoi_nop_ten TEXT NOT NULL,
    callback_url TEXT,
    so_thong_bao TEXT NOT NULL,
    received_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS notices (
    so_thong_bao TEXT PRIMARY KEY,
    so_phieu TEXT NOT NULL,
    ma_ho_so TEXT NOT NULL,
    loai_nghia_vu TEXT NOT NULL,
    thua_dat TEXT NOT NULL,
    nguoi_nop_id TEXT NOT NULL,
    nguoi_nop_ten TEXT NOT NULL,
    gia_tri INTEGER NOT NULL,
    thue_tncn INTEGER NOT NULL,
    le_phi_truoc_ba INTEGER NOT NULL,
    tien_su_dung_dat INTEGER NOT NULL,
    tong_tien INTEGER NOT NULL,
    trang_thai TEXT NOT NULL,
    han_nop TEXT NOT NULL,
    ma_thanh_toan TEXT,
    ngay_nop TEXT,
    callback_url TEXT,
    created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS payments (
    ma_thanh_toan TEXT PRIMARY KEY,
    so_thong_bao TEXT NOT NULL,
    so_tien INTEGER NOT NULL,
    paid_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS callback_deliveries (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    so_thong_bao TEXT NOT NULL,
    url TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    status_code INTEGER,
    error TEXT,
    delivered INTEGER NOT NULL,
    attempted_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS households (
    ma_so_thue TEXT PRIMARY KEY,
    ma_ho_so TEXT NOT NULL,
    ten_ho_kinh_doanh TEXT NOT NULL,
    chu_ho_id TEXT NOT NULL UNIQUE,
    chu_ho_ten TEXT NOT NULL,
    dia_chi TEXT NOT NULL,
    nganh_nghe TEXT NOT NULL,
    ngay_cap TEXT NOT NULL
);
"""

LoaiNghiaVu = Literal["chuyen_nhuong", "cap_lan_dau"]


class TaxSandboxSettings(BaseSettings):
    """Rates and delivery settings, from ``TAX_SANDBOX_*`` environment variables or constructor args."""

    model_config = SettingsConfigDict(env_prefix="TAX_SANDBOX_", extra="ignore")

    pit_rate: Decimal = Field(
        default=Decimal("0.02"), ge=0, le=1, description="personal income tax on transfers"
    )
    registration_fee_rate: Decimal = Field(
        default=Decimal("0.005"), ge=0, le=1, description="lệ phí trước bạ"
    )
    land_use_levy_rate: Decimal = Field(
        default=Decimal("0"), ge=0, le=1, description="tiền sử dụng đất (first cert)"
    )
    due_days: int = Field(default=30, ge=1, description="days from the notice to its due date")
    callback_attempts: int = Field(default=5, ge=1)
    callback_backoff_s: float = Field(
        default=0.2, ge=0.0, description="first retry delay; doubles each retry"
    )
    callback_timeout_s: float = Field(default=5.0, gt=0.0)


class TaxError(Exception):
    """Answered as ``<Loi><Ma/><MoTa/></Loi>`` with ``status``."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def round_vnd(amount: Decimal) -> int:
    """Round to a whole đồng, half up (0.5 đồng → 1 đồng)."""
    return int(amount.quantize(Decimal(1), rounding=ROUND_HALF_UP))


def tax_code_check_digit(first_nine: str) -> int | None:
    """Mod-11 check digit in the style of the Vietnamese tax code; None when the base is unusable."""
    remainder = sum(int(d) * w for d, w in zip(first_nine, TAX_CODE_WEIGHTS, strict=True)) % 11
    check = 10 - remainder
    return check if 0 <= check <= 9 else None


def xml_bytes(root: ET.Element) -> bytes:
    data: bytes = ET.tostring(root, encoding="utf-8", xml_declaration=True)
    return data


def add(parent: ET.Element, tag: str, text: object | None) -> ET.Element:
    child = ET.SubElement(parent, tag)
    if text is not None:
        child.text = str(text)
    return child


def error_xml(status: int, code: str, message: str) -> Response:
    root = ET.Element("Loi")
    add(root, "Ma", code)
    add(root, "MoTa", message)
    return Response(xml_bytes(root), status_code=status, media_type=XML)


def parse_xml(body: bytes, root_tag: str) -> ET.Element:
    if not body.strip():
        raise TaxError(400, "XML_RONG", "Nội dung XML rỗng / empty XML body")
    try:
        root: ET.Element = SafeET.fromstring(body, forbid_dtd=True)
    except DefusedXmlException as exc:
        raise TaxError(400, "XML_BI_CAM", f"XML bị từ chối vì chứa DTD hoặc thực thể: {exc!r}") from exc
    except ET.ParseError as exc:
        raise TaxError(400, "XML_KHONG_HOP_LE", f"XML không hợp lệ: {exc}") from exc
    if root.tag != root_tag:
        raise TaxError(400, "SAI_LOAI_TAI_LIEU", f"Phần tử gốc phải là <{root_tag}>, nhận được <{root.tag}>")
    return root


def text(root: ET.Element, path: str, *, required: bool = True) -> str:
    element = root.find(path)
    value = (element.text or "").strip() if element is not None else ""
    if required and not value:
        raise TaxError(400, "THIEU_TRUONG", f"Thiếu trường bắt buộc <{path}>")
    return value


def integer(root: ET.Element, path: str) -> int:
    value = text(root, path)
    if not value.isdigit():
        raise TaxError(
            400, "SAI_DINH_DANG", f"<{path}> phải là số nguyên không âm (đồng), nhận được {value!r}"
        )
    return int(value)


def vn_today() -> datetime:
    return datetime.now(VIETNAM_TZ)


class TaxOffice:
    def __init__(
        self, store: Store, settings: TaxSandboxSettings, callback_transport: httpx.AsyncBaseTransport | None
    ) -> None:
        self.store = store
        self.settings = settings
        self.callback_transport = callback_transport
        self._tasks: set[asyncio.Task[None]] = set()

    # --- cadastral slip → payment notice -------------------------------------------------

    def submit_slip(self, body: bytes) -> Response:
        root = parse_xml(body, "PhieuChuyenThongTinDiaChinh")
        so_phieu = text(root, "SoPhieu")
        ma_ho_so = text(root, "MaHoSo")
        loai = text(root, "LoaiNghiaVu")
        if loai not in ("chuyen_nhuong", "cap_lan_dau"):
            raise TaxError(
                400, "SAI_LOAI_NGHIA_VU", f"<LoaiNghiaVu> phải là chuyen_nhuong hoặc cap_lan_dau: {loai!r}"
            )
        thua_dat = text(root, "ThuaDat")
        dien_tich = text(root, "DienTich")
        try:
            if Decimal(dien_tich) <= 0:
                raise ValueError(dien_tich)
        except (ArithmeticError, ValueError) as exc:
            raise TaxError(
                400, "SAI_DINH_DANG", f"<DienTich> phải là số dương, nhận được {dien_tich!r}"
            ) from exc
        gia_tri = integer(root, "GiaTriChuyenNhuong" if loai == "chuyen_nhuong" else "GiaTriDat")
        payer_id = text(root, "NguoiNop/MaSoDinhDanh")
        payer_name = text(root, "NguoiNop/HoTen")
        callback_url = text(root, "CallbackUrl", required=False) or None
        if callback_url and not callback_url.startswith(("http://", "https://")):
            raise TaxError(400, "SAI_DINH_DANG", "<CallbackUrl> phải là địa chỉ http(s)")

        value = Decimal(gia_tri)
        s = self.settings
        pit = round_vnd(value * s.pit_rate) if loai == "chuyen_nhuong" else 0
        fee = round_vnd(value * s.registration_fee_rate)
        levy = round_vnd(value * s.land_use_levy_rate) if loai == "cap_lan_dau" else 0
        now = vn_today()
        with self.store.transaction() as conn:
            existing = conn.execute(
                "SELECT so_thong_bao FROM slips WHERE so_phieu = ?", (so_phieu,)
            ).fetchone()
            if existing is not None:
                raise TaxError(
                    409,
                    "PHIEU_DA_TON_TAI",
                    f"Phiếu {so_phieu} đã được tiếp nhận, thông báo số {existing['so_thong_bao']}",
                )
            so_thong_bao = f"TB-{now.year}-{Store.next_sequence(conn, f'notice-{now.year}'):06d}"
            conn.execute(
                "INSERT INTO slips VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    so_phieu,
                    ma_ho_so,
                    loai,
                    thua_dat,
                    dien_tich,
                    gia_tri,
                    payer_id,
                    payer_name,
                    callback_url,
                    so_thong_bao,
                    now.isoformat(),
                ),
            )
            conn.execute(
                "INSERT INTO notices (so_thong_bao, so_phieu, ma_ho_so, loai_nghia_vu, thua_dat, "
                "nguoi_nop_id, nguoi_nop_ten, gia_tri, thue_tncn, le_phi_truoc_ba, tien_su_dung_dat, "
                "tong_tien, trang_thai, han_nop, callback_url, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'CHUA_NOP', ?, ?, ?)",
                (
                    so_thong_bao,
                    so_phieu,
                    ma_ho_so,
                    loai,
                    thua_dat,
                    payer_id,
                    payer_name,
                    gia_tri,
                    pit,
                    fee,
                    levy,
                    pit + fee + levy,
                    (now.date() + timedelta(days=s.due_days)).isoformat(),
                    callback_url,
                    now.isoformat(),
                ),
            )
        return Response(self.notice_xml(so_thong_bao), status_code=201, media_type=XML)

    def notice(self, so_thong_bao: str) -> dict[str, Any]:
        row = self.store.fetch_one("SELECT * FROM notices WHERE so_thong_bao = ?", (so_thong_bao,))
        if row is None:
            raise TaxError(404, "KHONG_TIM_THAY", f"Không tìm thấy thông báo {so_thong_bao}")
        return row

    def notice_xml(self, so_thong_bao: str) -> bytes:
        n = self.notice(so_thong_bao)
        root = ET.Element("ThongBaoNopTien")
        for tag, key in (
            ("SoThongBao", "so_thong_bao"),
            ("SoPhieu", "so_phieu"),
            ("MaHoSo", "ma_ho_so"),
            ("LoaiNghiaVu", "loai_nghia_vu"),
            ("ThuaDat", "thua_dat"),
        ):
            add(root, tag, n[key])
        payer = add(root, "NguoiNop", None)
        add(payer, "MaSoDinhDanh", n["nguoi_nop_id"])
        add(payer, "HoTen", n["nguoi_nop_ten"])
        for tag, key in (
            ("GiaTriTinhThue", "gia_tri"),
            ("ThueThuNhapCaNhan", "thue_tncn"),
            ("LePhiTruocBa", "le_phi_truoc_ba"),
            ("TienSuDungDat", "tien_su_dung_dat"),
            ("TongTien", "tong_tien"),
            ("TrangThai", "trang_thai"),
            ("HanNop", "han_nop"),
        ):
            add(root, tag, n[key])
        if n["ma_thanh_toan"]:
            add(root, "MaThanhToan", n["ma_thanh_toan"])
            add(root, "NgayNop", n["ngay_nop"])
        return xml_bytes(root)

    # --- the bank -------------------------------------------------------------------------

    def pay(self, body: bytes, content_type: str) -> Response:
        as_json = "json" in content_type
        if as_json:
            try:
                data = json.loads(body)
                so_thong_bao, amount = str(data["so_thong_bao"]), data["amount"]
                if not isinstance(amount, int) or isinstance(amount, bool):
                    raise TypeError("amount must be an integer")
            except (ValueError, KeyError, TypeError) as exc:
                raise TaxError(400, "SAI_DINH_DANG", f"JSON thanh toán không hợp lệ: {exc!r}") from exc
        else:
            root = parse_xml(body, "NopTien")
            so_thong_bao, amount = text(root, "SoThongBao"), integer(root, "SoTien")
        now = vn_today()
        with self.store.transaction() as conn:
            n = conn.execute("SELECT * FROM notices WHERE so_thong_bao = ?", (so_thong_bao,)).fetchone()
            if n is None:
                raise TaxError(404, "KHONG_TIM_THAY", f"Không tìm thấy thông báo {so_thong_bao}")
            if n["trang_thai"] == "DA_NOP":
                raise TaxError(409, "DA_NOP", f"Thông báo {so_thong_bao} đã được nộp ({n['ma_thanh_toan']})")
            if amount != n["tong_tien"]:
                raise TaxError(
                    422,
                    "SAI_SO_TIEN",
                    f"Số tiền {amount} không khớp tổng số phải nộp {n['tong_tien']} "
                    "/ amount does not match the total",
                )
            reference = f"CTNT-{now.year}-{Store.next_sequence(conn, f'payment-{now.year}'):06d}"
            conn.execute(
                "INSERT INTO payments VALUES (?, ?, ?, ?)", (reference, so_thong_bao, amount, now.isoformat())
            )
            conn.execute(
                "UPDATE notices SET trang_thai = 'DA_NOP', ma_thanh_toan = ?, ngay_nop = ? "
                "WHERE so_thong_bao = ?",
                (reference, now.isoformat(), so_thong_bao),
            )
            callback_url = n["callback_url"]
        if callback_url:
            self._schedule_callback(so_thong_bao, callback_url)
        receipt = {
            "so_thong_bao": so_thong_bao,
            "amount": amount,
            "payment_reference": reference,
            "status": "DA_NOP",
        }
        if as_json:
            return JSONResponse(receipt)
        root = ET.Element("BienLaiNopTien")
        add(root, "SoThongBao", so_thong_bao)
        add(root, "SoTien", amount)
        add(root, "MaThanhToan", reference)
        add(root, "TrangThai", "DA_NOP")
        return Response(xml_bytes(root), media_type=XML)

    def confirmation_xml(self, so_thong_bao: str) -> bytes:
        n = self.notice(so_thong_bao)
        root = ET.Element("XacNhanNopTien")
        add(root, "SoThongBao", n["so_thong_bao"])
        add(root, "SoPhieu", n["so_phieu"])
        add(root, "MaHoSo", n["ma_ho_so"])
        add(root, "SoTien", n["tong_tien"])
        add(root, "MaThanhToan", n["ma_thanh_toan"])
        add(root, "NgayNop", n["ngay_nop"])
        add(root, "TrangThai", n["trang_thai"])
        return xml_bytes(root)

    def _schedule_callback(self, so_thong_bao: str, url: str) -> None:
        task = asyncio.get_running_loop().create_task(self._deliver(so_thong_bao, url))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _deliver(self, so_thong_bao: str, url: str) -> None:
        """Best effort: retry with doubling backoff; every attempt is recorded."""
        s = self.settings
        body = self.confirmation_xml(so_thong_bao)
        headers = {"Content-Type": XML, "Idempotency-Key": f"payment-{so_thong_bao}"}
        delay = s.callback_backoff_s
        async with httpx.AsyncClient(
            timeout=s.callback_timeout_s, transport=self.callback_transport
        ) as client:
            for attempt in range(1, s.callback_attempts + 1):
                status_code: int | None = None
                error: str | None = None
                try:
                    response = await client.post(url, content=body, headers=headers)
                    status_code = response.status_code
                except httpx.HTTPError as exc:
                    error = repr(exc)
                delivered = status_code is not None and 200 <= status_code < 300
                self.store.execute(
                    "INSERT INTO callback_deliveries (so_thong_bao, url, attempt, status_code, error, "
                    "delivered, attempted_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (
                        so_thong_bao,
                        url,
                        attempt,
                        status_code,
                        error,
                        int(delivered),
                        datetime.now(UTC).isoformat(),
                    ),
                )
                if delivered or attempt == s.callback_attempts:
                    return
                await asyncio.sleep(delay)
                delay *= 2

    # --- household business tax code ------------------------------------------------------

    def register_household(self, body: bytes) -> Response:
        root = parse_xml(body, "DangKyThueHoKinhDoanh")
        ma_ho_so = text(root, "MaHoSo")
        ten = text(root, "TenHoKinhDoanh")
        owner_id = text(root, "ChuHo/MaSoDinhDanh")
        owner_name = text(root, "ChuHo/HoTen")
        address = text(root, "DiaChi")
        trade = text(root, "NganhNghe")
        today = vn_today().date().isoformat()
        with self.store.transaction() as conn:
            existing = conn.execute(
                "SELECT ma_so_thue FROM households WHERE chu_ho_id = ?", (owner_id,)
            ).fetchone()
            if existing is not None:
                raise TaxError(
                    422,
                    "CHU_HO_DA_DANG_KY",
                    f"Cá nhân {owner_id} đã đăng ký hộ kinh doanh (mã số thuế {existing['ma_so_thue']}); "
                    "mỗi cá nhân chỉ được đăng ký một hộ kinh doanh",
                )
            while True:
                base = f"8{Store.next_sequence(conn, 'tax-code'):08d}"
                check = tax_code_check_digit(base)
                if check is not None:
                    break
            ma_so_thue = f"{base}{check}"
            conn.execute(
                "INSERT INTO households VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (ma_so_thue, ma_ho_so, ten, owner_id, owner_name, address, trade, today),
            )
        out = ET.Element("ThongBaoMaSoThue")
        add(out, "MaSoThue", ma_so_thue)
        add(out, "MaHoSo", ma_ho_so)
        add(out, "TenHoKinhDoanh", ten)
        add(out, "NgayCap", today)
        return Response(xml_bytes(out), status_code=201, media_type=XML)


def create_app(
    db_path: str = ":memory:",
    faults: FaultSettings | None = None,
    settings: TaxSandboxSettings | None = None,
    *,
    callback_transport: httpx.AsyncBaseTransport | None = None,
) -> FastAPI:
    """``callback_transport`` lets tests receive payment callbacks without a network."""
    settings = settings or TaxSandboxSettings()
    store = Store(db_path, SCHEMA)
    office = TaxOffice(store, settings, callback_transport)
    idempotency = IdempotencyKeys(store, error_response=error_xml)
    app = FastAPI(title="Tax authority sandbox", version="1")
    install_sandbox_kit(
        app, name="tax", store=store, injector=FaultInjector(faults, malformed_media_type=XML)
    )
    app.state.office = office

    @app.exception_handler(TaxError)
    async def tax_error(request: Request, exc: TaxError) -> Response:
        return error_xml(exc.status, exc.code, exc.message)

    async def guarded(action: Any) -> Response:
        # TaxError raised inside an idempotent handler must become a stored response, not an exception.
        try:
            response: Response = action()
        except TaxError as exc:
            return error_xml(exc.status, exc.code, exc.message)
        return response

    @app.post("/tax/cadastral-slips", response_class=Response)
    async def cadastral_slips(request: Request) -> Response:
        body = await request.body()
        return await idempotency.run(request, lambda: guarded(lambda: office.submit_slip(body)))

    @app.get("/tax/notices/{so_thong_bao}", response_class=Response)
    async def get_notice(so_thong_bao: str) -> Response:
        return Response(office.notice_xml(so_thong_bao), media_type=XML)

    @app.post("/tax/bank/payments", response_class=Response)
    async def bank_payments(request: Request) -> Response:
        body = await request.body()
        content_type = request.headers.get("content-type", XML)
        return await idempotency.run(request, lambda: guarded(lambda: office.pay(body, content_type)))

    @app.post("/tax/household-registrations", response_class=Response)
    async def household_registrations(request: Request) -> Response:
        body = await request.body()
        return await idempotency.run(request, lambda: guarded(lambda: office.register_household(body)))

    return app

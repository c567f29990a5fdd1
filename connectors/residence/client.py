"""Typed async client for the police residence registration API (Vietnamese keys, result envelope).

Every answer is ``{ma_ket_qua, thong_diep, du_lieu}``; ``00`` is success. Errors: ``connectors.errors`` —
``AgencyRejected`` (another ``ma_ket_qua`` in an HTTP 200), ``AgencyUnavailable`` (5xx, 429, timeouts,
connection errors, the same request still running there), ``AgencyProtocolError`` (no envelope, 400,
an idempotency key reused with another body).
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict

from connectors import AgencyClient, AgencyProtocolError, AgencyRejected, JsonErrorBody

AGENCY = "residence"
OK = "00"


class Filing(BaseModel):
    """A residence dossier the police filed (hồ sơ cư trú)."""

    model_config = ConfigDict(frozen=True)

    record_no: str
    on: date


def dmy(value: date) -> str:
    return value.strftime("%d/%m/%Y")


class ResidenceClient(AgencyClient):
    agency = AGENCY
    error_body = JsonErrorBody(code_keys=("ma_ket_qua",), message_keys=("thong_diep",))

    async def register_permanent_residence(
        self,
        *,
        citizen_id: str,
        full_name: str,
        born: date,
        address: str,
        birth_registration_no: str,
        idempotency_key: str,
    ) -> Filing:
        body = {
            "so_dinh_danh": citizen_id,
            "ho_ten": full_name,
            "ngay_sinh": dmy(born),
            "dia_chi": address,
            "can_cu": {"loai": "khai_sinh", "so_giay_to": birth_registration_no},
        }
        data = await self._call("POST", "/api/v1/cu-tru/dang-ky-thuong-tru", body, idempotency_key)
        return self._filing(data, "ngay_dang_ky")

    async def remove_permanent_residence(
        self,
        *,
        citizen_id: str,
        full_name: str,
        address: str,
        death_registration_no: str,
        idempotency_key: str,
    ) -> Filing:
        body = {
            "so_dinh_danh": citizen_id,
            "ho_ten": full_name,
            "dia_chi": address,
            "ly_do": "chet",
            "so_giay_to": death_registration_no,
        }
        data = await self._call("POST", "/api/v1/cu-tru/xoa-thuong-tru", body, idempotency_key)
        return self._filing(data, "ngay_xoa")

    async def residence_status(self, citizen_id: str) -> str | None:
        """``dang_cu_tru`` or ``da_xoa``; None when the police hold nothing on the citizen."""
        try:
            data = await self._call("GET", f"/api/v1/cu-tru/cong-dan/{citizen_id}", None, None)
        except AgencyRejected:
            return None
        return str(data.get("trang_thai"))

    async def _call(
        self, method: str, path: str, body: dict[str, Any] | None, idempotency_key: str | None
    ) -> dict[str, Any]:
        response = await self._request(method, path, json_body=body, idempotency_key=idempotency_key)
        envelope = self._json(response)
        code, message = envelope.get("ma_ket_qua"), str(envelope.get("thong_diep") or "")
        if response.status_code != 200 or not isinstance(code, str):
            raise AgencyProtocolError(
                f"{code or 'no ma_ket_qua'}: {message or response.text[:200]}",
                agency=AGENCY,
                status_code=response.status_code,
            )
        if code != OK:
            raise AgencyRejected(message or code, code=code, agency=AGENCY, status_code=200)
        data = envelope.get("du_lieu")
        if not isinstance(data, dict):
            raise AgencyProtocolError("a successful answer without du_lieu", agency=AGENCY)
        return data

    @staticmethod
    def _filing(data: dict[str, Any], date_key: str) -> Filing:
        try:
            return Filing(record_no=data["so_ho_so"], on=datetime.strptime(data[date_key], "%d/%m/%Y").date())
        except (KeyError, TypeError, ValueError) as exc:
            raise AgencyProtocolError(f"du_lieu lacks or garbles a field: {exc!r}", agency=AGENCY) from exc

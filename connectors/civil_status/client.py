"""Typed async client for the civil-status registry API (Vietnamese keys, dd/mm/yyyy dates).

Callers use English field names and ``date`` values; the client maps them to the registry's
keys and date format and back.

Errors: ``connectors.errors`` — ``AgencyRejected`` (422 ``{ma_loi, mo_ta}``), ``AgencyUnavailable``
(5xx/429/timeouts/connection), ``AgencyProtocolError`` (garbage reply, 400, key reused).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from connectors import AgencyClient, AgencyProtocolError, JsonErrorBody

AGENCY = "civil_status"
DATE_FORMAT = "%d/%m/%Y"
T = TypeVar("T")


def to_dmy(value: date) -> str:
    return value.strftime(DATE_FORMAT)


def from_dmy(value: str) -> date:
    try:
        return datetime.strptime(value, DATE_FORMAT).date()
    except (TypeError, ValueError) as exc:
        raise AgencyProtocolError(f"not a dd/mm/yyyy date: {value!r}", agency=AGENCY) from exc


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Person(_Model):
    full_name: str
    birth_date: date
    citizen_id: str = Field(pattern=r"^\d{12}$")

    def to_wire(self) -> dict[str, str]:
        return {
            "ho_ten": self.full_name,
            "ngay_sinh": to_dmy(self.birth_date),
            "so_dinh_danh": self.citizen_id,
        }

    @classmethod
    def from_wire(cls, data: dict[str, Any]) -> Person:
        return cls(
            full_name=data["ho_ten"], birth_date=from_dmy(data["ngay_sinh"]), citizen_id=data["so_dinh_danh"]
        )


class Parent(_Model):
    full_name: str
    citizen_id: str | None = None

    def to_wire(self) -> dict[str, str | None]:
        return {"ho_ten": self.full_name, "so_dinh_danh": self.citizen_id}


class BirthDeclaration(_Model):
    child_name: str
    birth_date: date
    sex: Literal["male", "female"]
    birth_place: str
    mother: Parent
    father: Parent | None = None


class Declarant(_Model):
    full_name: str
    citizen_id: str = Field(pattern=r"^\d{12}$")
    relationship: str


class DeathDeclaration(_Model):
    deceased: Person
    death_date: date
    death_place: str
    declarant: Declarant


class Registration(_Model):
    registration_no: str
    registered_on: date
    book_no: str


class BirthRegistration(Registration):
    personal_id: str = Field(pattern=r"^\d{12}$")


class Marriage(Registration):
    husband: Person
    wife: Person


class CivilStatusClient(AgencyClient):
    agency = AGENCY
    rejection_statuses = frozenset({422})
    error_body = JsonErrorBody(code_keys=("ma_loi",), message_keys=("mo_ta",))

    async def register_marriage(self, husband: Person, wife: Person, *, idempotency_key: str) -> Registration:
        data = await self._post(
            "/api/ho-tich/ket-hon", {"chong": husband.to_wire(), "vo": wife.to_wire()}, idempotency_key
        )
        return self._convert(lambda: Registration(**self._registration(data)))

    async def register_birth(self, birth: BirthDeclaration, *, idempotency_key: str) -> BirthRegistration:
        body = {
            "ho_ten": birth.child_name,
            "ngay_sinh": to_dmy(birth.birth_date),
            "gioi_tinh": "Nam" if birth.sex == "male" else "Nu",
            "noi_sinh": birth.birth_place,
            "me": birth.mother.to_wire(),
            "cha": birth.father.to_wire() if birth.father else None,
        }
        data = await self._post("/api/ho-tich/khai-sinh", body, idempotency_key)
        return self._convert(
            lambda: BirthRegistration(**self._registration(data), personal_id=data["so_dinh_danh_ca_nhan"])
        )

    async def register_death(self, death: DeathDeclaration, *, idempotency_key: str) -> Registration:
        body = {
            "nguoi_mat": death.deceased.to_wire(),
            "ngay_mat": to_dmy(death.death_date),
            "noi_mat": death.death_place,
            "nguoi_khai": {
                "ho_ten": death.declarant.full_name,
                "so_dinh_danh": death.declarant.citizen_id,
                "quan_he": death.declarant.relationship,
            },
        }
        data = await self._post("/api/ho-tich/khai-tu", body, idempotency_key)
        return self._convert(lambda: Registration(**self._registration(data)))

    async def get_marriage(self, citizen_id: str) -> Marriage | None:
        """The marriage registered for a person, or None."""
        response = await self._request("GET", f"/api/ho-tich/ket-hon/{citizen_id}", reads=(404,))
        if response.status_code == 404:
            return None
        data = self._json(response)
        return self._convert(
            lambda: Marriage(
                **self._registration(data),
                husband=Person.from_wire(data["chong"]),
                wife=Person.from_wire(data["vo"]),
            )
        )

    async def _post(self, path: str, body: dict[str, Any], idempotency_key: str) -> dict[str, Any]:
        response = await self._request("POST", path, json_body=body, idempotency_key=idempotency_key)
        return self._json(response)

    @staticmethod
    def _registration(data: dict[str, Any]) -> dict[str, Any]:
        return {
            "registration_no": data["so_dang_ky"],
            "registered_on": from_dmy(data["ngay_dang_ky"]),
            "book_no": data["quyen_so"],
        }

    @staticmethod
    def _convert(build: Callable[[], T]) -> T:
        """Build a reply model; a missing key or a bad value is the agency breaking its contract."""
        try:
            return build()
        except (KeyError, TypeError, ValidationError) as exc:
            raise AgencyProtocolError(f"reply lacks or garbles a field: {exc!r}", agency=AGENCY) from exc

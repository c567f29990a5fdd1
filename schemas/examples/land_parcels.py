"""Deterministic parcels of the land registry's sample data: the land sandbox starts with them, and
intake's procedure examples (``GET /procedures/{code}/example``) transfer and certify them.

36 parcels on map sheets 10–15 (``TD-<sheet>-<number>``). Every fourth parcel (index 0, 4, 8, …)
has no certificate yet — the first-certificate cases; the others can be transferred.
Owners' citizen ids are 12 digits starting with the Ho Chi Minh City province code 079.
"""

from __future__ import annotations

from typing import Final, TypedDict


class SeedParcel(TypedDict):
    parcel_id: str
    area_m2: float
    owner_citizen_id: str
    owner_name: str
    land_use_purpose: str
    has_certificate: bool
    address: str


_FAMILY = ["Nguyễn", "Trần", "Lê", "Phạm", "Hoàng", "Huỳnh", "Võ", "Đặng", "Bùi"]
_MIDDLE = ["Văn", "Thị", "Minh", "Ngọc", "Hữu", "Thanh"]
_GIVEN = ["An", "Bình", "Châu", "Dũng", "Hạnh", "Khoa", "Lan", "Mai", "Nam", "Phúc", "Quân", "Trang"]
_WARDS = ["Phường Bến Nghé", "Phường Đa Kao", "Phường Tân Định", "Phường Cầu Ông Lãnh"]
# Land-use purpose codes: ODT urban residential, ONT rural residential, CLN perennial crops, LUC rice.
PURPOSES: Final = ("ODT", "ONT", "CLN", "LUC")


def _parcel(index: int) -> SeedParcel:
    sheet = 10 + index // 6
    number = 100 + (index * 37) % 900
    century_sex = 0 if index % 2 == 0 else 1  # born in the 1900s, male / female
    birth_year = 60 + index % 35
    serial = (123_456 + index * 7_919) % 1_000_000
    return SeedParcel(
        parcel_id=f"TD-{sheet}-{number}",
        area_m2=float(60 + (index * 13) % 240) + (0.5 if index % 3 == 0 else 0.0),
        owner_citizen_id=f"079{century_sex}{birth_year:02d}{serial:06d}",
        owner_name=f"{_FAMILY[index % 9]} {_MIDDLE[index % 6]} {_GIVEN[index % 12]}",
        land_use_purpose=PURPOSES[index % 4],
        has_certificate=index % 4 != 0,
        address=f"Thửa {number}, tờ bản đồ số {sheet}, {_WARDS[index % 4]}, Quận 1, TP. Hồ Chí Minh",
    )


SEED_PARCELS: Final[list[SeedParcel]] = [_parcel(i) for i in range(36)]

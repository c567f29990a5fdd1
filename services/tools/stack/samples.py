"""Realistic sample dossiers for the local stack, the tests and the benchmarks (deterministic by seed).

Names, addresses and citizen ids are made up but valid: each id encodes its holder's birth year and
sex, as a real CCCD does. Recent events (a birth, a death) are dated back from Vietnam's today, so
the registries, which check dates against their own (Vietnamese) day, never see one in the future.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import date, timedelta
from typing import Any

from schemas.values import Sex, make_citizen_id
from schemas.workdays import vn_today

_FAMILY = ["Nguyễn", "Trần", "Lê", "Phạm", "Hoàng", "Huỳnh", "Phan", "Vũ", "Võ", "Đặng", "Bùi", "Đỗ"]
_MIDDLE_MALE = ["Văn", "Minh", "Hữu", "Đức", "Quốc", "Thanh"]
_MIDDLE_FEMALE = ["Thị", "Ngọc", "Thu", "Kim", "Mai", "Thanh"]
_GIVEN_MALE = ["An", "Bảo", "Cường", "Dũng", "Hải", "Hùng", "Khoa", "Long", "Nam", "Phúc", "Quân", "Tuấn"]
_GIVEN_FEMALE = ["Anh", "Bình", "Chi", "Hà", "Hạnh", "Hoa", "Lan", "Linh", "Mai", "Ngân", "Thảo", "Trang"]
_STREETS = ["Lê Lợi", "Nguyễn Huệ", "Hai Bà Trưng", "Trần Hưng Đạo", "Lý Thường Kiệt", "Điện Biên Phủ"]
_PROVINCES = [("001", "Hà Nội"), ("079", "TP. Hồ Chí Minh"), ("048", "Đà Nẵng"), ("031", "Hải Phòng")]

LAND_TRANSFER = "9.900001"
FIRST_CERTIFICATE = "9.900002"
BIRTH = "9.900003"
DEATH = "1.011537"
MARRIAGE = "9.900005"
HOUSEHOLD_BUSINESS = "9.900006"


class SampleDossiers:
    def __init__(self, seed: int = 2026, *, today: Callable[[], date] = vn_today) -> None:
        self.random = random.Random(seed)
        self.serial = 0
        self.today = today

    def person(self, sex: Sex | None = None, born: date | None = None) -> dict[str, Any]:
        r = self.random
        sex = sex or r.choice([Sex.MALE, Sex.FEMALE])
        born = born or date(r.randint(1955, 2000), r.randint(1, 12), r.randint(1, 28))
        province, city = r.choice(_PROVINCES)
        self.serial += 1
        male = sex is Sex.MALE
        name = " ".join(
            (
                r.choice(_FAMILY),
                r.choice(_MIDDLE_MALE if male else _MIDDLE_FEMALE),
                r.choice(_GIVEN_MALE if male else _GIVEN_FEMALE),
            )
        )
        return {
            "citizen_id": make_citizen_id(
                province, born, sex, (self.serial * 7919 + r.randint(0, 999)) % 1_000_000
            ),
            "full_name": name,
            "date_of_birth": born.isoformat(),
            "sex": sex.value,
            "address": f"{r.randint(1, 300)} {r.choice(_STREETS)}, {city}",
        }

    def parcel_id(self) -> str:
        return f"TD-{self.random.randint(20, 99)}-{self.random.randint(1, 99999)}"

    @staticmethod
    def submission(procedure_code: str, applicant: dict[str, Any], form: dict[str, Any]) -> dict[str, Any]:
        return {"procedure_code": procedure_code, "channel": "counter", "applicant": applicant, "form": form}

    def land_transfer(self, parcel_id: str, owner: dict[str, Any], area_m2: float) -> dict[str, Any]:
        buyer = self.person()
        value = self.random.randrange(800, 9000) * 1_000_000
        form = {
            "parcel_id": parcel_id,
            "area_m2": area_m2,
            "transferor": owner,
            "transferee": buyer,
            "declared_value_vnd": value,
        }
        return self.submission(LAND_TRANSFER, owner, form)

    def first_certificate(self, parcel_id: str, user: dict[str, Any], area_m2: float) -> dict[str, Any]:
        form = {
            "parcel_id": parcel_id,
            "area_m2": area_m2,
            "applicant": user,
            "land_use_purpose": "ODT",
            "land_value_vnd": self.random.randrange(300, 3000) * 1_000_000,
        }
        return self.submission(FIRST_CERTIFICATE, user, form)

    def marriage(self) -> dict[str, Any]:
        husband = self.person(Sex.MALE, date(self.random.randint(1985, 2000), 5, 17))
        wife = self.person(Sex.FEMALE, date(self.random.randint(1988, 2002), 9, 2))
        return self.submission(MARRIAGE, husband, {"husband": husband, "wife": wife})

    def birth(self) -> dict[str, Any]:
        mother = self.person(Sex.FEMALE, date(self.random.randint(1988, 2000), 3, 8))
        father = self.person(Sex.MALE, date(self.random.randint(1985, 1998), 7, 21))
        born = self.today() - timedelta(days=self.random.randint(3, 40))
        sex = self.random.choice([Sex.MALE, Sex.FEMALE])
        child_name = father["full_name"].split()[0] + " " + self.person(sex)["full_name"].split(" ", 1)[1]
        form = {
            "child_full_name": child_name,
            "child_date_of_birth": born.isoformat(),
            "child_sex": sex.value,
            "place_of_birth": "Bệnh viện Từ Dũ, TP. Hồ Chí Minh",
            "mother": mother,
            "father": father,
            "residence_address": mother["address"],
        }
        return self.submission(BIRTH, mother, form)

    def death(self) -> dict[str, Any]:
        deceased = self.person(born=date(self.random.randint(1930, 1950), 1, 15))
        declarant = self.person(born=date(self.random.randint(1960, 1990), 6, 1))
        form = {
            "deceased": deceased,
            "date_of_death": (self.today() - timedelta(days=self.random.randint(1, 20))).isoformat(),
            "place_of_death": "Bệnh viện Chợ Rẫy, TP. Hồ Chí Minh",
            "declarant": declarant,
            "allowance_beneficiary": declarant,
        }
        return self.submission(DEATH, declarant, form)

    def household_business(self) -> dict[str, Any]:
        owner = self.person()
        form = {
            # The registry refuses a name taken in the district: the owner's serial keeps one run's
            # names apart, the random digits those of two runs on one sandbox.
            "business_name": (
                f"Hộ kinh doanh {owner['full_name'].split()[-1]} {self.serial}{self.random.randint(100, 999)}"
            ),
            "owner": owner,
            "business_address": owner["address"],
            "line_of_business": self.random.choice(["Dịch vụ ăn uống", "Bán lẻ tạp hóa", "Sửa chữa xe máy"]),
            "capital_vnd": self.random.randrange(50, 900) * 1_000_000,
        }
        return self.submission(HOUSEHOLD_BUSINESS, owner, form)

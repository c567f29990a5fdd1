"""Fresh, valid forms for the kit's requests, made from the golden examples (``schemas/examples``).

Each form is the golden example of its kind with what makes a dossier itself replaced: new people
(names, and citizen ids that agree with their birth year and sex, as a real CCCD does), the parcel,
the amounts, and the dates of recent facts (a birth, a death) counted back from Vietnam's today, so
no register sees a fact in the future. Two forms never share a person, so two requests never collide
at an agency. Deterministic by seed.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import date, timedelta
from itertools import count
from typing import Any

from schemas.examples import form_example
from schemas.forms import FormKind, validate_form
from schemas.values import Sex, make_citizen_id
from schemas.workdays import vn_today

Form = dict[str, Any]

_FAMILY = ["Nguyễn", "Trần", "Lê", "Phạm", "Hoàng", "Huỳnh", "Phan", "Vũ", "Võ", "Đặng", "Bùi", "Đỗ"]
_MIDDLE = {Sex.MALE: ["Văn", "Minh", "Hữu", "Đức", "Quốc"], Sex.FEMALE: ["Thị", "Ngọc", "Thu", "Kim", "Mai"]}
_GIVEN = {
    Sex.MALE: ["An", "Bảo", "Cường", "Dũng", "Hải", "Hùng", "Khoa", "Long", "Nam", "Phúc", "Quân", "Tuấn"],
    Sex.FEMALE: ["Anh", "Bình", "Chi", "Hà", "Hạnh", "Hoa", "Lan", "Linh", "Ngân", "Thảo", "Trang", "Yến"],
}
_STREETS = ["Lê Lợi", "Nguyễn Huệ", "Hai Bà Trưng", "Trần Hưng Đạo", "Lý Thường Kiệt", "Điện Biên Phủ"]
_PROVINCES = [("001", "Hà Nội"), ("079", "TP. Hồ Chí Minh"), ("048", "Đà Nẵng"), ("031", "Hải Phòng")]


class SampleForms:
    """The kit's ``samples``: one method per form kind, and the people and parcels they are made of."""

    def __init__(self, seed: int = 2026, *, today: Callable[[], date] = vn_today) -> None:
        self.random = random.Random(seed)
        self.today = today
        self._serials = count(self.random.randrange(500_000))

    def person(self, sex: Sex | None = None, born: date | None = None) -> Form:
        """A new person (a ``schemas.values.Person`` as JSON), born 1955-2000 unless ``born`` says."""
        r = self.random
        sex = sex or r.choice([Sex.MALE, Sex.FEMALE])
        born = born or date(r.randint(1955, 2000), r.randint(1, 12), r.randint(1, 28))
        province, city = r.choice(_PROVINCES)
        return {
            "citizen_id": make_citizen_id(province, born, sex, next(self._serials)),
            "full_name": f"{r.choice(_FAMILY)} {self._given_name(sex)}",
            "date_of_birth": born.isoformat(),
            "sex": sex.value,
            "address": f"{r.randint(1, 300)} {r.choice(_STREETS)}, {city}",
        }

    def parcel_id(self) -> str:
        """A parcel id no other call returns (the land sandbox must be told of it first)."""
        return f"TD-{self.random.randint(20, 99)}-{next(self._serials) % 1_000_000}"

    def land_transfer(self, parcel_id: str, owner: Form, area_m2: float) -> Form:
        """``owner`` transfers the parcel to a new person."""
        return self._form(
            FormKind.LAND_TRANSFER,
            parcel_id=parcel_id,
            area_m2=area_m2,
            transferor=owner,
            transferee=self.person(),
            declared_value_vnd=self.random.randrange(800, 9000) * 1_000_000,
        )

    def first_land_certificate(self, parcel_id: str, applicant: Form, area_m2: float) -> Form:
        """``applicant`` asks for the parcel's first certificate."""
        return self._form(
            FormKind.FIRST_LAND_CERTIFICATE,
            parcel_id=parcel_id,
            area_m2=area_m2,
            applicant=applicant,
            land_value_vnd=self.random.randrange(300, 3000) * 1_000_000,
        )

    def marriage(self) -> Form:
        """A husband born 1985-2000 and a wife born 1988-2002: both of age."""
        r = self.random
        return self._form(
            FormKind.MARRIAGE,
            husband=self.person(Sex.MALE, date(r.randint(1985, 2000), 5, 17)),
            wife=self.person(Sex.FEMALE, date(r.randint(1988, 2002), 9, 2)),
        )

    def birth(self) -> Form:
        """A child born 3-40 days ago to two new parents, with the father's family name."""
        r = self.random
        mother = self.person(Sex.FEMALE, date(r.randint(1988, 2000), 3, 8))
        father = self.person(Sex.MALE, date(r.randint(1985, 1998), 7, 21))
        sex = r.choice([Sex.MALE, Sex.FEMALE])
        return self._form(
            FormKind.BIRTH,
            child_full_name=f"{father['full_name'].split()[0]} {self._given_name(sex)}",
            child_date_of_birth=(self.today() - timedelta(days=r.randint(3, 40))).isoformat(),
            child_sex=sex.value,
            mother=mother,
            father=father,
            residence_address=mother["address"],
        )

    def death(self) -> Form:
        """A person born 1930-1950 who died 1-20 days ago; the declarant receives the allowance."""
        r = self.random
        declarant = self.person(born=date(r.randint(1960, 1990), 6, 1))
        return self._form(
            FormKind.DEATH,
            deceased=self.person(born=date(r.randint(1930, 1950), 1, 15)),
            date_of_death=(self.today() - timedelta(days=r.randint(1, 20))).isoformat(),
            declarant=declarant,
            allowance_beneficiary=declarant,
        )

    def household_business(self) -> Form:
        """A new owner's household business at the owner's address."""
        owner = self.person()
        return self._form(
            FormKind.HOUSEHOLD_BUSINESS,
            business_name=f"Hộ kinh doanh {owner['full_name'].split()[-1]} {next(self._serials)}",
            owner=owner,
            business_address=owner["address"],
            capital_vnd=self.random.randrange(50, 900) * 1_000_000,
        )

    def _given_name(self, sex: Sex) -> str:
        return f"{self.random.choice(_MIDDLE[sex])} {self.random.choice(_GIVEN[sex])}"

    def _form(self, kind: FormKind, **fields: Any) -> Form:
        """The golden example of ``kind`` with ``fields`` replaced; always a valid form."""
        form = form_example(kind)
        unknown = set(fields) - set(form)
        if unknown:  # the golden example no longer has them: the sample would silently drift
            raise KeyError(f"the golden {kind.value} example has no {sorted(unknown)}")
        form.update(fields)
        validate_form(kind, form)
        return form

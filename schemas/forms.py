"""What the citizen fills in, one typed model per kind of form.

A procedure in the catalog names its form kind; events carry the form as plain JSON (so a new form
kind needs no new event version) and validate it against :data:`FORMS` on the way in.

Every field a person types is a :data:`~schemas.values.TYPED_TEXT` type (``FullName``,
``ShortText``, ``BusinessName``) and every date of a past fact a ``PastDate``; the other fields are
codes, numbers, enums or people.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import Annotated, Any, Final, Self

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator
from pydantic_core import to_json

from schemas.examples import form_example
from schemas.values import (
    PERSONAL,
    TYPED_TEXT,
    FullName,
    MoneyVND,
    PastDate,
    Person,
    Sex,
    ShortText,
    personal_field_names,
)


class FormKind(StrEnum):
    """The kinds of form a procedure can ask for."""

    LAND_TRANSFER = "land_transfer"
    FIRST_LAND_CERTIFICATE = "first_land_certificate"
    MARRIAGE = "marriage"
    BIRTH = "birth"
    DEATH = "death"
    HOUSEHOLD_BUSINESS = "household_business"


class UnknownFormKind(ValueError):
    """A form kind that :data:`FORMS` does not know."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        super().__init__(f"unknown form kind {kind!r}; known kinds: {', '.join(sorted(FORMS))}")


ParcelId = Annotated[
    str,
    StringConstraints(pattern=r"^TD-[0-9]{1,4}-[0-9]{1,6}$"),  # \d would take other scripts' digits
    Field(
        description="Land parcel: TD-<map sheet number>-<parcel number> (tờ bản đồ, thửa đất).",
        examples=["TD-12-345"],
    ),
]
AreaM2 = Annotated[
    float, Field(gt=0, le=10_000_000, allow_inf_nan=False, description="Parcel area in square metres.")
]

BusinessName = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200), TYPED_TEXT
]

_FORM_CONFIG: Final = ConfigDict(strict=True, extra="forbid", frozen=True)


def _form_config(kind: FormKind) -> ConfigDict:
    """The forms' config, with the kind's golden example (``schemas/examples``) as its JSON Schema example."""
    return ConfigDict(**_FORM_CONFIG, json_schema_extra={"examples": [form_example(kind)]})


class LandTransferForm(BaseModel):
    """Land-use-right transfer (chuyển nhượng quyền sử dụng đất)."""

    model_config = _form_config(FormKind.LAND_TRANSFER)

    parcel_id: ParcelId
    area_m2: AreaM2
    transferor: Person = Field(description="Current holder of the land-use right (bên chuyển nhượng).")
    transferee: Person = Field(description="Who receives the right (bên nhận chuyển nhượng).")
    declared_value_vnd: MoneyVND = Field(description="Transfer value declared in the contract.")

    @model_validator(mode="after")
    def _two_parties(self) -> Self:
        if self.transferor.citizen_id == self.transferee.citizen_id:
            raise ValueError("transferor and transferee must be different people")
        return self


class FirstLandCertificateForm(BaseModel):
    """First-time land-use-right certificate (cấp Giấy chứng nhận lần đầu)."""

    model_config = _form_config(FormKind.FIRST_LAND_CERTIFICATE)

    parcel_id: ParcelId
    area_m2: AreaM2
    applicant: Person
    land_use_purpose: ShortText = Field(description="Land-use purpose as declared (mục đích sử dụng đất).")
    land_value_vnd: MoneyVND = Field(description="Land value by the provincial price table.")


class MarriageForm(BaseModel):
    """Marriage registration (đăng ký kết hôn)."""

    model_config = _form_config(FormKind.MARRIAGE)

    husband: Person
    wife: Person

    @model_validator(mode="after")
    def _two_people(self) -> Self:
        if self.husband.citizen_id == self.wife.citizen_id:
            raise ValueError("husband and wife must be different people")
        return self


class BirthForm(BaseModel):
    """Birth registration (đăng ký khai sinh), the first leg of the birth–residence–insurance group."""

    model_config = _form_config(FormKind.BIRTH)

    child_full_name: FullName = Field(json_schema_extra=PERSONAL)
    child_date_of_birth: PastDate = Field(json_schema_extra=PERSONAL)
    child_sex: Sex
    place_of_birth: ShortText
    mother: Person
    father: Person | None = Field(default=None, description="Absent when the father is not declared.")
    residence_address: ShortText = Field(
        description="Where the child's permanent residence is registered.", json_schema_extra=PERSONAL
    )

    @model_validator(mode="after")
    def _born_after_parents(self) -> Self:
        for role, parent in (("mother", self.mother), ("father", self.father)):
            if parent is not None and parent.date_of_birth >= self.child_date_of_birth:
                raise ValueError(f"the {role} must be born before the child")
        return self


class DeathForm(BaseModel):
    """Death registration (đăng ký khai tử), with removal of residence and the funeral allowance."""

    model_config = _form_config(FormKind.DEATH)

    deceased: Person
    date_of_death: PastDate
    place_of_death: ShortText
    declarant: Person = Field(description="Who declares the death (người đi khai tử).")
    allowance_beneficiary: Person | None = Field(
        default=None, description="Who receives the funeral allowance, when one is claimed."
    )

    @model_validator(mode="after")
    def _death_after_birth(self) -> Self:
        if self.date_of_death < self.deceased.date_of_birth:
            raise ValueError("date_of_death is before the deceased's date_of_birth")
        if self.declarant.citizen_id == self.deceased.citizen_id:
            raise ValueError("the declarant cannot be the deceased")
        return self


class HouseholdBusinessForm(BaseModel):
    """Household business registration with a tax code (đăng ký hộ kinh doanh)."""

    model_config = _form_config(FormKind.HOUSEHOLD_BUSINESS)

    business_name: BusinessName
    owner: Person
    business_address: ShortText
    line_of_business: ShortText
    capital_vnd: MoneyVND


FORMS: Final[dict[str, type[BaseModel]]] = {
    FormKind.LAND_TRANSFER: LandTransferForm,
    FormKind.FIRST_LAND_CERTIFICATE: FirstLandCertificateForm,
    FormKind.MARRIAGE: MarriageForm,
    FormKind.BIRTH: BirthForm,
    FormKind.DEATH: DeathForm,
    FormKind.HOUSEHOLD_BUSINESS: HouseholdBusinessForm,
}
"""Form model per form kind."""

FORM_PERSONAL_FIELDS: Final[frozenset[str]] = frozenset().union(
    *(personal_field_names(m) for m in FORMS.values())
)
"""Top-level form fields (outside :class:`Person`) that hold personal data."""


def validate_form(kind: str, data: Mapping[str, Any]) -> BaseModel:
    """Validate JSON form ``data`` as the form of ``kind``.

    ``data`` is what travels in an event (dates as ISO strings), so it is read with JSON rules.
    Raises :class:`UnknownFormKind` or :class:`pydantic.ValidationError`.
    """
    model = FORMS.get(kind)
    if model is None:
        raise UnknownFormKind(kind)
    return model.model_validate_json(to_json(dict(data)))

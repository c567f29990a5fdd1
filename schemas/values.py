"""Value types shared by every event: identifiers, money, documents and the people in a dossier.

Each type validates what a clerk or an agency system would get wrong, and says what is wrong in
words a clerk understands. Fields holding personal data carry ``x-personal`` in their JSON Schema
(see :data:`PERSONAL_FIELDS`) so that logs can mask them.

Text a person types (names, addresses, places, file names) is refused when it holds a character no
register takes (:data:`TYPED_TEXT`); a date of a past fact (a birth, a death) is refused when it is
after today. What a person submits is validated with :func:`submission_context`, which also
normalises that text to NFC and says which day today is; events are read without it (see
:data:`TYPED_TEXT` for why).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from datetime import UTC, date, datetime
from enum import StrEnum
from types import MappingProxyType
from typing import Annotated, Any, Final, Literal, Self

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationInfo,
    ValidatorFunctionWrapHandler,
    WithJsonSchema,
    WrapValidator,
    model_validator,
)
from pydantic_core import PydanticCustomError

# Province codes that open a citizen id number, per Circular 07/2016/TT-BCA (63 provinces).
PROVINCE_CODES: Final[Mapping[str, str]] = MappingProxyType(
    {
        "001": "Hà Nội",
        "002": "Hà Giang",
        "004": "Cao Bằng",
        "006": "Bắc Kạn",
        "008": "Tuyên Quang",
        "010": "Lào Cai",
        "011": "Điện Biên",
        "012": "Lai Châu",
        "014": "Sơn La",
        "015": "Yên Bái",
        "017": "Hòa Bình",
        "019": "Thái Nguyên",
        "020": "Lạng Sơn",
        "022": "Quảng Ninh",
        "024": "Bắc Giang",
        "025": "Phú Thọ",
        "026": "Vĩnh Phúc",
        "027": "Bắc Ninh",
        "030": "Hải Dương",
        "031": "Hải Phòng",
        "033": "Hưng Yên",
        "034": "Thái Bình",
        "035": "Hà Nam",
        "036": "Nam Định",
        "037": "Ninh Bình",
        "038": "Thanh Hóa",
        "040": "Nghệ An",
        "042": "Hà Tĩnh",
        "044": "Quảng Bình",
        "045": "Quảng Trị",
        "046": "Thừa Thiên Huế",
        "048": "Đà Nẵng",
        "049": "Quảng Nam",
        "051": "Quảng Ngãi",
        "052": "Bình Định",
        "054": "Phú Yên",
        "056": "Khánh Hòa",
        "058": "Ninh Thuận",
        "060": "Bình Thuận",
        "062": "Kon Tum",
        "064": "Gia Lai",
        "066": "Đắk Lắk",
        "067": "Đắk Nông",
        "068": "Lâm Đồng",
        "070": "Bình Phước",
        "072": "Tây Ninh",
        "074": "Bình Dương",
        "075": "Đồng Nai",
        "077": "Bà Rịa - Vũng Tàu",
        "079": "Hồ Chí Minh",
        "080": "Long An",
        "082": "Tiền Giang",
        "083": "Bến Tre",
        "084": "Trà Vinh",
        "086": "Vĩnh Long",
        "087": "Đồng Tháp",
        "089": "An Giang",
        "091": "Kiên Giang",
        "092": "Cần Thơ",
        "093": "Hậu Giang",
        "094": "Sóc Trăng",
        "095": "Bạc Liêu",
        "096": "Cà Mau",
    }
)

PERSONAL: Final[dict[str, Any]] = {"x-personal": True}
"""``json_schema_extra`` for a field that holds personal data."""


class Sex(StrEnum):
    """Sex as recorded on the citizen id card."""

    MALE = "male"
    FEMALE = "female"


# --- citizen id -------------------------------------------------------------------------------

_CITIZEN_ID_RE: Final = re.compile(r"[0-9]{12}")  # ASCII only: re's \d also matches other scripts' digits


def _check_citizen_id(value: str) -> str:
    if not _CITIZEN_ID_RE.fullmatch(value):
        raise ValueError(f"citizen id must be exactly 12 digits, got {len(value)} characters")
    if value[:3] not in PROVINCE_CODES:
        # Neither this nor the checks of Person repeat digits or years: refusals reach HTTP answers.
        raise ValueError("citizen id starts with an unknown province code (its first 3 digits)")
    return value


CitizenId = Annotated[
    str,
    AfterValidator(_check_citizen_id),
    WithJsonSchema(
        {
            "type": "string",
            "pattern": r"^\d{12}$",
            "description": "Citizen id (CCCD, số định danh cá nhân): 3-digit province code, "
            "1 digit for century and sex, 2 digits of birth year, 6 digits.",
        }
    ),
]
"""A 12-digit personal identification number whose province code exists."""


def citizen_id_birth_year(citizen_id: str) -> int:
    """The birth year a citizen id encodes: digit 4 gives the century (0-1: 1900s, 2-3: 2000s, ...)."""
    century = 1900 + 100 * (int(citizen_id[3]) // 2)
    return century + int(citizen_id[4:6])


def citizen_id_sex(citizen_id: str) -> Sex:
    """The sex a citizen id encodes: an even 4th digit is male, an odd one female."""
    return Sex.MALE if int(citizen_id[3]) % 2 == 0 else Sex.FEMALE


def make_citizen_id(province_code: str, date_of_birth: date, sex: Sex, serial: int) -> str:
    """Build a citizen id consistent with a birth date and sex (for sample data and tests)."""
    if province_code not in PROVINCE_CODES:
        raise ValueError(f"unknown province code {province_code!r}")
    if not 1900 <= date_of_birth.year <= 2399:
        raise ValueError("citizen ids encode birth years 1900-2399 only")
    if not 0 <= serial <= 999_999:
        raise ValueError("serial must have at most 6 digits")
    century_digit = 2 * ((date_of_birth.year - 1900) // 100) + (1 if sex is Sex.FEMALE else 0)
    return f"{province_code}{century_digit}{date_of_birth.year % 100:02d}{serial:06d}"


# --- codes ------------------------------------------------------------------------------------

ProcedureCode = Annotated[
    str,
    StringConstraints(pattern=r"^\d\.\d{6}$"),
    Field(description="National procedure code (mã TTHC), e.g. 1.007073.", examples=["1.007073"]),
]
"""A national administrative procedure code such as ``1.007073``."""

DOSSIER_CODE_PATTERN: Final = r"^LT-\d{6}-\d{6}$"

DossierCode = Annotated[
    str,
    StringConstraints(pattern=DOSSIER_CODE_PATTERN),
    Field(
        description="Receipt code printed on the appointment receipt: LT-YYMMDD-NNNNNN, the date the "
        "dossier was received and a 6-digit daily sequence number.",
        examples=["LT-240915-000123"],
    ),
]
"""The human-readable dossier code (mã hồ sơ): ``LT-<YYMMDD received>-<daily sequence>``."""

MAX_MONEY_VND: Final = 10**15  # stays below 2**53, so every JSON reader holds it exactly

MoneyVND = Annotated[
    int,
    Field(
        strict=True,
        ge=0,
        le=MAX_MONEY_VND,
        description="An amount in Vietnamese đồng: a whole, non-negative number (no fractions).",
    ),
]
"""An amount of Vietnamese đồng: a non-negative ``int``; floats and booleans are refused."""


def _require_aware(value: datetime) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("datetime must carry a UTC offset (naive datetimes are ambiguous)")
    return value.astimezone(UTC)


UtcDatetime = Annotated[datetime, AfterValidator(_require_aware)]
"""A timezone-aware datetime, normalised to UTC; naive datetimes are refused."""


# --- what a person types ----------------------------------------------------------------------

_NORMALISE: Final = "lienthong.normalise"
_TODAY: Final = "lienthong.today"


def submission_context(today: date) -> dict[str, object]:
    """The pydantic validation context for what a person submits (``model_validate_json(...,
    context=...)``): typed text is NFC-normalised, and past-fact dates must not be after ``today``
    (Vietnam's date at the moment of submission)."""
    return {_NORMALISE: True, _TODAY: today}


def _context(info: ValidationInfo) -> Mapping[str, object]:
    return info.context if isinstance(info.context, Mapping) else {}


_BIDI_CONTROLS: Final = frozenset([0x061C, 0x200E, 0x200F, *range(0x202A, 0x202F), *range(0x2066, 0x206A)])
_ZERO_WIDTH: Final = frozenset([0x200B, 0x200C, 0x200D, 0x2060, 0xFEFF])
_REFUSED_CATEGORIES: Final[Mapping[str, str]] = MappingProxyType(
    {
        "Cc": "a control character",
        "Cf": "an invisible formatting character",
        "Cs": "a surrogate code point",
        "Co": "a private-use character",
        "Cn": "an unassigned code point",
        "Zl": "a line separator",
        "Zp": "a paragraph separator",
    }
)


def _refused_character(text: str) -> tuple[int, str, str] | None:
    """The first character of ``text`` no register takes: (position, code point, kind)."""
    if text.isprintable():  # str.isprintable refuses a superset (it also refuses spaces other than " ")
        return None
    for position, char in enumerate(text):
        code = ord(char)
        if code in _BIDI_CONTROLS:
            kind = "a bidirectional control character"
        elif code in _ZERO_WIDTH:
            kind = "a zero-width character"
        else:
            found = _REFUSED_CATEGORIES.get(unicodedata.category(char))
            if found is None:
                continue
            kind = found
        return position, f"U+{code:04X}", kind
    return None


def _typed_text(value: object, handler: ValidatorFunctionWrapHandler, info: ValidationInfo) -> str:
    if isinstance(value, str) and _context(info).get(_NORMALISE):
        value = unicodedata.normalize("NFC", value)
    text: str = handler(value)
    refused = _refused_character(text)
    if refused is not None:
        position, code_point, kind = refused
        raise PydanticCustomError(
            "typed_text",
            "holds {kind} ({code_point}) at character {position}, which no register accepts; "
            "type the text again without it",
            {"kind": kind, "code_point": code_point, "position": position + 1},
        )
    return text


TYPED_TEXT: Final = WrapValidator(_typed_text)
"""Marks a ``str`` type as text a person types; put it after the type's ``StringConstraints``.

Refused, with the kind and code point of the first such character but never the text: control
characters (C0, C1, DEL, NUL, BEL, tabs and line breaks), bidirectional overrides, embeddings,
isolates and marks, zero-width and other invisible formatting characters (U+200B-U+200D, U+2060,
U+FEFF, soft hyphen), line and paragraph separators, surrogates, private-use and unassigned code
points. They pass the JSON Schema's ``string`` and reach the agencies' registers otherwise, where one
register stores them and another (an XML one: XML cannot hold C0 controls) refuses the dossier.

With :func:`submission_context` the text is first normalised to NFC (Vietnamese typed with combining
marks becomes the precomposed letters every register compares by), and the length limits count the
normalised text. Events are read without that context: they are signed over their parsed form, so
normalising on read would break the signature of an event written before; intake normalises once.
The check is a validator, not a JSON Schema ``pattern``: the event snapshots keep their schema and a
pattern would be a breaking change to them. Events written before it that hold such characters are
refused when read, as they would be by the agency that cannot store them.
"""

ShortText = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=500), TYPED_TEXT]
"""Free text a person types, such as an address or a place: trimmed, not empty, at most 500
characters, only characters a register takes (:data:`TYPED_TEXT`)."""


def _not_after_today(value: date, info: ValidationInfo) -> date:
    today = _context(info).get(_TODAY)
    if isinstance(today, date) and value > today:
        raise PydanticCustomError(
            "date_in_future",
            "is after today ({today} in Vietnam); it must be a date that has already come",
            {"today": today.isoformat()},
        )
    return value


PastDate = Annotated[date, AfterValidator(_not_after_today)]
"""The date of something that has happened (a birth, a death): with :func:`submission_context`,
refused when after today."""


# --- documents --------------------------------------------------------------------------------

MAX_DOCUMENT_BYTES: Final = 50 * 1024 * 1024

DocumentMediaType = Literal["application/pdf", "image/jpeg", "image/png", "application/xml"]


class DocumentRef(BaseModel):
    """A reference to a scanned or signed document in document storage; never the file itself."""

    model_config = ConfigDict(
        strict=True,
        extra="forbid",
        frozen=True,
        json_schema_extra={
            "examples": [
                {
                    "name": "hop-dong-chuyen-nhuong.pdf",
                    "media_type": "application/pdf",
                    "sha256": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
                    "size_bytes": 482133,
                }
            ]
        },
    )

    name: Annotated[
        str, StringConstraints(strip_whitespace=True, min_length=1, max_length=255), TYPED_TEXT
    ] = Field(description="File name as submitted.")
    media_type: DocumentMediaType = Field(description="Media type; only formats the centers accept.")
    sha256: Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")] = Field(
        description="SHA-256 of the file content, 64 lowercase hex digits."
    )
    size_bytes: int = Field(gt=0, le=MAX_DOCUMENT_BYTES, description="File size in bytes (at most 50 MiB).")


# --- people -----------------------------------------------------------------------------------

FullName = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100), TYPED_TEXT]
"""A person's full name: trimmed, 1-100 characters, only characters a register takes."""


class Person(BaseModel):
    """A citizen named in a dossier. The citizen id must agree with the birth year and sex."""

    model_config = ConfigDict(
        strict=True,
        extra="forbid",
        frozen=True,
        json_schema_extra={
            "examples": [
                {
                    "citizen_id": "001085012345",
                    "full_name": "Nguyễn Văn An",
                    "date_of_birth": "1985-03-14",
                    "sex": "male",
                    "address": "12 Hàng Bài, phường Hàng Bài, quận Hoàn Kiếm, Hà Nội",
                }
            ]
        },
    )

    citizen_id: CitizenId = Field(json_schema_extra=PERSONAL)
    full_name: FullName = Field(
        description="Full name as on the citizen id card.", json_schema_extra=PERSONAL
    )
    date_of_birth: PastDate = Field(description="Date of birth.", json_schema_extra=PERSONAL)
    sex: Sex | None = Field(default=None, description="Sex, when the form asks for it.")
    address: ShortText | None = Field(
        default=None, description="Permanent or contact address.", json_schema_extra=PERSONAL
    )

    @model_validator(mode="after")
    def _id_matches_birth_and_sex(self) -> Self:
        encoded_year = citizen_id_birth_year(self.citizen_id)
        if encoded_year != self.date_of_birth.year:
            raise ValueError(
                "date_of_birth is not in the birth year the citizen id encodes (its 4th to 6th digits)"
            )
        if self.sex is not None and citizen_id_sex(self.citizen_id) is not self.sex:
            raise ValueError("sex is not the one the citizen id encodes (its 4th digit)")
        return self


def personal_field_names(model: type[BaseModel]) -> frozenset[str]:
    """Names of the fields of ``model`` marked ``x-personal``."""
    return frozenset(
        name
        for name, info in model.model_fields.items()
        if isinstance(info.json_schema_extra, dict) and info.json_schema_extra.get("x-personal") is True
    )


PERSONAL_FIELDS: Final[frozenset[str]] = personal_field_names(Person)
"""Field names of :class:`Person` that hold personal data and must be masked in logs."""

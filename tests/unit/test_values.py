"""Value types: what a clerk may type, and what is refused with a message naming the problem."""

from __future__ import annotations

import copy
import unicodedata
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

import pytest
from pydantic import BaseModel, ConfigDict, TypeAdapter, ValidationError

from schemas.examples import form_example
from schemas.forms import FORMS, validate_form
from schemas.status import ClockEffect, NationalStatus
from schemas.values import (
    PERSONAL_FIELDS,
    PROVINCE_CODES,
    CitizenId,
    DocumentRef,
    DossierCode,
    MoneyVND,
    Person,
    ProcedureCode,
    Sex,
    UtcDatetime,
    citizen_id_birth_year,
    citizen_id_sex,
    make_citizen_id,
    submission_context,
)

citizen_id = TypeAdapter(CitizenId)
money = TypeAdapter(MoneyVND)


def _person(**changes: Any) -> dict[str, Any]:
    person: dict[str, Any] = {
        "citizen_id": "001085012345",
        "full_name": "Nguyễn Văn An",
        "date_of_birth": "1985-03-14",
        "sex": "male",
    }
    person.update(changes)
    return person


def _person_from_json(**changes: Any) -> Person:
    return Person.model_validate_json(TypeAdapter(dict[str, Any]).dump_json(_person(**changes)))


def test_there_are_63_provinces_from_ha_noi_to_ca_mau() -> None:
    assert len(PROVINCE_CODES) == 63
    assert PROVINCE_CODES["001"] == "Hà Nội"
    assert PROVINCE_CODES["079"] == "Hồ Chí Minh"
    assert PROVINCE_CODES["096"] == "Cà Mau"


def test_valid_citizen_id() -> None:
    assert citizen_id.validate_python("079190123456") == "079190123456"


@pytest.mark.parametrize(
    ("case", "value", "message"),
    [
        ("citizen_id_too_short", "07919012345", "exactly 12 digits"),
        ("citizen_id_with_letters", "07919012345A", "exactly 12 digits"),
        ("citizen_id_with_unknown_province", "003190123456", "unknown province code"),
        ("citizen_id_with_province_beyond_ca_mau", "097190123456", "unknown province code"),
    ],
)
def test_invalid_citizen_id(case: str, value: str, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        citizen_id.validate_python(value)


def test_citizen_id_must_be_a_string_not_a_number() -> None:
    with pytest.raises(ValidationError):
        citizen_id.validate_python(79190123456, strict=True)


@pytest.mark.parametrize(
    ("value", "year", "sex"),
    [
        ("001085012345", 1985, Sex.MALE),
        ("079190123456", 1990, Sex.FEMALE),
        ("001224000001", 2024, Sex.MALE),
        ("001324000001", 2024, Sex.FEMALE),
    ],
)
def test_citizen_id_encodes_century_sex_and_year(value: str, year: int, sex: Sex) -> None:
    assert citizen_id_birth_year(value) == year
    assert citizen_id_sex(value) is sex


def test_make_citizen_id_round_trips_through_person() -> None:
    born = date(2003, 7, 1)
    cid = make_citizen_id("048", born, Sex.FEMALE, 42)
    assert cid == "048303000042"
    person = Person(citizen_id=cid, full_name="Lê Thu", date_of_birth=born, sex=Sex.FEMALE)
    assert person.citizen_id == cid


def test_person_trims_the_name() -> None:
    assert _person_from_json(full_name="  Nguyễn Văn An ").full_name == "Nguyễn Văn An"


@pytest.mark.parametrize(
    ("case", "changes", "message"),
    [
        ("person_with_blank_name", {"full_name": "   "}, "full_name"),
        ("person_with_name_over_100_chars", {"full_name": "A" * 101}, "full_name"),
        (
            "person_born_in_another_year_than_the_id_says",
            {"date_of_birth": "1986-03-14"},
            "birth year the citizen id",
        ),
        ("person_whose_sex_disagrees_with_the_id", {"sex": "female"}, "sex is not the one"),
        ("person_with_unknown_field", {"nickname": "An"}, "nickname"),
        ("person_without_date_of_birth", {"date_of_birth": None}, "date_of_birth"),
    ],
)
def test_invalid_person(case: str, changes: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        _person_from_json(**changes)


def test_personal_fields_are_marked_in_json_schema() -> None:
    assert {"citizen_id", "full_name", "date_of_birth", "address"} <= PERSONAL_FIELDS
    assert "sex" not in PERSONAL_FIELDS
    properties = Person.model_json_schema()["properties"]
    assert properties["citizen_id"]["x-personal"] is True
    assert "x-personal" not in properties["sex"]


@pytest.mark.parametrize("value", [0, 3_500_000_000])
def test_money_accepts_whole_dong(value: int) -> None:
    assert money.validate_json(str(value)) == value


@pytest.mark.parametrize(
    ("case", "raw"),
    [
        ("money_negative", "-1"),
        ("money_with_fraction", "1000.5"),
        ("money_as_float_even_if_whole", "1000.0"),
        ("money_as_bool", "true"),
        ("money_as_string", '"1000"'),
        ("money_beyond_json_safe_range", str(10**16)),
    ],
)
def test_invalid_money(case: str, raw: str) -> None:
    with pytest.raises(ValidationError):
        money.validate_json(raw)


def test_procedure_and_dossier_codes() -> None:
    TypeAdapter(ProcedureCode).validate_python("1.007073")
    TypeAdapter(DossierCode).validate_python("LT-240916-000042")
    for bad in ("1.00707", "10.007073", "1-007073"):
        with pytest.raises(ValidationError):
            TypeAdapter(ProcedureCode).validate_python(bad)
    for bad in ("LT-24091-000042", "XX-240916-000042", "LT-240916-42"):
        with pytest.raises(ValidationError):
            TypeAdapter(DossierCode).validate_python(bad)


_SHA = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
_DOC: dict[str, object] = {
    "name": "hop-dong.pdf",
    "media_type": "application/pdf",
    "sha256": _SHA,
    "size_bytes": 1000,
}


def test_document_ref_valid() -> None:
    assert DocumentRef.model_validate(_DOC).size_bytes == 1000


@pytest.mark.parametrize(
    ("case", "changes", "field"),
    [
        ("document_of_unaccepted_media_type", {"media_type": "application/zip"}, "media_type"),
        ("document_with_uppercase_sha256", {"sha256": _SHA.upper()}, "sha256"),
        ("document_with_short_sha256", {"sha256": "abc"}, "sha256"),
        ("document_empty", {"size_bytes": 0}, "size_bytes"),
        ("document_over_50_mib", {"size_bytes": 50 * 1024 * 1024 + 1}, "size_bytes"),
        ("document_with_content_inline", {"content": "JVBERi0"}, "content"),
    ],
)
def test_invalid_document_ref(case: str, changes: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as caught:
        DocumentRef.model_validate({**_DOC, **changes})
    assert {e["loc"][0] for e in caught.value.errors()} == {field}


class _Stamped(BaseModel):
    model_config = ConfigDict(strict=True)
    at: UtcDatetime


def test_aware_datetimes_are_normalised_to_utc() -> None:
    hanoi = timezone(timedelta(hours=7))
    stamped = _Stamped(at=datetime(2024, 9, 16, 9, 0, tzinfo=hanoi))
    assert stamped.at == datetime(2024, 9, 16, 2, 0, tzinfo=UTC)
    assert stamped.at.utcoffset() == timedelta(0)


def test_naive_datetimes_are_refused() -> None:
    with pytest.raises(ValidationError, match="UTC offset"):
        _Stamped(at=datetime(2024, 9, 16, 9, 0))
    with pytest.raises(ValidationError, match="UTC offset"):
        _Stamped.model_validate_json('{"at": "2024-09-16T09:00:00"}')


def test_national_status_codes_and_clock() -> None:
    assert [s.value for s in NationalStatus] == list(range(1, 11))
    assert NationalStatus(6).vi == "Yêu cầu thực hiện nghĩa vụ tài chính"
    assert NationalStatus(2).en == "Accepted at the desk"
    assert {s for s in NationalStatus if s.is_final} == {3, 7, 10}
    assert {s for s in NationalStatus if s.pauses_clock} == {5, 6, 8}
    assert NationalStatus.SUBMITTED_ONLINE.clock_effect is ClockEffect.NOT_STARTED
    assert NationalStatus.PROCESSED.clock_effect is ClockEffect.STOPPED


def test_citizen_id_with_digits_of_another_script_is_refused() -> None:
    # "079190" + six Arabic-Indic digits: str.isdigit() and re's \d accept them, a CCCD does not.
    with pytest.raises(ValidationError, match="12 digits"):
        TypeAdapter(CitizenId).validate_python("079190" + "\u0661\u0662\u0663\u0664\u0665\u0666")


# --- text a person types, and dates of past facts ----------------------------------------------

REFUSED_CHARACTERS = [
    ("nul", "\x00", "a control character (U+0000)"),
    ("bell", "\x07", "a control character (U+0007)"),
    ("escape", "\x1b", "a control character (U+001B)"),
    ("tab", "\t", "a control character (U+0009)"),
    ("line_feed", "\n", "a control character (U+000A)"),
    ("delete", "\x7f", "a control character (U+007F)"),
    ("c1_csi", "\x9b", "a control character (U+009B)"),
    ("right_to_left_override", "\u202e", "a bidirectional control character (U+202E)"),
    ("left_to_right_embedding", "\u202a", "a bidirectional control character (U+202A)"),
    ("first_strong_isolate", "\u2068", "a bidirectional control character (U+2068)"),
    ("right_to_left_mark", "\u200f", "a bidirectional control character (U+200F)"),
    ("zero_width_space", "\u200b", "a zero-width character (U+200B)"),
    ("zero_width_joiner", "\u200d", "a zero-width character (U+200D)"),
    ("word_joiner", "\u2060", "a zero-width character (U+2060)"),
    ("byte_order_mark", "\ufeff", "a zero-width character (U+FEFF)"),
    ("soft_hyphen", "\u00ad", "an invisible formatting character (U+00AD)"),
    ("tag_character", "\U000e0041", "an invisible formatting character (U+E0041)"),
    ("line_separator", "\u2028", "a line separator (U+2028)"),
    ("private_use", "\ue000", "a private-use character (U+E000)"),
    ("supplementary_private_use", "\U000f0000", "a private-use character (U+F0000)"),
    ("unassigned", "\u0378", "an unassigned code point (U+0378)"),
    ("noncharacter", "\uffff", "an unassigned code point (U+FFFF)"),
]


def _message(error: ValidationError) -> str:
    return "; ".join(e["msg"] for e in error.errors(include_input=False))


@pytest.mark.parametrize(("case", "char", "kind"), REFUSED_CHARACTERS, ids=[c[0] for c in REFUSED_CHARACTERS])
def test_a_name_with_a_character_no_register_takes_is_refused_saying_which(
    case: str, char: str, kind: str
) -> None:
    with pytest.raises(ValidationError) as caught:
        _person_from_json(full_name=f"Nguyễn{char}Văn An")
    errors = caught.value.errors(include_input=False)
    assert [e["loc"] for e in errors] == [("full_name",)]
    assert f"holds {kind} at character 7" in errors[0]["msg"]
    assert "Nguyễn" not in errors[0]["msg"] and "Văn" not in errors[0]["msg"]


def test_an_address_and_a_file_name_are_checked_as_names_are() -> None:
    with pytest.raises(ValidationError, match="bidirectional control character"):
        _person_from_json(address="12 Hàng Bài\u202e, Hà Nội")
    with pytest.raises(ValidationError, match="control character"):
        DocumentRef.model_validate({**_DOC, "name": "hop-dong\x00.pdf"})


@pytest.mark.parametrize(
    "name", ["Nguyễn Văn An", "H'Hen Niê", "Y Moan Ênuôl", "Kpă Y Lang", "Đinh Thị Hoà-Bình", "Lò Văn Giàng"]
)
def test_names_as_registers_spell_them_are_taken(name: str) -> None:
    assert _person_from_json(full_name=name).full_name == name


_DECOMPOSED = "Nguye\u0302\u0303n Va\u0306n An"  # "Nguyễn Văn An" typed with combining marks


def test_a_submitted_name_is_normalised_to_nfc() -> None:
    person = Person.model_validate_json(
        TypeAdapter(dict[str, Any]).dump_json(_person(full_name=_DECOMPOSED)),
        context=submission_context(date(2026, 3, 10)),
    )
    assert person.full_name == "Nguyễn Văn An"


def test_the_length_limit_counts_the_letters_a_name_makes_once_normalised() -> None:
    name = "Ê" * 100  # each typed as E + combining circumflex: 200 code points, 100 letters
    decomposed = unicodedata.normalize("NFD", name)
    assert len(decomposed) == 200
    person = Person.model_validate_json(
        TypeAdapter(dict[str, Any]).dump_json(_person(full_name=decomposed)),
        context=submission_context(date(2026, 3, 10)),
    )
    assert person.full_name == name


def test_events_are_read_as_written_without_normalising() -> None:
    # An event is signed over its parsed form: reading must not change a name written before.
    assert _person_from_json(full_name=_DECOMPOSED).full_name == _DECOMPOSED


def _born(on: str, today: date | None) -> Person:
    document = TypeAdapter(dict[str, Any]).dump_json(
        _person(citizen_id=make_citizen_id("001", date.fromisoformat(on), Sex.MALE, 1), date_of_birth=on)
    )
    context = None if today is None else submission_context(today)
    return Person.model_validate_json(document, context=context)


def test_a_birth_date_may_be_today_but_not_tomorrow() -> None:
    today = date(2026, 3, 10)
    assert _born("2026-03-10", today).date_of_birth == today
    with pytest.raises(ValidationError) as caught:
        _born("2026-03-11", today)
    assert [e["loc"] for e in caught.value.errors()] == [("date_of_birth",)]
    assert "after today (2026-03-10 in Vietnam)" in _message(caught.value)


def test_a_birth_date_is_checked_only_against_a_given_clock() -> None:
    # Events carry no clock: a consumer whose clock lags must still read a birth registered today.
    assert _born("2399-01-01", None).date_of_birth == date(2399, 1, 1)


def _string_leaves(node: Any, path: tuple[str | int, ...] = ()) -> list[tuple[str | int, ...]]:
    if isinstance(node, str):
        return [path]
    if isinstance(node, dict):
        return [leaf for key, value in node.items() for leaf in _string_leaves(value, (*path, key))]
    return []


def _with_inserted(document: dict[str, Any], path: tuple[str | int, ...], char: str) -> dict[str, Any]:
    changed = copy.deepcopy(document)
    node: Any = changed
    for part in path[:-1]:
        node = node[part]
    value = node[path[-1]]
    node[path[-1]] = value[: len(value) // 2] + char + value[len(value) // 2 :]
    return changed


FORM_STRINGS = [(kind, path) for kind in sorted(FORMS) for path in _string_leaves(form_example(kind))]


@pytest.mark.parametrize("char", ["\x00", "\u202e", "\u200b"], ids=["nul", "bidi_override", "zero_width"])
@pytest.mark.parametrize(
    ("kind", "path"), FORM_STRINGS, ids=[f"{k}:{'.'.join(map(str, p))}" for k, p in FORM_STRINGS]
)
def test_no_text_field_of_any_form_takes_an_invisible_character(
    kind: str, path: tuple[str | int, ...], char: str
) -> None:
    form = form_example(kind)
    with pytest.raises(ValidationError) as caught:
        validate_form(kind, _with_inserted(form, path, char))
    assert path in [e["loc"] for e in caught.value.errors()]


@pytest.mark.parametrize(
    "changes",
    [{"citizen_id": "003190123456"}, {"date_of_birth": "1986-03-14"}, {"sex": "female"}],
    ids=["unknown_province", "another_birth_year", "another_sex"],
)
def test_a_refused_person_is_not_described_by_its_own_data(changes: dict[str, Any]) -> None:
    # These messages reach HTTP answers and dead-letter headers, which hold no personal data.
    with pytest.raises(ValidationError) as caught:
        _person_from_json(**changes)
    message = _message(caught.value)
    assert not any(part in message for part in ("003", "1985", "1986", "male"))

"""Schema evolution: real model changes, compared both ways, and the committed snapshots."""

from __future__ import annotations

import shutil
from enum import StrEnum
from pathlib import Path
from typing import Literal

import pytest
from pydantic import BaseModel, ConfigDict, Field
from typer.testing import CliRunner

from schemas.compat import SNAPSHOT_DIR, BreakingChange, SnapshotStatus, check_snapshots, compare
from schemas.envelope import Event
from schemas.events import EVENT_TYPES
from services.tools.cli.schemas_cmd import app

_STRICT = ConfigDict(strict=True, extra="forbid", frozen=True)


class Color(StrEnum):
    RED = "red"
    GREEN = "green"


class ColorWithBlue(StrEnum):
    RED = "red"
    GREEN = "green"
    BLUE = "blue"


class ColorRedOnly(StrEnum):
    RED = "red"


class Party(BaseModel):
    model_config = _STRICT
    name: str
    age: int


class Payload(BaseModel):
    model_config = _STRICT
    code: str
    amount: int
    color: Color
    note: str | None = None
    parties: list[Party]


class PayloadMinusNote(BaseModel):
    model_config = _STRICT
    code: str
    amount: int
    color: Color
    parties: list[Party]


class PayloadRenamed(BaseModel):  # code → procedure_code
    model_config = _STRICT
    procedure_code: str
    amount: int
    color: Color
    note: str | None = None
    parties: list[Party]


class PayloadAmountAsStr(BaseModel):
    model_config = _STRICT
    code: str
    amount: str
    color: Color
    note: str | None = None
    parties: list[Party]


class PayloadNewRequired(BaseModel):
    model_config = _STRICT
    code: str
    amount: int
    color: Color
    note: str | None = None
    parties: list[Party]
    channel: str


class PayloadRedOnly(BaseModel):
    model_config = _STRICT
    code: str
    amount: int
    color: ColorRedOnly
    note: str | None = None
    parties: list[Party]


class PayloadNoteRequired(BaseModel):  # the null member of note's union is gone
    model_config = _STRICT
    code: str
    amount: int
    color: Color
    note: str
    parties: list[Party]


class PartyWithoutAge(BaseModel):
    model_config = _STRICT
    name: str


class PayloadNestedRemoval(BaseModel):
    model_config = _STRICT
    code: str
    amount: int
    color: Color
    note: str | None = None
    parties: list[PartyWithoutAge]


class PayloadShorterCode(BaseModel):
    model_config = _STRICT
    code: str = Field(max_length=10)
    amount: int
    color: Color
    note: str | None = None
    parties: list[Party]


class PayloadWithOptional(BaseModel):
    model_config = _STRICT
    code: str
    amount: int
    color: Color
    note: str | None = None
    parties: list[Party]
    agency_reference: str | None = None


class PayloadWithBlue(BaseModel):
    model_config = _STRICT
    code: str
    amount: int
    color: ColorWithBlue
    note: str | None = None
    parties: list[Party]


class PayloadAmountAsNumber(BaseModel):
    model_config = _STRICT
    code: str
    amount: float
    color: Color
    note: str | None = None
    parties: list[Party]


class PayloadAmountOrStr(BaseModel):
    model_config = _STRICT
    code: str
    amount: int | str
    color: Color
    note: str | None = None
    parties: list[Party]


class SampleEvent(Event):
    event_type: Literal["vn.lienthong.sample.happened"] = "vn.lienthong.sample.happened"
    schema_version: Literal[1] = 1
    data: Payload


class SampleEventNarrowed(Event):
    event_type: Literal["vn.lienthong.sample.happened"] = "vn.lienthong.sample.happened"
    schema_version: Literal[1] = 1
    data: PayloadAmountAsStr


def changes(old: type[BaseModel], new: type[BaseModel]) -> list[BreakingChange]:
    return compare(old.model_json_schema(), new.model_json_schema(), event="sample")


def reasons_by_path(found: list[BreakingChange]) -> dict[str, str]:
    return {c.path: c.reason for c in found}


@pytest.mark.parametrize(
    ("new", "path", "reason"),
    [
        (PayloadMinusNote, "note", "field removed"),
        (PayloadAmountAsStr, "amount", "integer is no longer accepted"),
        (PayloadNewRequired, "channel", "new required field"),
        (PayloadRedOnly, "color", 'enum value removed: "green"'),
        (PayloadNoteRequired, "note", "null is no longer accepted"),
        (PayloadNestedRemoval, "parties[].age", "field removed"),
        (PayloadShorterCode, "code", "maxLength tightened"),
    ],
)
def test_breaking_change_is_named(new: type[BaseModel], path: str, reason: str) -> None:
    found = reasons_by_path(changes(Payload, new))
    assert path in found, found
    assert reason in found[path]


def test_rename_is_a_removal_plus_a_new_required_field() -> None:
    found = reasons_by_path(changes(Payload, PayloadRenamed))
    assert "field removed" in found["code"]
    assert found["procedure_code"] == "new required field"


@pytest.mark.parametrize(
    "new", [PayloadWithOptional, PayloadWithBlue, PayloadAmountAsNumber, PayloadAmountOrStr]
)
def test_compatible_change_passes(new: type[BaseModel]) -> None:
    assert changes(Payload, new) == []


@pytest.mark.parametrize(
    ("old", "path", "reason"),
    [
        (PayloadWithOptional, "agency_reference", "field removed"),  # dropping an optional field
        (PayloadWithBlue, "color", 'enum value removed: "blue"'),
        (PayloadAmountAsNumber, "amount", "number is no longer accepted"),
        (PayloadAmountOrStr, "amount", "string is no longer accepted"),
    ],
)
def test_the_reverse_of_a_compatible_change_is_breaking(old: type[BaseModel], path: str, reason: str) -> None:
    found = reasons_by_path(changes(old, Payload))
    assert reason in found[path]


def test_changes_inside_an_event_name_the_event_and_the_data_path() -> None:
    found = compare(SampleEvent.model_json_schema(), SampleEventNarrowed.model_json_schema())
    assert [(c.event, c.path) for c in found] == [("vn.lienthong.sample.happened", "data.amount")]
    assert str(found[0]).startswith("vn.lienthong.sample.happened: data.amount: type narrowed")


def test_every_current_event_is_compatible_with_itself() -> None:
    for model in EVENT_TYPES.values():
        assert compare(model.model_json_schema(), model.model_json_schema()) == []


def test_committed_snapshots_cover_every_event_and_match() -> None:
    results = check_snapshots()
    assert {(r.event_type, r.status) for r in results} == {
        (event_type, SnapshotStatus.UNCHANGED) for event_type in EVENT_TYPES
    }


def test_schemas_check_passes_on_committed_snapshots() -> None:
    result = CliRunner().invoke(app, ["check"])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("compatible:")


def test_schemas_check_fails_on_a_breaking_snapshot_and_export_refuses(tmp_path: Path) -> None:
    shutil.copytree(SNAPSHOT_DIR, tmp_path, dirs_exist_ok=True)
    # Pretend the committed v1 of dossier.closed had a field the model no longer has.
    target = tmp_path / "vn.lienthong.dossier.closed.v1.json"
    text = target.read_text(encoding="utf-8")
    target.write_text(text.replace('"on_time": {', '"legacy_flag": {"type": "boolean"},\n"on_time": {', 1))
    runner = CliRunner()
    check = runner.invoke(app, ["check", "--snapshots-dir", str(tmp_path)])
    assert check.exit_code == 1
    assert "data.legacy_flag: field removed" in check.output
    export = runner.invoke(app, ["export", "--snapshots-dir", str(tmp_path)])
    assert export.exit_code == 1
    assert "legacy_flag" in target.read_text(encoding="utf-8")


def test_a_new_event_is_reported_as_new_and_export_writes_it(tmp_path: Path) -> None:
    runner = CliRunner()
    check = runner.invoke(app, ["check", "--snapshots-dir", str(tmp_path)])
    assert check.exit_code == 0
    assert "new        vn.lienthong.dossier.received v1" in check.output
    export = runner.invoke(app, ["export", "--snapshots-dir", str(tmp_path)])
    assert export.exit_code == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(f"{t}.v1.json" for t in EVENT_TYPES)

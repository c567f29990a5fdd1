"""The golden examples (``schemas/examples``): every valid one is accepted, every invalid one refused at
the field it names, and each model's JSON Schema example is its first valid one."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import ValidationError

from schemas.envelope import Event
from schemas.errors import SchemaViolation, field_errors
from schemas.events import ALL_EVENTS, parse_event
from schemas.examples import event_golden, form_example, form_golden, golden_names
from schemas.forms import FORMS, FormKind, validate_form

KINDS = sorted(FormKind)
EVENTS = sorted(ALL_EVENTS, key=lambda m: (m.EVENT_TYPE, m.SCHEMA_VERSION))


def refused_at(errors: list[str] | tuple[str, ...]) -> set[str]:
    """The field paths a refusal names (``""`` for the document as a whole)."""
    paths = {entry.split(": ", 1)[0] for entry in errors}
    return {"" if path == "<root>" else path for path in paths}


def raw(document: dict[str, Any]) -> bytes:
    return json.dumps(document, ensure_ascii=False).encode()


def test_there_is_one_golden_file_per_form_kind_and_event_version() -> None:
    expected = {kind.value for kind in FormKind} | {f"{m.EVENT_TYPE}.v{m.SCHEMA_VERSION}" for m in ALL_EVENTS}
    assert set(golden_names()) == expected


@pytest.mark.parametrize("kind", KINDS)
def test_golden_forms(kind: FormKind) -> None:
    golden = form_golden(kind)
    assert golden.valid, "at least one valid form"
    for document in golden.valid:
        assert isinstance(validate_form(kind, document), FORMS[kind])
    assert "record_missing_required_property" in {case.name for case in golden.invalid}
    for case in golden.invalid:
        with pytest.raises(ValidationError) as refused:
            validate_form(kind, case.document)
        assert refused_at(field_errors(refused.value)) == {case.refused_at}, case.name


@pytest.mark.parametrize("model", EVENTS, ids=lambda m: m.EVENT_TYPE)
def test_golden_events(model: type[Event]) -> None:
    golden = event_golden(model.EVENT_TYPE, model.SCHEMA_VERSION)
    assert golden.valid, "at least one valid event"
    for document in golden.valid:
        assert type(parse_event(raw(document))) is model
    assert "record_missing_required_property" in {case.name for case in golden.invalid}
    for case in golden.invalid:
        with pytest.raises(SchemaViolation) as refused:
            parse_event(raw(case.document))
        assert refused_at(refused.value.errors) == {case.refused_at}, case.name


@pytest.mark.parametrize("kind", KINDS)
def test_a_form_models_example_is_its_first_golden_form(kind: FormKind) -> None:
    assert FORMS[kind].model_json_schema()["examples"] == [form_golden(kind).valid[0]]


@pytest.mark.parametrize("model", EVENTS, ids=lambda m: m.EVENT_TYPE)
def test_an_event_models_example_is_its_first_golden_event(model: type[Event]) -> None:
    first = event_golden(model.EVENT_TYPE, model.SCHEMA_VERSION).valid[0]
    assert model.model_json_schema()["examples"] == [first]


def test_each_call_returns_a_fresh_copy() -> None:
    form = form_example(FormKind.MARRIAGE)
    form["husband"]["full_name"] = "changed"
    assert form_example(FormKind.MARRIAGE)["husband"]["full_name"] != "changed"


def test_an_unknown_name_is_a_clear_error() -> None:
    with pytest.raises(LookupError, match="passport"):
        form_golden("passport")


def test_the_loader_needs_nothing_but_the_standard_library() -> None:
    import ast
    import sys
    from pathlib import Path

    import schemas.examples

    tree = ast.parse(Path(schemas.examples.__file__).read_text(encoding="utf-8"))
    imported = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imported |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    assert {name.split(".")[0] for name in imported} <= set(sys.stdlib_module_names) | {"__future__"}

"""Golden examples of the contracts: one JSON file per form kind and per event type and major version.

``<form kind>.json`` (``land_transfer.json``) and ``<event type>.v<major>.json``
(``vn.lienthong.dossier.received.v1.json``, named like its schema snapshot) each hold::

    {"valid": [document, …],
     "invalid": {"record_missing_required_property": {"refused_at": "parcel_id", "document": …}, …}}

The first valid document is the model's JSON Schema example (``schemas.forms``, ``schemas.events``);
an invalid one is named after the edge it tests, and ``refused_at`` is the one field path the model's
refusal names (``""``: the document as a whole). A test checks that every valid document is accepted
and every invalid one refused there. Every function returns a fresh copy: change it at will.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

JsonObject = dict[str, Any]


@dataclass(frozen=True)
class InvalidExample:
    """A document the contract refuses, named after the edge it tests."""

    name: str
    refused_at: str  # the field path the refusal names; "" for the document as a whole
    document: JsonObject


@dataclass(frozen=True)
class Golden:
    """The golden examples of one form kind or one event version."""

    valid: list[JsonObject]
    invalid: list[InvalidExample]


def form_golden(form_kind: str) -> Golden:
    """The golden examples of a form kind (``land_transfer``)."""
    return _golden(f"{form_kind}.json")


def event_golden(event_type: str, major: int = 1) -> Golden:
    """The golden examples of an event type's major version (whole events, envelope and data)."""
    return _golden(f"{event_type}.v{major}.json")


def form_example(form_kind: str) -> JsonObject:
    """The first valid form of a kind: the form model's example."""
    return form_golden(form_kind).valid[0]


def event_example(event_type: str, major: int = 1) -> JsonObject:
    """The first valid event of a type: the event model's example."""
    return event_golden(event_type, major).valid[0]


def golden_names() -> list[str]:
    """Every golden file, without ``.json``: the form kinds and the event versions it holds."""
    files = resources.files(__name__).iterdir()
    return sorted(f.name.removesuffix(".json") for f in files if f.name.endswith(".json"))


def _golden(file_name: str) -> Golden:
    raw = copy.deepcopy(_read(file_name))
    invalid = [
        InvalidExample(name, case["refused_at"], case["document"]) for name, case in raw["invalid"].items()
    ]
    return Golden(raw["valid"], invalid)


@cache
def _read(file_name: str) -> dict[str, Any]:
    path = resources.files(__name__) / file_name
    if not path.is_file():
        raise LookupError(f"no golden examples {file_name!r} in schemas/examples")
    loaded: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return loaded

"""Schema evolution: committed JSON Schema snapshots, and a check that refuses breaking changes.

The rule, within one major ``schema_version`` of an event: a new schema must read every message
written with the old one. Allowed: a new *optional* field, a new enum value, a wider type
(integer → number, a new union member, a looser bound). Breaking: removing or renaming a field, a
new required field, a narrower type, a removed enum value, a tighter bound or pattern.

Because event models forbid unknown fields, a consumer must be upgraded before the producers that
start writing a new optional field or enum value (the "backward" discipline: consumers first).

To make a breaking change, bump the major version: give the event a new class with
``schema_version: Literal[n + 1]`` (keep the old class in ``ALL_EVENTS`` while old messages may
still be read), run ``lienthong schemas export`` — it writes ``<event_type>.v<n+1>.json`` beside
the old snapshot, which stays as the record of the old major — and publish the new major to a
consumer only after it reads both.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, Final

from pydantic import BaseModel

from schemas.envelope import Event
from schemas.events import ALL_EVENTS

SNAPSHOT_DIR: Final = Path(__file__).parent / "snapshots"

Schema = Mapping[str, Any]

_UPPER_BOUNDS: Final = ("maxLength", "maximum", "exclusiveMaximum", "maxItems", "maxProperties")
_LOWER_BOUNDS: Final = ("minLength", "minimum", "exclusiveMinimum", "minItems", "minProperties")


@dataclass(frozen=True)
class BreakingChange:
    """A change that would make the new schema refuse messages written with the old one."""

    event: str
    path: str  # dotted path of the field, "[]" for array items, "{}" for map values; "" is the root
    reason: str

    def __str__(self) -> str:
        return f"{self.event}: {self.path or '<root>'}: {self.reason}"


def compare(old: Schema, new: Schema, *, event: str | None = None) -> list[BreakingChange]:
    """Every breaking change from ``old`` to ``new`` (two JSON Schemas of the same event)."""
    name = event or _event_name(new) or _event_name(old) or "<schema>"
    comparer = _Comparer(old, new, name)
    comparer.node(old, new, "", frozenset())
    return comparer.changes


def _event_name(schema: Schema) -> str | None:
    event_type = schema.get("properties", {}).get("event_type", {})
    const = event_type.get("const") if isinstance(event_type, Mapping) else None
    return const if isinstance(const, str) else schema.get("title")


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _describe(alt: Schema) -> str:
    if "const" in alt:
        return json.dumps(alt["const"], ensure_ascii=False)
    if "enum" in alt:
        return "one of " + ", ".join(json.dumps(v, ensure_ascii=False) for v in alt["enum"])
    return str(alt.get("type", "any"))


class _Comparer:
    def __init__(self, old_root: Schema, new_root: Schema, event: str) -> None:
        self.roots = (old_root, new_root)
        self.event = event
        self.changes: list[BreakingChange] = []

    def report(self, path: str, reason: str) -> None:
        self.changes.append(BreakingChange(self.event, path, reason))

    # -- resolution --

    @staticmethod
    def resolve(node: Schema, root: Schema) -> tuple[Schema, str | None]:
        """Follow ``$ref`` (and a single-member ``allOf``); sibling keywords are kept."""
        ref_name: str | None = None
        for _ in range(64):  # a chain of plain aliases, never a cycle in practice
            if "$ref" in node:
                ref = node["$ref"]
                if not isinstance(ref, str) or not ref.startswith("#/"):
                    raise ValueError(f"only local $ref are supported, got {ref!r}")
                target: Any = root
                for part in ref[2:].split("/"):
                    target = target[part.replace("~1", "/").replace("~0", "~")]
                ref_name = ref
                node = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
            elif isinstance(node.get("allOf"), list) and len(node["allOf"]) == 1:
                node = {**node["allOf"][0], **{k: v for k, v in node.items() if k != "allOf"}}
            else:
                return node, ref_name
        raise ValueError("$ref chain too long")

    def alternatives(self, node: Schema, root: Schema) -> Iterator[tuple[Schema, str | None]]:
        resolved, ref = self.resolve(node, root)
        members = resolved.get("anyOf") or resolved.get("oneOf")
        if isinstance(members, list):
            for member in members:
                yield from self.alternatives(member, root)
        elif isinstance(resolved.get("type"), list):
            for type_name in resolved["type"]:
                yield {**resolved, "type": type_name}, ref
        else:
            yield resolved, ref

    # -- comparison --

    def node(self, old: Schema, new: Schema, path: str, stack: frozenset[tuple[str, str]]) -> None:
        old_root, new_root = self.roots
        new_alts = list(self.alternatives(new, new_root))
        if any(_is_any(alt) for alt, _ in new_alts):
            return
        for old_alt, old_ref in self.alternatives(old, old_root):
            if _is_any(old_alt):
                self.report(path, f"type narrowed: any value was accepted, now only {_summary(new_alts)}")
                continue
            match = self.match(old_alt, new_alts)
            if match is None:
                self.report(
                    path,
                    f"type narrowed: {_describe(old_alt)} is no longer accepted (now {_summary(new_alts)})",
                )
                continue
            new_alt, new_ref = match
            pair = (old_ref or "", new_ref or "")
            if old_ref and new_ref and pair in stack:
                continue  # a recursive model already being compared higher up
            self.same_kind(old_alt, new_alt, path, stack | {pair} if old_ref and new_ref else stack)

    @staticmethod
    def match(old_alt: Schema, new_alts: list[tuple[Schema, str | None]]) -> tuple[Schema, str | None] | None:
        """The new alternative that should accept the old one, if any."""
        old_values = _enum_values(old_alt)
        if old_values is not None:
            # A plain type that holds every old value beats an enum (the enum was widened away).
            for alt in new_alts:
                if _enum_values(alt[0]) is None and all(_type_accepts(alt[0], v) for v in old_values):
                    return alt
            enums = [alt for alt in new_alts if _enum_values(alt[0]) is not None]
            if not enums:
                return None
            return max(
                enums,
                key=lambda alt: len(set(map(_key, _enum_values(alt[0]) or [])) & set(map(_key, old_values))),
            )
        old_type = old_alt.get("type")
        same = [alt for alt in new_alts if alt[0].get("type") == old_type and _enum_values(alt[0]) is None]
        if len(same) > 1 and "title" in old_alt:
            same = [alt for alt in same if alt[0].get("title") == old_alt["title"]] or same
        if same:
            return same[0]
        if old_type == "integer":
            return next((alt for alt in new_alts if alt[0].get("type") == "number"), None)
        return None

    def same_kind(self, old: Schema, new: Schema, path: str, stack: frozenset[tuple[str, str]]) -> None:
        old_values, new_values = _enum_values(old), _enum_values(new)
        if old_values is not None and new_values is not None:
            removed = [v for v in old_values if _key(v) not in set(map(_key, new_values))]
            if removed:
                shown = ", ".join(json.dumps(v, ensure_ascii=False) for v in removed)
                self.report(path, f"enum value removed: {shown}")
            return
        if old_values is not None:
            return  # an enum widened to its plain type
        self.bounds(old, new, path)
        if old.get("type") == "object":
            self.object(old, new, path, stack)
        elif old.get("type") == "array":
            old_items, new_items = old.get("items"), new.get("items")
            if isinstance(old_items, Mapping) and isinstance(new_items, Mapping):
                self.node(old_items, new_items, path + "[]", stack)
            elif new_items is not None and old_items is None:
                self.report(path + "[]", "array items are now constrained")

    def object(self, old: Schema, new: Schema, path: str, stack: frozenset[tuple[str, str]]) -> None:
        old_props: Mapping[str, Schema] = old.get("properties", {})
        new_props: Mapping[str, Schema] = new.get("properties", {})
        old_required, new_required = set(old.get("required", [])), set(new.get("required", []))
        for name in old_props:
            if name not in new_props:
                self.report(_join(path, name), "field removed (a rename is a removal plus an addition)")
        for name in sorted(new_required - old_required):
            if name in old_props:
                self.report(_join(path, name), "field became required")
            else:
                self.report(_join(path, name), "new required field")
        for name, old_field in old_props.items():
            if name in new_props:
                self.node(old_field, new_props[name], _join(path, name), stack)
        old_extra, new_extra = old.get("additionalProperties", True), new.get("additionalProperties", True)
        if new_extra is False and old_extra is not False:
            self.report(path, "extra properties are no longer allowed")
        elif isinstance(old_extra, Mapping) and isinstance(new_extra, Mapping):
            self.node(old_extra, new_extra, path + "{}", stack)

    def bounds(self, old: Schema, new: Schema, path: str) -> None:
        for key in _UPPER_BOUNDS:
            if key in new and (key not in old or new[key] < old[key]):
                self.report(path, f"{key} tightened from {old.get(key, 'none')} to {new[key]}")
        for key in _LOWER_BOUNDS:
            if key in new and (key not in old or new[key] > old[key]):
                self.report(path, f"{key} tightened from {old.get(key, 'none')} to {new[key]}")
        for key in ("pattern", "format"):
            if key in new and new[key] != old.get(key):
                self.report(path, f"{key} changed from {old.get(key, 'none')!r} to {new[key]!r}")


def _is_any(alt: Schema) -> bool:
    return not any(k in alt for k in ("type", "enum", "const", "anyOf", "oneOf", "not"))


def _enum_values(alt: Schema) -> list[Any] | None:
    if "const" in alt:
        return [alt["const"]]
    values = alt.get("enum")
    return list(values) if isinstance(values, list) else None


def _key(value: Any) -> str:
    return json.dumps(value, sort_keys=True)


_PY_TYPES: Final[dict[str, tuple[type, ...]]] = {
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "null": (type(None),),
    "array": (list,),
    "object": (dict,),
}


def _type_accepts(alt: Schema, value: Any) -> bool:
    types = _PY_TYPES.get(str(alt.get("type")))
    if types is None:
        return False
    if isinstance(value, bool) and alt.get("type") != "boolean":
        return False
    return isinstance(value, types)


def _summary(alts: list[tuple[Schema, str | None]]) -> str:
    return " | ".join(_describe(alt) for alt, _ in alts)


# --- snapshots --------------------------------------------------------------------------------


class SnapshotStatus(StrEnum):
    """How an event's current schema relates to its committed snapshot."""

    UNCHANGED = "unchanged"
    COMPATIBLE = "compatible"  # changed, but only additively: refresh the snapshot with export
    BREAKING = "breaking"
    NEW = "new"  # no snapshot yet for this event type or major version
    RETIRED = "retired"  # a snapshot of an older major whose model was dropped after a bump
    REMOVED = "removed"  # a snapshot whose event type no longer exists at all


@dataclass(frozen=True)
class SnapshotCheck:
    """The verdict for one event type and major version."""

    event_type: str
    major: int
    status: SnapshotStatus
    changes: list[BreakingChange] = field(default_factory=list)


def snapshot_name(event_type: str, major: int) -> str:
    """File name of an event's snapshot: ``<event_type>.v<major>.json``."""
    return f"{event_type}.v{major}.json"


def dump_schema(schema: Schema) -> str:
    """A schema as committed: sorted keys, two-space indent, trailing newline."""
    return json.dumps(schema, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def event_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The JSON Schema of an event model, normalised through JSON as it is committed."""
    loaded: dict[str, Any] = json.loads(dump_schema(model.model_json_schema()))
    return loaded


def load_snapshots(directory: Path = SNAPSHOT_DIR) -> dict[tuple[str, int], dict[str, Any]]:
    """Committed snapshots by (event type, major)."""
    snapshots: dict[tuple[str, int], dict[str, Any]] = {}
    for path in sorted(directory.glob("*.v*.json")):
        event_type, _, version = path.name.removesuffix(".json").rpartition(".v")
        if version.isdigit():
            snapshots[(event_type, int(version))] = json.loads(path.read_text(encoding="utf-8"))
    return snapshots


def check_snapshots(
    directory: Path = SNAPSHOT_DIR, models: Iterable[type[Event]] = ALL_EVENTS
) -> list[SnapshotCheck]:
    """Compare every event model with its committed snapshot."""
    snapshots = load_snapshots(directory)
    current = {(m.EVENT_TYPE, m.SCHEMA_VERSION): m for m in models}
    results: list[SnapshotCheck] = []
    for (event_type, major), model in sorted(current.items()):
        schema = event_schema(model)
        old = snapshots.get((event_type, major))
        if old is None:
            results.append(SnapshotCheck(event_type, major, SnapshotStatus.NEW))
            continue
        changes = compare(old, schema, event=f"{event_type} v{major}")
        if changes:
            status = SnapshotStatus.BREAKING
        else:
            status = SnapshotStatus.UNCHANGED if old == schema else SnapshotStatus.COMPATIBLE
        results.append(SnapshotCheck(event_type, major, status, changes))
    current_types = {event_type for event_type, _ in current}
    for event_type, major in sorted(snapshots.keys() - current.keys()):
        if event_type in current_types:
            results.append(SnapshotCheck(event_type, major, SnapshotStatus.RETIRED))
        else:
            change = BreakingChange(f"{event_type} v{major}", "", "event type removed")
            results.append(SnapshotCheck(event_type, major, SnapshotStatus.REMOVED, [change]))
    return results


def export_snapshots(
    directory: Path = SNAPSHOT_DIR, models: Iterable[type[Event]] = ALL_EVENTS
) -> list[Path]:
    """Write the snapshot of every event model; returns the files written or rewritten."""
    directory.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for model in models:
        path = directory / snapshot_name(model.EVENT_TYPE, model.SCHEMA_VERSION)
        text = dump_schema(model.model_json_schema())
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8")
            written.append(path)
    return written

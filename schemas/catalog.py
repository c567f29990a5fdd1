"""The procedure catalog: which agencies a procedure visits, in what order, and in how many days.

The catalog is data (``schemas/data/procedures.yaml``), validated here on load, so an IT team adds
a procedure without touching code. A route is a DAG of steps: a step runs once every step in its
``after`` list is done, so sequential legs and parallel branches that join are both expressible.

Deadlines and shares are whole working days. A "same day" leg (trong ngày) is a share of 0: by the
counting rule in :mod:`schemas.deadlines` it is due the day the leg starts, so half days are not needed.
"""

from __future__ import annotations

from collections.abc import Iterable
from importlib import resources
from pathlib import Path
from typing import Any, Final

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    NonNegativeInt,
    PositiveInt,
    ValidationError,
    model_validator,
)

from schemas.agencies import AGENCY_ACTIONS, Agency

FORM_KINDS: Final[tuple[str, ...]] = (
    "land_transfer",
    "first_land_certificate",
    "marriage",
    "birth",
    "death",
    "household_business",
)


class CatalogError(ValueError):
    """The catalog file is unreadable or invalid; ``problems`` has one readable line per problem."""

    def __init__(self, source: str, problems: Iterable[str]) -> None:
        self.source = source
        self.problems = list(problems)
        lines = "\n".join(f"  - {problem}" for problem in self.problems)
        super().__init__(f"catalog {source}: {len(self.problems)} problem(s)\n{lines}")


def _known_agency(value: Any) -> Any:
    if isinstance(value, str) and value not in {a.value for a in Agency}:
        known = ", ".join(a.value for a in Agency)
        raise ValueError(f"unknown agency {value!r} (known: {known})")
    return value


class Step(BaseModel):
    """One agency leg of a route."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(pattern=r"^[a-z][a-z0-9_]*$", description="unique within the procedure, snake_case")
    agency: Agency
    action: str = Field(min_length=1)
    after: tuple[str, ...] = Field(default=(), description="step ids that must complete first")
    share_working_days: NonNegativeInt = Field(description="this agency's share of the deadline")
    pauses_clock_on_waiting: bool = Field(
        default=False, description="waiting on the citizen at this step (e.g. paying tax) pauses the clock"
    )
    required: bool = Field(default=True, description="False: the dossier may complete without this step")

    @model_validator(mode="before")
    @classmethod
    def _agency_is_known(cls, data: Any) -> Any:
        if isinstance(data, dict) and "agency" in data:
            try:
                _known_agency(data["agency"])
            except ValueError as error:
                raise ValueError(f"agency: {error}") from None
        return data

    @model_validator(mode="after")
    def _action_is_served(self) -> Step:
        served = AGENCY_ACTIONS[self.agency]
        if self.action not in served:
            raise ValueError(
                f"action: {self.action!r} is not served by agency {self.agency.value!r}"
                f" (it serves: {', '.join(sorted(served))})"
            )
        return self


class Procedure(BaseModel):
    """An administrative procedure (thủ tục hành chính) and its route through the agencies."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    code: str = Field(pattern=r"^\d\.\d{6}$", description="national procedure code (mã TTHC)")
    name_vi: str = Field(min_length=1)
    name_en: str = Field(min_length=1)
    lead_agency: Agency
    form_kind: str
    deadline_working_days: PositiveInt
    route: tuple[Step, ...]

    @model_validator(mode="before")
    @classmethod
    def _names_are_known(cls, data: Any) -> Any:
        if isinstance(data, dict):
            if "lead_agency" in data:
                try:
                    _known_agency(data["lead_agency"])
                except ValueError as error:
                    raise ValueError(f"lead_agency: {error}") from None
            kind = data.get("form_kind")
            if isinstance(kind, str) and kind not in FORM_KINDS:
                raise ValueError(f"form_kind: unknown form kind {kind!r} (known: {', '.join(FORM_KINDS)})")
        return data

    @model_validator(mode="after")
    def _route_is_sound(self) -> Procedure:
        problems = _route_problems(self)
        if problems:
            raise ValueError("\n".join(problems))
        return self

    def step(self, step_id: str) -> Step:
        """The step with id ``step_id``; KeyError if the route has none."""
        for step in self.route:
            if step.id == step_id:
                return step
        raise KeyError(f"procedure {self.code} has no step {step_id!r} (steps: {self._step_ids()})")

    def initial_steps(self) -> list[Step]:
        """The steps that start as soon as the dossier is received."""
        return [step for step in self.route if not step.after]

    def ready_steps(self, done: set[str], started: set[str]) -> list[Step]:
        """The steps not yet started (nor done) whose predecessors are all done, in route order."""
        return [
            step
            for step in self.route
            if step.id not in started and step.id not in done and all(p in done for p in step.after)
        ]

    def is_complete(self, done: set[str]) -> bool:
        """Whether every required step is done (optional ones may still lag)."""
        return all(step.id in done for step in self.route if step.required)

    def share_offsets(self) -> dict[str, int]:
        """For each step, the working days from receipt to its end if every leg uses its whole share
        (the longest chain of shares ending with that step)."""
        offsets: dict[str, int] = {}
        for step in _topological(self.route):
            offsets[step.id] = step.share_working_days + max((offsets[p] for p in step.after), default=0)
        return offsets

    def _step_ids(self) -> str:
        return ", ".join(step.id for step in self.route)


def _topological(route: Iterable[Step]) -> list[Step]:
    """Steps so that each comes after its predecessors (the route is known to be acyclic)."""
    by_id = {step.id: step for step in route}
    ordered: list[Step] = []
    seen: set[str] = set()

    def visit(step: Step) -> None:
        if step.id in seen:
            return
        seen.add(step.id)
        for parent in step.after:
            visit(by_id[parent])
        ordered.append(step)

    for step in by_id.values():
        visit(step)
    return ordered


def _find_cycle(route: tuple[Step, ...]) -> list[str] | None:
    by_id = {step.id: step for step in route}
    state: dict[str, int] = {}  # 1 = on the current path, 2 = finished
    path: list[str] = []

    def visit(step_id: str) -> list[str] | None:
        state[step_id] = 1
        path.append(step_id)
        for parent in by_id[step_id].after:
            if parent not in by_id:
                continue
            if state.get(parent) == 1:
                cycle = [*path[path.index(parent) :], parent]
                return list(reversed(cycle))  # in execution order: a → b → a
            if parent not in state and (found := visit(parent)):
                return found
        path.pop()
        state[step_id] = 2
        return None

    for step in route:
        if step.id not in state and (found := visit(step.id)):
            return found
    return None


def _route_problems(procedure: Procedure) -> list[str]:
    route = procedure.route
    if not route:
        return ["route: must have at least one step"]
    problems: list[str] = []
    first_index: dict[str, int] = {}
    for index, step in enumerate(route):
        if step.id in first_index:
            problems.append(
                f"route[{index}].id: duplicate step id {step.id!r} (also route[{first_index[step.id]}])"
            )
        else:
            first_index[step.id] = index
    for index, step in enumerate(route):
        for parent in step.after:
            if parent not in first_index:
                problems.append(
                    f"route[{index}].after: unknown step {parent!r} (steps: {procedure._step_ids()})"
                )
            elif parent == step.id:
                problems.append(f"route[{index}].after: step {step.id!r} waits for itself")
    if problems:
        return problems
    cycle = _find_cycle(route)
    if cycle:
        return [f"route: cycle {' → '.join(cycle)}"]
    by_id = {step.id: step for step in route}
    for index, step in enumerate(route):
        if step.required:
            for parent in step.after:
                if not by_id[parent].required:
                    problems.append(
                        f"route[{index}].after: required step {step.id!r} waits for optional step {parent!r}"
                    )
    offsets = procedure.share_offsets()
    longest = max(offsets, key=offsets.__getitem__)
    if offsets[longest] > procedure.deadline_working_days:
        chain = _chain_to(by_id, offsets, longest)
        problems.append(
            f"route: shares along {' → '.join(chain)} add up to {offsets[longest]} working days,"
            f" more than deadline_working_days {procedure.deadline_working_days}"
        )
    return problems


def _chain_to(by_id: dict[str, Step], offsets: dict[str, int], last: str) -> list[str]:
    chain = [last]
    while by_id[chain[-1]].after:
        chain.append(max(by_id[chain[-1]].after, key=offsets.__getitem__))
    return list(reversed(chain))


class Catalog(BaseModel):
    """Every procedure the center handles."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    procedures: list[Procedure]

    @model_validator(mode="after")
    def _codes_are_unique(self) -> Catalog:
        problems = _duplicate_codes(p.code for p in self.procedures)
        if problems:
            raise ValueError("\n".join(problems))
        return self

    def procedure(self, code: str) -> Procedure:
        """The procedure with national code ``code``; KeyError naming the known codes otherwise."""
        for procedure in self.procedures:
            if procedure.code == code:
                return procedure
        known = ", ".join(p.code for p in self.procedures)
        raise KeyError(f"unknown procedure code {code!r} (known: {known})")


def _duplicate_codes(codes: Iterable[object]) -> list[str]:
    first: dict[object, int] = {}
    problems = []
    for index, code in enumerate(codes):
        if code is None:
            continue
        if code in first:
            problems.append(
                f"procedures[{index}].code: duplicate procedure code {code!r}"
                f" (also procedures[{first[code]}])"
            )
        first.setdefault(code, index)
    return problems


def default_catalog_path() -> Path:
    """The catalog shipped with the package."""
    return Path(str(resources.files("schemas.data").joinpath("procedures.yaml")))


def load_catalog(path: Path | None = None) -> Catalog:
    """Read and validate the catalog at ``path`` (default: the shipped one); CatalogError if invalid."""
    path = path if path is not None else default_catalog_path()
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise CatalogError(str(path), [f"cannot read the file: {error.strerror or error}"]) from error
    return parse_catalog(text, source=str(path))


def parse_catalog(text: str, source: str = "<text>") -> Catalog:
    """Validate a catalog given as YAML text; CatalogError lists every problem found."""
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as error:
        where = getattr(error, "problem_mark", None)
        at = f" at line {where.line + 1}, column {where.column + 1}" if where is not None else ""
        problem = getattr(error, "problem", None) or str(error)
        raise CatalogError(source, [f"not valid YAML{at}: {problem}"]) from error
    if not isinstance(raw, dict):
        raise CatalogError(source, ["the file must be a mapping with a 'procedures' list"])
    try:
        return Catalog.model_validate(raw)
    except ValidationError as error:
        problems = _readable(error, raw)
        # Reported even when the duplicates are invalid in other ways (pydantic then stops early).
        entries = raw.get("procedures")
        if isinstance(entries, list):
            found = _duplicate_codes(e.get("code") if isinstance(e, dict) else None for e in entries)
            problems += [p for p in found if p not in problems]
        raise CatalogError(source, problems) from error


def _readable(error: ValidationError, raw: dict[str, Any]) -> list[str]:
    problems: list[str] = []
    for detail in error.errors():
        loc = list(detail["loc"])
        message = str(detail["msg"]).removeprefix("Value error, ")
        prefix = ""
        if len(loc) >= 2 and loc[0] == "procedures" and isinstance(loc[1], int):
            prefix = _procedure_label(raw, loc[1]) + ": "
            loc = loc[2:]
        path = _path(loc)
        problems.extend(prefix + _join(path, line) for line in message.splitlines())
    return problems


def _join(path: str, message: str) -> str:
    # Our validators start a message with the field it is about ("action: ..."), pydantic's don't.
    names_field = message.split(" ", 1)[0].endswith(":")
    if not path:
        return message
    return f"{path}.{message}" if names_field else f"{path}: {message}"


def _procedure_label(raw: dict[str, Any], index: int) -> str:
    procedures = raw.get("procedures")
    entry = procedures[index] if isinstance(procedures, list) and index < len(procedures) else None
    if isinstance(entry, dict) and entry.get("code"):
        name = entry.get("name_en") or entry.get("name_vi")
        return f"procedure {entry['code']}" + (f" ({name})" if name else "")
    return f"procedures[{index}]"


def _path(loc: list[Any]) -> str:
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text

"""What the counter or the online portal submits, and how it is checked: every wrong field at once.

A body is read once by :func:`read_document`, which refuses, with a sentence saying why, what is not
one sound JSON object: not UTF-8, a byte order mark, NaN or Infinity, a number beyond a double,
an unpaired surrogate, a key given twice, nesting deeper than :data:`MAX_DEPTH`. The procedure code
in it chooses the procedure's submission model (:data:`SUBMISSIONS`: the dossier with that
procedure's form), which validates the whole dossier in the submission context
(:func:`schemas.values.submission_context`): typed text is NFC-normalised and refused when it holds a
character no register takes, and dates of births and deaths are checked against the day it is in
Vietnam. No message repeats a submitted value: they may be personal data.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import date
from types import MappingProxyType
from typing import Any, Final

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model

from schemas.catalog import Catalog, Procedure
from schemas.events import Channel
from schemas.forms import FORMS, UnknownFormKind
from schemas.values import DocumentRef, Person, submission_context

MAX_BODY_BYTES = 256 * 1024  # a dossier is references and form fields; files never travel here
MAX_DEPTH: Final = 32  # a dossier nests four levels (dossier, form, person, value); more is no dossier
MAX_LISTED_ERRORS: Final = 100
UNKNOWN_PROCEDURE: Final = "unknown procedure: GET /procedures lists the codes"
_MAX_SHOWN_KEY: Final = 64  # unknown keys are named in answers, at most this long


class DossierSubmission(BaseModel):
    """A dossier as handed in. Documents are references (sha256, size), never the files."""

    model_config = ConfigDict(extra="forbid")

    procedure_code: str = Field(description="National procedure code, e.g. 9.900001 (see GET /procedures).")
    channel: Channel = Field(default=Channel.COUNTER)
    applicant: Person
    form: dict[str, Any] = Field(description="The procedure's form (its kind is given by the procedure).")
    documents: list[DocumentRef] = Field(default_factory=list, max_length=50)


def _submission_model(kind: str, form: type[BaseModel]) -> type[DossierSubmission]:
    summary = (form.__doc__ or kind).strip().splitlines()[0]
    model: type[DossierSubmission] = create_model(
        form.__name__.removesuffix("Form") + "Submission",
        __base__=DossierSubmission,
        __doc__=f"A dossier of a procedure whose form kind is {str(kind)!r}: {summary}",
        form=(form, Field(description=f"The {str(kind)!r} form.")),
    )
    return model


SUBMISSIONS: Final[Mapping[str, type[DossierSubmission]]] = MappingProxyType(
    {kind: _submission_model(kind, form) for kind, form in FORMS.items()}
)
"""The submission model per form kind: :class:`DossierSubmission` with the kind's form model."""


class FieldError(BaseModel):
    field: str = Field(
        description="Dotted path of the wrong field, e.g. form.transferor.full_name; <body> for the "
        "body as a whole."
    )
    message: str = Field(description="What is wrong with it. Never the value sent (it may be personal data).")


class InvalidSubmission(Exception):
    """A refused body: ``malformed`` when it is no JSON object at all, else the wrong fields.
    ``errors`` lists at most :data:`MAX_LISTED_ERRORS` of the ``count`` found."""

    def __init__(self, errors: list[FieldError], *, malformed: bool = False) -> None:
        self.count = len(errors)
        self.errors = errors[:MAX_LISTED_ERRORS]
        self.malformed = malformed
        super().__init__("; ".join(f"{e.field}: {e.message}" for e in errors))

    @property
    def detail(self) -> str:
        """The answer's one sentence."""
        if self.malformed and self.errors:
            return self.errors[0].message
        plural = "s" if self.count != 1 else ""
        listed = f" (the first {len(self.errors)} are listed)" if self.count > len(self.errors) else ""
        return f"the dossier has {self.count} invalid field{plural}{listed}"


def _malformed(reason: str) -> InvalidSubmission:
    return InvalidSubmission([FieldError(field="<body>", message=reason)], malformed=True)


def _shown(part: object) -> str:
    text = str(part)
    return text if len(text) <= _MAX_SHOWN_KEY else text[:_MAX_SHOWN_KEY] + "…"


def _field_errors(error: ValidationError) -> list[FieldError]:
    return [
        FieldError(
            field=".".join(_shown(p) for p in e["loc"]) or "<body>",
            # pydantic's own message or ours; the input value is left out: it may be personal data.
            message=e["msg"],
        )
        for e in error.errors(include_url=False, include_input=False)
    ]


# --- reading the body -------------------------------------------------------------------------


def _not_json(error: orjson.JSONDecodeError, body: bytes) -> str:
    message = error.msg
    if not body.strip():
        return "the body is empty; send the dossier as a JSON object"
    if "depth limit" in message:
        return f"the body is nested deeper than {MAX_DEPTH} levels"
    if "byte order mark" in message:
        return "the body starts with a byte order mark; send UTF-8 JSON without one"
    if "UTF-8" in message:
        return "the body is not valid UTF-8; send the dossier as UTF-8 JSON"
    if "surrogate" in message:
        return "the body holds an unpaired surrogate escape (\\uD800-\\uDFFF), which is no character"
    if "infinity" in message:
        return "the body holds a number too large for JSON (beyond a double)"
    where = f"line {error.lineno}, column {error.colno}"
    near = body.decode("utf-8", "replace")[max(0, error.pos - 1) : error.pos + 9]  # pos counts characters
    if "NaN" in near or "Infinity" in near:
        return f"the body is not valid JSON ({where}): NaN and Infinity are not JSON numbers"
    return f"the body is not valid JSON ({message.split(':')[0]}, {where})"


def _deeper_than(document: object, limit: int) -> bool:
    """Whether ``document`` nests arrays and objects more than ``limit`` levels (without recursion:
    the document may be 1,024 levels deep)."""
    stack: list[tuple[object, int]] = [(document, 1)]
    while stack:
        node, depth = stack.pop()
        children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else None
        if children is None:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False


class _DuplicateKey(ValueError):
    def __init__(self, key: str) -> None:
        self.key = key


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    document = dict(pairs)
    if len(document) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _DuplicateKey(key)
            seen.add(key)
    return document


_JSON_TYPES: Final = {
    list: "an array",
    str: "a string",
    int: "a number",
    float: "a number",
    bool: "a boolean",
}


def read_document(body: bytes) -> dict[str, Any]:
    """The JSON object ``body`` holds, or :class:`InvalidSubmission` (``malformed``) saying why not.

    orjson reads it first: strict JSON (no NaN, no BOM, UTF-8 only), and it stops at 1,024 levels
    where the standard library would run out of stack. Once the nesting is known to be shallow, the
    standard library reads it again for what orjson lets through: a key given twice (orjson keeps the
    last, another reader the first) and integers beyond 64 bits (orjson makes them floats).
    """
    try:
        first = orjson.loads(body)
    except orjson.JSONDecodeError as error:
        raise _malformed(_not_json(error, body)) from None
    if _deeper_than(first, MAX_DEPTH):
        raise _malformed(f"the body is nested deeper than {MAX_DEPTH} levels")
    try:
        document = json.loads(body, object_pairs_hook=_unique_keys)
    except _DuplicateKey as duplicate:
        raise _malformed(
            f"the key {_shown(duplicate.key)!r} appears twice in one object; send each field once"
        ) from None
    except ValueError:  # e.g. an integer of more than 4,300 digits
        raise _malformed("the body holds a number too long to read") from None
    if not isinstance(document, dict):
        kind = "null" if document is None else _JSON_TYPES.get(type(document), "no object")
        raise _malformed(f"the body must be a JSON object (the dossier), not {kind}")
    return document


# --- checking the dossier ---------------------------------------------------------------------


def check_submission(body: bytes, catalog: Catalog, today: date) -> tuple[DossierSubmission, Procedure]:
    """Read and validate a submission against the contracts and the catalog, or raise
    :class:`InvalidSubmission` naming every wrong field. ``today`` is Vietnam's date now: no birth
    or death may be after it.

    The submission returned carries the form as validated (trimmed, NFC-normalised), as JSON."""
    document = read_document(body)
    errors: list[FieldError] = []
    model = DossierSubmission
    procedure: Procedure | None = None
    code = document.get("procedure_code")
    if isinstance(code, str):
        try:
            procedure = catalog.procedure(code)
        except KeyError:
            errors.append(FieldError(field="procedure_code", message=UNKNOWN_PROCEDURE))
    if procedure is not None:
        if procedure.form_kind in SUBMISSIONS:
            model = SUBMISSIONS[procedure.form_kind]
        else:  # a catalog naming a form this build lacks
            unknown = UnknownFormKind(procedure.form_kind)
            errors.append(FieldError(field="procedure_code", message=str(unknown)))
    try:
        # JSON mode, not the document: strict types (dates as ISO strings) are defined on JSON input.
        checked = model.model_validate_json(body, context=submission_context(today))
    except ValidationError as error:
        errors += _field_errors(error)
    if errors or procedure is None:
        raise InvalidSubmission(errors)
    form = checked.form
    if isinstance(form, BaseModel):
        form = form.model_dump(mode="json", exclude_unset=True)
    submission = DossierSubmission.model_construct(
        procedure_code=checked.procedure_code,
        channel=checked.channel,
        applicant=checked.applicant,
        form=form,
        documents=checked.documents,
    )
    return submission, procedure

"""What the counter or the online portal submits, and how it is checked: every wrong field at once."""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from schemas.catalog import Catalog, Procedure
from schemas.events import Channel
from schemas.forms import UnknownFormKind, validate_form
from schemas.values import DocumentRef, Person

MAX_BODY_BYTES = 256 * 1024  # a dossier is references and form fields; files never travel here


class DossierSubmission(BaseModel):
    """A dossier as handed in. Documents are references (sha256, size), never the files."""

    model_config = ConfigDict(extra="forbid")

    procedure_code: str = Field(description="National procedure code, e.g. 9.900001 (see GET /procedures).")
    channel: Channel = Field(default=Channel.COUNTER)
    applicant: Person
    form: dict[str, Any] = Field(description="The procedure's form (its kind is given by the procedure).")
    documents: list[DocumentRef] = Field(default_factory=list, max_length=50)


class FieldError(BaseModel):
    field: str
    message: str


class InvalidSubmission(Exception):
    def __init__(self, errors: list[FieldError]) -> None:
        self.errors = errors
        super().__init__("; ".join(f"{e.field}: {e.message}" for e in errors))


def _field_errors(error: ValidationError, prefix: str = "") -> list[FieldError]:
    return [
        FieldError(
            field=prefix + (".".join(str(p) for p in e["loc"]) or "<body>"),
            # pydantic's own message; the input value is left out: it may be personal data.
            message=e["msg"],
        )
        for e in error.errors(include_url=False, include_input=False)
    ]


def check_submission(body: bytes, catalog: Catalog) -> tuple[DossierSubmission, Procedure]:
    """Parse and validate a submission against the contracts and the catalog, or raise
    :class:`InvalidSubmission` naming every wrong field."""
    errors: list[FieldError] = []
    try:
        submission = DossierSubmission.model_validate_json(body)
    except ValidationError as error:
        errors = _field_errors(error)
        submission = None
    raw_code, raw_form = _peek(body)
    procedure: Procedure | None = None
    if isinstance(raw_code, str):
        try:
            procedure = catalog.procedure(raw_code)
        except KeyError:
            errors.append(FieldError(field="procedure_code", message=f"unknown procedure {raw_code!r}"))
    if procedure is not None and isinstance(raw_form, dict):
        try:
            validate_form(procedure.form_kind, raw_form)
        except ValidationError as error:
            errors += _field_errors(error, prefix="form.")
        except UnknownFormKind as error:  # a catalog naming a form this build lacks
            errors.append(FieldError(field="procedure_code", message=str(error)))
    if errors or submission is None or procedure is None:
        raise InvalidSubmission(errors)
    return submission, procedure


def _peek(body: bytes) -> tuple[object, object]:
    """The procedure code and form as sent, to check them even when other fields are wrong."""
    try:
        document = json.loads(body)
    except ValueError:
        return None, None
    if not isinstance(document, dict):
        return None, None
    return document.get("procedure_code"), document.get("form")

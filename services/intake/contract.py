"""Intake's HTTP contract as its OpenAPI document states it: the bodies, the answers, the refusals.

``POST /dossiers`` reads its body itself (the Idempotency-Key is bound to the exact bytes), so
FastAPI cannot infer the request body: :func:`submission_request_body` states it, one schema per
form kind chosen by the procedure code (a ``oneOf`` with a discriminator mapping every catalog code),
and :func:`install_schemas` adds the models it refers to to the document's components.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, Final

from fastapi import FastAPI
from pydantic import BaseModel, Field
from pydantic.json_schema import models_json_schema

from schemas.catalog import Catalog
from services.intake.submission import MAX_BODY_BYTES, MAX_DEPTH, SUBMISSIONS, FieldError

_REF: Final = "#/components/schemas/{model}"


class Problem(BaseModel):
    """Every refusal: one sentence and, for a dossier with wrong fields, each of them.
    No refusal repeats a submitted value."""

    detail: str = Field(description="What is wrong, in one sentence.")
    errors: list[FieldError] | None = Field(
        default=None, description="The wrong fields (at most 100), when the body was a JSON object."
    )


class StatusText(BaseModel):
    vi: str
    en: str


class DossierAccepted(BaseModel):
    """The appointment receipt: the dossier's id and code, its national status and its due date."""

    dossier_id: str = Field(description="The dossier's id (a UUID) on the bus and in the tracker.")
    dossier_code: str = Field(description="Receipt code (mã hồ sơ): LT-YYMMDD-NNNNNN.")
    procedure_code: str
    status: int = Field(description="National dossier status: 2, accepted at the desk.")
    status_text: StatusText
    received_at: str = Field(description="When intake received it (ISO 8601, UTC).")
    due_date: str = Field(description="Statutory due date as printed on the receipt (dd/mm/yyyy).")
    due_at: str = Field(description="The due moment (ISO 8601, Vietnam's time).")


class RouteStepView(BaseModel):
    id: str
    agency: str
    action: str
    after: list[str] = Field(description="Steps that must complete first.")
    share_working_days: int
    required: bool


class ProcedureView(BaseModel):
    """A procedure of the catalog: its form kind, its statutory deadline and its route."""

    code: str
    name_vi: str
    name_en: str
    lead_agency: str
    form_kind: str = Field(description="The form POST /dossiers expects in `form` for this procedure.")
    deadline_working_days: int
    route: list[RouteStepView]
    example: str = Field(description="Where a dossier for this procedure that intake accepts is.")


def _problem(description: str) -> dict[str, Any]:
    return {"model": Problem, "description": description}


SUBMIT_RESPONSES: Final[dict[int | str, dict[str, Any]]] = {
    201: {
        "model": DossierAccepted,
        "description": "Accepted, or a retry of an accepted dossier (same key, same body).",
        "headers": {
            "Idempotent-Replayed": {
                "description": "Present on a retry: the dossier was accepted before, nothing new was made.",
                "schema": {"type": "string", "enum": ["true"]},
            }
        },
    },
    400: _problem("The Idempotency-Key header is missing or not 1-200 visible ASCII characters."),
    401: _problem("Where intake authenticates client systems: no access token, or one that is not valid."),
    403: _problem(
        "Where intake authenticates client systems: this client may not submit that channel or procedure."
    ),
    413: _problem(f"The body is larger than {MAX_BODY_BYTES} bytes."),
    415: _problem("The body is not declared as Content-Type: application/json (UTF-8)."),
    422: _problem(
        "The dossier is refused: the body is no JSON object (not UTF-8, a byte order mark, NaN, a key "
        f"given twice, nested deeper than {MAX_DEPTH} levels), a field is wrong (each is listed in "
        "errors: a type, a code, a character no register takes, a date after today), or the "
        "Idempotency-Key was used for another dossier."
    ),
}
PROCEDURE_RESPONSES: Final[dict[int | str, dict[str, Any]]] = {404: _problem("No procedure has this code.")}


def _submission_schemas(catalog: Catalog) -> tuple[dict[str, Any], dict[str, Any]]:
    codes: dict[str, list[str]] = {}
    for procedure in catalog.procedures:
        if procedure.form_kind in SUBMISSIONS:
            codes.setdefault(procedure.form_kind, []).append(procedure.code)
    models = [SUBMISSIONS[kind] for kind in codes]
    _, top = models_json_schema([(m, "validation") for m in models], ref_template=_REF)
    definitions: dict[str, Any] = top.get("$defs", {})
    mapping: dict[str, str] = {}
    for kind, model in zip(codes, models, strict=True):
        properties = definitions[model.__name__]["properties"]
        properties["procedure_code"]["enum"] = codes[kind]
        mapping.update({code: _REF.format(model=model.__name__) for code in codes[kind]})
    schema = {
        "oneOf": [{"$ref": _REF.format(model=m.__name__)} for m in models],
        "discriminator": {"propertyName": "procedure_code", "mapping": mapping},
    }
    return schema, definitions


def submission_request_body(catalog: Catalog) -> dict[str, Any]:
    """The ``requestBody`` of ``POST /dossiers`` (for ``openapi_extra``)."""
    schema, _ = _submission_schemas(catalog)
    return {
        "required": True,
        "description": "The dossier. Its procedure code (GET /procedures) decides the form kind and "
        "so the schema of `form`; GET /procedures/{code}/example gives one intake accepts. Text a "
        "person types is normalised to NFC and refused when it holds control, bidirectional, "
        "zero-width or other invisible characters, or private-use or unassigned code points; dates of "
        "births and deaths may not be after today in Vietnam.",
        "content": {"application/json": {"schema": schema}},
    }


def install_schemas(app: FastAPI, catalog: Catalog) -> None:
    """Add the submission models :func:`submission_request_body` refers to to ``app``'s OpenAPI
    components (FastAPI adds only the models of the bodies it reads itself)."""
    _, definitions = _submission_schemas(catalog)
    generate: Callable[[], dict[str, Any]] = app.openapi

    def openapi() -> dict[str, Any]:
        document = generate()
        components = document.setdefault("components", {}).setdefault("schemas", {})
        for name, definition in definitions.items():
            components.setdefault(name, definition)
        return document

    app.openapi = openapi  # type: ignore[method-assign]


# --- content type -----------------------------------------------------------------------------

_TOKEN: Final = re.compile(r"[A-Za-z0-9!#$&^_.+-]{1,64}")


def _named(value: str, what: str) -> str:
    return value if _TOKEN.fullmatch(value.replace("/", "", 1)) else f"the {what} sent"


def refused_media_type(content_type: str | None) -> str | None:
    """Why a body declared with ``content_type`` is not taken (415), or None for JSON in UTF-8."""
    if content_type is None or not content_type.strip():
        return "the body has no Content-Type; send the dossier as application/json"
    media_type, *parameters = (part.strip() for part in content_type.split(";"))
    if media_type.lower() != "application/json":
        return f"intake takes only application/json, not {_named(media_type, 'media type')}"
    for parameter in parameters:
        name, _, value = parameter.partition("=")
        charset = value.strip().strip('"')
        if name.strip().lower() == "charset" and charset.lower() not in ("utf-8", "utf8"):
            return f"intake takes only UTF-8 JSON, not {_named(charset, 'charset')}"
    return None

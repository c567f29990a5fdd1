"""Intake's HTTP API: ``POST /dossiers`` (the counter's and the online portal's door into the bus) and
the procedure catalog, with every refusal a 4xx that says why."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import FastAPI, Header, Request
from fastapi.responses import JSONResponse

from schemas.catalog import Procedure
from schemas.events import Channel
from services.intake.auth import SubmissionAuth
from services.intake.contract import (
    PROCEDURE_RESPONSES,
    SUBMIT_RESPONSES,
    ProcedureView,
    install_schemas,
    refused_media_type,
    submission_request_body,
)
from services.intake.examples import ProcedureExample, example
from services.intake.intake import Intake
from services.intake.store import KeyReused
from services.intake.submission import (
    MAX_BODY_BYTES,
    FieldError,
    InvalidSubmission,
)
from services.runtime.observe.metrics import METRICS, RejectionKind
from services.runtime.storage.outbox import OutboxRelay

log = logging.getLogger(__name__)


def _problem(status: int, detail: str, errors: list[FieldError] | None = None) -> JSONResponse:
    body: dict[str, Any] = {"detail": detail}
    if errors is not None:
        body["errors"] = [e.model_dump() for e in errors]
    return JSONResponse(status_code=status, content=body)


_UNKNOWN_PROCEDURE = "no procedure has this code; GET /procedures lists them"
MAX_KEY_LENGTH = 200
_KEY = re.compile(rf"[\x20-\x7e]{{1,{MAX_KEY_LENGTH}}}")


async def _read_body(request: Request, limit: int) -> bytes | None:
    """The body, or None as soon as it is longer than ``limit`` (whatever Content-Length said)."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def rejection_kind(invalid: InvalidSubmission) -> RejectionKind:
    """Why a submission was refused, as the bounded ``reason_kind`` label."""
    if invalid.malformed:
        return RejectionKind.MALFORMED
    if any(e.field == "procedure_code" and e.message.startswith("unknown procedure") for e in invalid.errors):
        return RejectionKind.UNKNOWN_PROCEDURE
    return RejectionKind.INVALID_FIELDS


def _channel(body: bytes) -> Channel:
    try:
        return Channel(json.loads(body).get("channel", Channel.COUNTER))
    except (ValueError, AttributeError):
        return Channel.COUNTER


def procedure_view(procedure: Procedure) -> dict[str, Any]:
    return {
        "code": procedure.code,
        "name_vi": procedure.name_vi,
        "name_en": procedure.name_en,
        "lead_agency": procedure.lead_agency.value,
        "form_kind": procedure.form_kind,
        "deadline_working_days": procedure.deadline_working_days,
        "example": f"/procedures/{procedure.code}/example",
        "route": [
            {
                "id": step.id,
                "agency": step.agency.value,
                "action": step.action,
                "after": list(step.after),
                "share_working_days": step.share_working_days,
                "required": step.required,
            }
            for step in procedure.route
        ],
    }


def utc_now() -> datetime:
    return datetime.now(UTC)


def add_routes(
    app: FastAPI,
    intake: Intake,
    relay: OutboxRelay | None,
    *,
    now: Callable[[], datetime] = utc_now,
    auth: SubmissionAuth | None = None,
) -> None:
    """The routes; with ``auth``, POST /dossiers takes only client systems with a valid token that the
    client map lets submit the dossier's channel and procedure (see :mod:`services.intake.auth`)."""
    install_schemas(app, intake.catalog)

    @app.get("/procedures", tags=["catalog"], response_model=list[ProcedureView])
    async def list_procedures() -> list[dict[str, Any]]:
        """The procedure catalog: codes, names, routes and statutory deadlines."""
        return [procedure_view(p) for p in intake.catalog.procedures]

    @app.get(
        "/procedures/{code}", tags=["catalog"], response_model=ProcedureView, responses=PROCEDURE_RESPONSES
    )
    async def get_procedure(code: str) -> Any:
        """One procedure of the catalog."""
        try:
            return procedure_view(intake.catalog.procedure(code))
        except KeyError:
            return _problem(404, _UNKNOWN_PROCEDURE)

    @app.get(
        "/procedures/{code}/example",
        tags=["catalog"],
        response_model=ProcedureExample,
        responses=PROCEDURE_RESPONSES,
    )
    async def get_example(code: str) -> Any:
        """A dossier for this procedure that intake accepts as it is, and what the agencies check
        beyond the form; for the land procedures, the parcels the land sandbox knows."""
        try:
            procedure = intake.catalog.procedure(code)
        except KeyError:
            return _problem(404, _UNKNOWN_PROCEDURE)
        return example(procedure) or _problem(404, "this procedure's form has no example")

    @app.post(
        "/dossiers",
        status_code=201,
        tags=["dossiers"],
        response_model=None,
        responses=SUBMIT_RESPONSES,
        openapi_extra={"requestBody": submission_request_body(intake.catalog)},
    )
    async def submit_dossier(
        request: Request,
        idempotency_key: Annotated[
            str | None,
            Header(
                alias="Idempotency-Key",
                description="One unique value per dossier, 1-200 visible ASCII characters.",
                json_schema_extra={"minLength": 1, "maxLength": MAX_KEY_LENGTH},
            ),
        ] = None,
    ) -> JSONResponse:
        """Receive a dossier. Send a unique Idempotency-Key: a retry with the same key and body returns
        the same dossier; the same key with another body is refused. Where intake authenticates client
        systems, send their access token (Authorization: Bearer)."""
        submitted_by: str | None = None
        if auth is not None:
            client = await auth.client_id(request.headers.get("authorization"))
            if isinstance(client, JSONResponse):
                return client
            submitted_by = client
        if not idempotency_key or not idempotency_key.strip():
            METRICS.intake_rejected(RejectionKind.MISSING_IDEMPOTENCY_KEY)
            return _problem(400, "the Idempotency-Key header is required (one unique value per dossier)")
        if not _KEY.fullmatch(idempotency_key):
            METRICS.intake_rejected(RejectionKind.INVALID_IDEMPOTENCY_KEY)
            return _problem(
                400, f"the Idempotency-Key header must be 1-{MAX_KEY_LENGTH} visible ASCII characters"
            )
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
            METRICS.intake_rejected(RejectionKind.TOO_LARGE)
            return _problem(413, f"the dossier is larger than {MAX_BODY_BYTES} bytes")
        refused = refused_media_type(request.headers.get("content-type"))
        if refused is not None:
            METRICS.intake_rejected(RejectionKind.UNSUPPORTED_MEDIA_TYPE)
            return _problem(415, refused)
        body = await _read_body(request, MAX_BODY_BYTES)
        if body is None:
            METRICS.intake_rejected(RejectionKind.TOO_LARGE)
            return _problem(413, f"the dossier is larger than {MAX_BODY_BYTES} bytes")
        if auth is not None and submitted_by is not None:
            refused_client = auth.refusal(submitted_by, body)
            if refused_client is not None:
                return refused_client
        try:
            response, created = intake.accept(idempotency_key, body, now(), submitted_by=submitted_by)
        except InvalidSubmission as invalid:
            METRICS.intake_rejected(rejection_kind(invalid))
            return _problem(422, invalid.detail, invalid.errors)
        except KeyReused:
            METRICS.intake_rejected(RejectionKind.IDEMPOTENCY_CONFLICT)
            return _problem(422, "this Idempotency-Key was already used for a different dossier")
        if created:
            METRICS.dossier_received(str(response["procedure_code"]), _channel(body))
            log.info(
                "dossier received",
                extra={"dossier_id": response["dossier_id"], "procedure": response["procedure_code"]},
            )
            if relay is not None:
                relay.wake()
        headers = {} if created else {"Idempotent-Replayed": "true"}
        return JSONResponse(status_code=201, content=response, headers=headers)

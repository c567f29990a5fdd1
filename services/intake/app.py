"""The intake service: the counter's and the online portal's door into the bus.

``POST /dossiers`` checks a dossier against the catalog and the contracts, gives it its receipt code
and statutory due date, stores it under its Idempotency-Key together with the ``DossierReceived``
event (outbox), and answers 201. The same key never makes a second dossier, even across restarts.
"""

from __future__ import annotations

import json
import logging
import re
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import FastAPI, Header, Request
from fastapi.responses import JSONResponse
from pydantic import Field

from schemas.catalog import Catalog, Procedure, load_catalog
from schemas.deadlines import counting_starts, due_date
from schemas.events import Channel, DossierReceived, DossierReceivedData
from schemas.forms import FormKind
from schemas.status import NationalStatus
from schemas.topics import DOSSIER_RECEIVED
from schemas.workdays import WorkingCalendar, default_calendar
from services.intake.contract import (
    PROCEDURE_RESPONSES,
    SUBMIT_RESPONSES,
    ProcedureView,
    install_schemas,
    refused_media_type,
    submission_request_body,
)
from services.intake.examples import ProcedureExample, example
from services.intake.store import IntakeStore, KeyReused, request_hash
from services.intake.submission import (
    MAX_BODY_BYTES,
    DossierSubmission,
    FieldError,
    InvalidSubmission,
    check_submission,
)
from services.runtime.kafka import make_broker, outbox_relay
from services.runtime.metrics import METRICS, RejectionKind, Service
from services.runtime.outbox import OutboxRelay
from services.runtime.records import event_record
from services.runtime.service import build_service_app
from services.runtime.settings import ServiceSettings
from services.runtime.tracing import start_trace

PRODUCER = "intake"

log = logging.getLogger(__name__)


class IntakeSettings(ServiceSettings):
    port: int = Field(default=8000)


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


class Intake:
    """Accepting one dossier: numbering, deadlines, the event, the idempotent store."""

    def __init__(
        self, store: IntakeStore, catalog: Catalog, calendar: WorkingCalendar, topic_prefix: str
    ) -> None:
        self.store = store
        self.catalog = catalog
        self.calendar = calendar
        self.topic = topic_prefix + DOSSIER_RECEIVED
        self.traceparent: str | None = None  # the trace a new dossier starts (when tracing is on)

    def accept(self, key: str, body: bytes, now: datetime) -> tuple[dict[str, Any], bool]:
        with start_trace("dossier received", PRODUCER) as traceparent:
            self.traceparent = traceparent
            try:
                return self._accept(key, body, now)
            finally:
                self.traceparent = None

    def _accept(self, key: str, body: bytes, now: datetime) -> tuple[dict[str, Any], bool]:
        stored = self.store.find(key)
        body_hash = request_hash(body)
        if stored is not None and stored.request_hash == body_hash:
            return stored.response, False  # a retry of the same submission: no need to re-validate
        local_day = self.calendar.local(now).date()
        submission, procedure = check_submission(body, self.catalog, today=local_day)

        def build(number: int) -> tuple[str, dict[str, Any], list[Any]]:
            return self._build(submission, procedure, now, f"LT-{local_day:%y%m%d}-{number:06d}")

        return self.store.accept(key, body_hash, local_day, build)

    def _build(
        self, submission: DossierSubmission, procedure: Procedure, now: datetime, code: str
    ) -> tuple[str, dict[str, Any], list[Any]]:
        clock_starts = self.calendar.closing(counting_starts(now, self.calendar)).astimezone(UTC)
        due = due_date(now, procedure.deadline_working_days, self.calendar)
        dossier_id = uuid.uuid4()
        traceparent = self.traceparent
        data = DossierReceivedData(
            dossier_code=code,
            procedure_code=procedure.code,
            channel=submission.channel,
            applicant=submission.applicant,
            form_kind=FormKind(procedure.form_kind),
            form=submission.form,
            documents=submission.documents,
            received_at=now,
            clock_starts_at=max(now, clock_starts),
            due_at=due.at.astimezone(UTC),
        )
        event = DossierReceived.create(
            data=data, producer=PRODUCER, dossier_id=dossier_id, occurred_at=now, traceparent=traceparent
        )
        response = {
            "dossier_id": str(dossier_id),
            "dossier_code": code,
            "procedure_code": procedure.code,
            "status": int(NationalStatus.ACCEPTED),
            "status_text": {"vi": NationalStatus.ACCEPTED.vi, "en": NationalStatus.ACCEPTED.en},
            "received_at": now.isoformat(),
            "due_date": due.on.strftime("%d/%m/%Y"),
            "due_at": due.at.isoformat(),
        }
        return str(dossier_id), response, [event_record(event, self.topic)]


def _utc_now() -> datetime:
    return datetime.now(UTC)


def add_routes(
    app: FastAPI, intake: Intake, relay: OutboxRelay | None, *, now: Callable[[], datetime] = _utc_now
) -> None:
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
        the same dossier; the same key with another body is refused."""
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
        try:
            response, created = intake.accept(idempotency_key, body, now())
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


def build_app(settings: IntakeSettings | None = None, *, now: Callable[[], datetime] = _utc_now) -> FastAPI:
    settings = settings or IntakeSettings()
    store = IntakeStore(settings.data_dir / "intake.db")
    broker = make_broker(settings, client_id="intake")
    relay = outbox_relay(store.outbox, settings, client_id="intake", broker=broker, service=Service.INTAKE)
    catalog = load_catalog(settings.catalog_path)
    intake = Intake(store, catalog, default_calendar(), settings.topic_prefix)
    # Publishes DossierReceived (documented in the AsyncAPI document; sent through the outbox relay).
    broker.publisher(
        settings.topic_prefix + DOSSIER_RECEIVED,
        description="Dossiers accepted at the desk or online.",
        schema=DossierReceived,
    )
    app = build_service_app(
        "intake",
        broker,
        description="Receives dossiers from the counter and the online portal.",
        kind=Service.INTAKE,
        procedures=[p.code for p in catalog.procedures],
        loops=[relay.run],
        kafka=settings,
    )
    app.state.store = store
    add_routes(app, intake, relay, now=now)
    return app

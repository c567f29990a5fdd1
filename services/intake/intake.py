"""Accepting one dossier: its receipt code and statutory due date, its ``DossierReceived`` event, and the
idempotent store that keeps it under its Idempotency-Key with the event (outbox) in one transaction.
The same key never makes a second dossier, even across restarts."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from schemas.catalog import Catalog, Procedure
from schemas.deadlines import counting_starts, due_date
from schemas.events import DossierReceived, DossierReceivedData
from schemas.forms import FormKind
from schemas.status import NationalStatus
from schemas.topics import DOSSIER_RECEIVED
from schemas.workdays import WorkingCalendar
from services.intake.store import IntakeStore, request_hash
from services.intake.submission import DossierSubmission, check_submission
from services.runtime.consume.records import event_record
from services.runtime.observe.tracing import start_trace

PRODUCER = "intake"


class Intake:
    """Accepting one dossier: numbering, deadlines, the event, the idempotent store."""

    def __init__(
        self, store: IntakeStore, catalog: Catalog, calendar: WorkingCalendar, topic_prefix: str
    ) -> None:
        self.store = store
        self.catalog = catalog
        self.calendar = calendar
        self.topic = topic_prefix + DOSSIER_RECEIVED

    def accept(
        self, key: str, body: bytes, now: datetime, *, submitted_by: str | None = None
    ) -> tuple[dict[str, Any], bool]:
        """The dossier's receipt, and whether this call created it (False: the key's earlier answer).
        ``submitted_by``: the authenticated client system's id, recorded in the event. A new dossier
        starts its trace here (when tracing is on)."""
        with start_trace("dossier received", PRODUCER) as traceparent:
            return self._accept(key, body, now, traceparent, submitted_by)

    def _accept(
        self, key: str, body: bytes, now: datetime, traceparent: str | None, submitted_by: str | None
    ) -> tuple[dict[str, Any], bool]:
        stored = self.store.find(key)
        body_hash = request_hash(body)
        if stored is not None and stored.request_hash == body_hash:
            return stored.response, False  # a retry of the same submission: no need to re-validate
        local_day = self.calendar.local(now).date()
        submission, procedure = check_submission(body, self.catalog, today=local_day)

        def build(number: int) -> tuple[str, dict[str, Any], list[Any]]:
            code = f"LT-{local_day:%y%m%d}-{number:06d}"
            return self._build(submission, procedure, now, code, traceparent, submitted_by)

        return self.store.accept(key, body_hash, local_day, build)

    def _build(
        self,
        submission: DossierSubmission,
        procedure: Procedure,
        now: datetime,
        code: str,
        traceparent: str | None,
        submitted_by: str | None,
    ) -> tuple[str, dict[str, Any], list[Any]]:
        clock_starts = self.calendar.closing(counting_starts(now, self.calendar)).astimezone(UTC)
        due = due_date(now, procedure.deadline_working_days, self.calendar)
        dossier_id = uuid.uuid4()
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
            submitted_by=submitted_by,
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

"""Valid events for tests, built from the contracts' golden examples (``schemas/examples``)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from schemas.catalog import load_catalog
from schemas.deadlines import due_date
from schemas.envelope import Event
from schemas.events import (
    DossierReceived,
    DossierReceivedData,
    HandoffOutcomeData,
    HandoffReported,
    HandoffRequested,
    OutcomeKind,
)
from schemas.examples import form_example


def example_form(form_kind: str) -> dict[str, Any]:
    """The golden valid form of ``form_kind``, a fresh copy."""
    return form_example(form_kind)


def dossier_received(
    procedure_code: str, *, received_at: datetime | None = None, form: dict[str, Any] | None = None
) -> DossierReceived:
    procedure = load_catalog().procedure(procedure_code)
    received_at = received_at or datetime(2026, 11, 23, 2, 0, tzinfo=UTC)  # a Monday, 09:00 in Hà Nội
    form = form or example_form(procedure.form_kind)
    applicant = next(v for v in form.values() if isinstance(v, dict) and "citizen_id" in v)
    data = DossierReceivedData.model_validate(
        {
            "dossier_code": f"LT-261123-{uuid.uuid4().int % 1_000_000:06d}",
            "procedure_code": procedure_code,
            "channel": "counter",
            "applicant": applicant,
            "form_kind": procedure.form_kind,
            "form": form,
            "documents": [],
            "received_at": received_at,
            "clock_starts_at": received_at,
            "due_at": due_date(received_at, procedure.deadline_working_days).at,
        },
        strict=False,  # the form's examples are JSON-shaped (ISO dates, enum values)
    )
    return DossierReceived.create(
        data=data, producer="intake", dossier_id=uuid.uuid4(), occurred_at=received_at
    )


def outcome_for(
    request: HandoffRequested,
    kind: OutcomeKind | str,
    *,
    after: timedelta = timedelta(minutes=5),
    reason: str | None = None,
    result: dict[str, Any] | None = None,
    error_class: str | None = None,
) -> HandoffReported:
    data = HandoffOutcomeData(
        handoff_id=request.data.handoff_id,
        step_id=request.data.step_id,
        agency=request.data.agency,
        action=request.data.action,
        kind=OutcomeKind(kind),
        reason=reason,
        result=result or {},
        error_class=error_class,
    )
    return HandoffReported.create(
        data=data,
        producer=f"connector.{request.data.agency.value}",
        caused_by=request,
        occurred_at=request.occurred_at + after,
    )


def of_type(events: list[Event], kind: type[Event]) -> list[Any]:
    return [e for e in events if isinstance(e, kind)]

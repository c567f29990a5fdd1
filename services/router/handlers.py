"""The router's handlers (:data:`HANDLERS`): load the dossier, let ``routing`` decide, turn the decisions
into events."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

from schemas.authority import check_outcome
from schemas.catalog import Catalog, Procedure
from schemas.deadlines import DeadlineClock, leg_due
from schemas.deadlines import Pause as ClockPause
from schemas.envelope import Event
from schemas.errors import EventContractError
from schemas.events import (
    ClosedResult,
    DossierClosed,
    DossierClosedData,
    DossierReceived,
    DossierStatusChanged,
    DossierStatusChangedData,
    HandoffReported,
    HandoffRequested,
    HandoffRequestedData,
)
from schemas.forms import FormKind
from schemas.topics import DOSSIER_CLOSED, DOSSIER_STATUS, requests_topic
from schemas.workdays import WorkingCalendar
from services.router import routing
from services.router.routing import ChangeStatus, CloseDossier, Decision, Outcome, RequestHandoff
from services.router.state import DossierState, Pause
from services.router.store import RouterStore
from services.runtime.consume.consumer import Context, Effect, Handlers
from services.runtime.consume.ids import name_based_id
from services.runtime.consume.records import event_record
from services.runtime.storage.outbox import OutgoingRecord

PRODUCER = "router"
# Emitted event ids derive from the cause, so deciding twice (after a crash) emits the same events.
_EVENT_NAMESPACE = uuid.UUID("0b7f3f0e-9c2a-4b8e-a7d1-5e3c9f1a2b44")


class UnknownProcedure(EventContractError):
    """The dossier names a procedure this router's catalog does not have."""


class UnknownDossier(EventContractError):
    """An outcome for a dossier no router store holds: nothing can route it, and it must not vanish."""


class CatalogMismatch(Exception):
    """The dossier's stored route names a step the catalog no longer has (the catalog changed)."""


@dataclass(frozen=True)
class ProcedureDeadlines:
    procedure: Procedure
    calendar: WorkingCalendar

    def leg_due(self, start: datetime, share_working_days: int) -> datetime:
        return leg_due(start, share_working_days, self.calendar).at

    def dossier_due(self, received_at: datetime, pauses: list[Pause]) -> datetime:
        clock = DeadlineClock(
            received_at,
            self.procedure.deadline_working_days,
            tuple(ClockPause(p.start, p.end) for p in pauses),
            self.calendar,
        )
        now = max([received_at, *(p.end or p.start for p in pauses)])
        return clock.due(now).at


@dataclass(frozen=True)
class Router:
    """What the router's handlers need: its store, the catalog and the calendar it routes by."""

    store: RouterStore
    catalog: Catalog
    calendar: WorkingCalendar
    prefix: str = ""

    def procedure(self, code: str) -> Procedure:
        try:
            return self.catalog.procedure(code)
        except KeyError:
            raise UnknownProcedure(f"procedure {code} is not in the router's catalog") from None


async def on_dossier_received(event: DossierReceived, ctx: Context[Router]) -> Effect:
    """A dossier was received: store its state and request its first steps."""
    router = ctx.deps
    if router.store.load(str(event.dossier_id)) is not None:
        return Effect()
    data = event.data
    procedure = router.procedure(data.procedure_code)
    state = DossierState(
        dossier_id=str(event.dossier_id),
        dossier_code=data.dossier_code,
        procedure_code=data.procedure_code,
        correlation_id=str(event.correlation_id),
        form_kind=data.form_kind.value,
        form=dict(data.form),
        received_at=data.received_at,
        due_at=data.due_at,
    )
    deadlines = ProcedureDeadlines(procedure, router.calendar)
    decisions = routing.start(state, procedure, event.occurred_at, deadlines)
    return Effect(_emit(router, state, decisions, event), router.store.saving(state))


async def on_handoff_reported(event: HandoffReported, ctx: Context[Router]) -> Effect:
    """An agency answered a leg: decide what comes next (routing.on_outcome). An outcome not from the
    connector of the leg's agency is refused (:mod:`schemas.authority`): dead-lettered, never applied."""
    router = ctx.deps
    state = router.store.load(str(event.dossier_id))
    if state is None:
        raise UnknownDossier(
            f"no dossier {event.dossier_id} is being routed (outcome of step {event.data.step_id})"
        )
    procedure = router.procedure(state.procedure_code)
    data = event.data
    leg = state.legs.get(data.step_id)
    # Only the connector of the leg's agency speaks for it; a leg not requested yet is its step's.
    agency = (
        leg.agency
        if leg is not None
        else next((step.agency for step in procedure.route if step.id == data.step_id), None)
    )
    if agency is not None:
        check_outcome(event, agency)
    if leg is not None and all(step.id != data.step_id for step in procedure.route):
        raise CatalogMismatch(
            f"procedure {procedure.code} has no step {data.step_id!r} in this router's catalog any more"
        )
    outcome = Outcome(
        handoff_id=str(data.handoff_id),
        step_id=data.step_id,
        kind=data.kind.value,
        occurred_at=event.occurred_at,
        reason=data.reason,
        result=dict(data.result),
    )
    decisions = routing.on_outcome(state, procedure, outcome, ProcedureDeadlines(procedure, router.calendar))
    if not decisions:
        return Effect(write=router.store.saving(state))
    return Effect(_emit(router, state, decisions, event), router.store.saving(state))


HANDLERS: Handlers = {DossierReceived: on_dossier_received, HandoffReported: on_handoff_reported}
"""The router's events and their handlers."""


def _emit(
    router: Router, state: DossierState, decisions: list[Decision], cause: Event
) -> list[OutgoingRecord]:
    return [_record(router.prefix, state, decision, cause, index) for index, decision in enumerate(decisions)]


def _record(prefix: str, state: DossierState, decision: Decision, cause: Event, index: int) -> OutgoingRecord:
    event_id = name_based_id(_EVENT_NAMESPACE, f"{cause.event_id}/{index}")
    if isinstance(decision, RequestHandoff):
        leg = decision.leg
        requested = HandoffRequested.create(
            data=HandoffRequestedData(
                handoff_id=UUID(leg.handoff_id),
                dossier_code=state.dossier_code,
                procedure_code=state.procedure_code,
                step_id=leg.step_id,
                agency=leg.agency,
                action=leg.action,
                form_kind=FormKind(state.form_kind),
                form=state.form,
                inputs=state.inputs(),
                leg_due_at=leg.due_at,
                dossier_due_at=state.due_at,
            ),
            occurred_at=leg.requested_at,
            producer=PRODUCER,
            caused_by=cause,
            event_id=event_id,
        )
        return event_record(requested, requests_topic(leg.agency, prefix))
    if isinstance(decision, ChangeStatus):
        changed = DossierStatusChanged.create(
            data=DossierStatusChangedData(
                dossier_code=state.dossier_code,
                procedure_code=state.procedure_code,
                status=decision.status,
                previous_status=decision.previous,
                holder=decision.holder,
                reason=decision.reason,
                clock_paused=decision.clock_paused,
            ),
            producer=PRODUCER,
            caused_by=cause,
            event_id=event_id,
        )
        return event_record(changed, prefix + DOSSIER_STATUS)
    assert isinstance(decision, CloseDossier)
    reason = decision.reason
    if reason is None and decision.partial:
        reason = "completed without the optional legs: " + ", ".join(
            leg.step_id for leg in state.legs.values() if leg.status.value != "completed"
        )
    closed = DossierClosed.create(
        data=DossierClosedData(
            dossier_code=state.dossier_code,
            procedure_code=state.procedure_code,
            final_status=decision.final_status,
            result=ClosedResult(decision.result),
            partial=decision.partial,
            reason=reason,
            closed_at=cause.occurred_at,
            on_time=decision.on_time,
        ),
        producer=PRODUCER,
        caused_by=cause,
        event_id=event_id,
    )
    return event_record(closed, prefix + DOSSIER_CLOSED)

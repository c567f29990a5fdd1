"""The router's decisions, as plain functions: a fact in, the dossier's new state and what to emit out.

No Kafka and no storage here (see ``handlers.py`` for the wiring), so every route shape — sequential
steps, parallel branches that join, rejections, payment pauses — is tested without a broker.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, Protocol

from schemas.agencies import Agency
from schemas.catalog import Procedure, Step
from schemas.status import NationalStatus
from services.router.state import DossierState, Leg, LegStatus, Pause
from services.runtime.consume.ids import name_based_id

# Handoff ids are derived, not random: re-deciding after a crash requests the same handoff again,
# and the agency's idempotency key (the handoff id) makes that harmless.
_HANDOFF_NAMESPACE = uuid.UUID("6f1c1c52-3f0e-4d8e-9a56-2d0c1b7e5a10")


def handoff_id_for(dossier_id: str, step_id: str) -> str:
    return str(name_based_id(_HANDOFF_NAMESPACE, f"{dossier_id}/{step_id}"))


class LegDeadlines(Protocol):
    def leg_due(self, start: datetime, share_working_days: int) -> datetime: ...

    def dossier_due(self, received_at: datetime, pauses: list[Pause]) -> datetime: ...


@dataclass(frozen=True)
class RequestHandoff:
    leg: Leg


@dataclass(frozen=True)
class ChangeStatus:
    status: NationalStatus
    previous: NationalStatus
    holder: Agency | None
    reason: str | None = None
    clock_paused: bool = False


@dataclass(frozen=True)
class CloseDossier:
    result: Literal["completed", "returned"]
    final_status: NationalStatus
    partial: bool
    on_time: bool
    reason: str | None = None


Decision = RequestHandoff | ChangeStatus | CloseDossier


@dataclass(frozen=True)
class Outcome:
    """The facts of a ``HandoffReported`` the router acts on."""

    handoff_id: str
    step_id: str
    kind: Literal["completed", "rejected", "waiting_on_citizen", "dead_lettered"]
    occurred_at: datetime
    reason: str | None = None
    result: dict[str, Any] = field(default_factory=dict)


def _request(state: DossierState, step: Step, now: datetime, deadlines: LegDeadlines) -> RequestHandoff:
    leg = Leg(
        step_id=step.id,
        agency=step.agency,
        action=step.action,
        handoff_id=handoff_id_for(state.dossier_id, step.id),
        requested_at=now,
        due_at=deadlines.leg_due(now, step.share_working_days),
    )
    state.legs[step.id] = leg
    return RequestHandoff(leg)


def _set_status(
    state: DossierState, status: NationalStatus, reason: str | None = None, *, paused: bool = False
) -> ChangeStatus:
    holders = state.holders()
    change = ChangeStatus(
        status=status,
        previous=state.status,
        holder=holders[0] if holders else None,
        reason=reason,
        clock_paused=paused,
    )
    state.status = status
    return change


def start(
    state: DossierState, procedure: Procedure, now: datetime, deadlines: LegDeadlines
) -> list[Decision]:
    """A dossier was received: request its first steps and mark it in progress."""
    decisions: list[Decision] = [_request(state, step, now, deadlines) for step in procedure.initial_steps()]
    decisions.append(_set_status(state, NationalStatus.IN_PROGRESS))
    return decisions


def _close(
    state: DossierState,
    result: Literal["completed", "returned"],
    now: datetime,
    deadlines: LegDeadlines,
    *,
    partial: bool = False,
    reason: str | None = None,
) -> list[Decision]:
    final = NationalStatus.PROCESSED if result == "completed" else NationalStatus.STOPPED
    decisions: list[Decision] = [_set_status(state, final, reason)]
    state.closed = True
    on_time = now <= deadlines.dossier_due(state.received_at, state.pauses)
    decisions.append(CloseDossier(result, final, partial=partial, on_time=on_time, reason=reason))
    return decisions


def _advance(
    state: DossierState, procedure: Procedure, now: datetime, deadlines: LegDeadlines
) -> list[Decision]:
    """After a leg settled: request what became ready, or close the dossier when nothing is left."""
    decisions: list[Decision] = [
        _request(state, step, now, deadlines)
        for step in procedure.ready_steps(state.done_steps(), state.started_steps())
    ]
    if decisions:
        return decisions
    if not all(leg.status.is_settled for leg in state.legs.values()):
        return []
    done = state.done_steps()
    if procedure.is_complete(done):
        partial = any(s.id not in done for s in procedure.route)
        return _close(state, "completed", now, deadlines, partial=partial)
    return []  # a required leg is stuck in a dead letter: the dossier waits for a replay


def on_outcome(
    state: DossierState, procedure: Procedure, outcome: Outcome, deadlines: LegDeadlines
) -> list[Decision]:
    """Apply an agency's outcome; stale, duplicate and late outcomes change nothing."""
    leg = state.legs.get(outcome.step_id)
    if state.closed or leg is None or leg.handoff_id != outcome.handoff_id:
        return []
    if leg.status in (LegStatus.COMPLETED, LegStatus.REJECTED):
        return []
    if outcome.kind == "waiting_on_citizen" and leg.status is LegStatus.WAITING_ON_CITIZEN:
        return []
    now = outcome.occurred_at
    step = procedure.step(outcome.step_id)
    decisions: list[Decision] = []
    pause = state.open_pause()
    if (
        outcome.kind != "waiting_on_citizen"
        and leg.status is LegStatus.WAITING_ON_CITIZEN
        and pause is not None
    ):
        pause.end = now

    leg.reason = outcome.reason
    if outcome.kind == "completed":
        leg.status = LegStatus.COMPLETED
        leg.result = dict(outcome.result)
        decisions += _advance(state, procedure, now, deadlines)
        if not state.closed and state.status is not NationalStatus.IN_PROGRESS:
            decisions.append(_set_status(state, NationalStatus.IN_PROGRESS))
    elif outcome.kind == "rejected":
        leg.status = LegStatus.REJECTED
        if step.required:
            reason = f"{step.agency.value}: {outcome.reason}"
            decisions += _close(state, "returned", now, deadlines, reason=reason)
        else:
            decisions += _advance(state, procedure, now, deadlines)
    elif outcome.kind == "waiting_on_citizen":
        leg.status = LegStatus.WAITING_ON_CITIZEN
        leg.result = dict(outcome.result)
        if step.pauses_clock_on_waiting:
            state.pauses.append(Pause(start=now))
            decisions.append(_set_status(state, NationalStatus.PAYMENT_REQUIRED, outcome.reason, paused=True))
    else:  # dead_lettered: the leg is stuck until an operator replays it
        leg.status = LegStatus.DEAD_LETTERED
        decisions += _advance(state, procedure, now, deadlines)
    return decisions

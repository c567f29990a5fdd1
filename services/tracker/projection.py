"""The tracker's projection: every event on the bus becomes rows the supervision views read.

Each event becomes one :data:`~services.runtime.storage.store.Write`, run by the runtime in the same
transaction that records the event as processed. The runtime already skips an event it processed,
but every write here is idempotent by itself too (upserts, inserts keyed by event id that do nothing
on a conflict), and none of them assumes an order across topics — nor which tracker instance
projects which event: several instances on one PostgreSQL schema write the same rows, each event once,
and what they write together is what one instance would have written:

- any event creates the dossier's row if it is not there yet, and fills in what it knows;
- the newest status wins (by the time the event occurred), whatever order the statuses arrive in;
- a leg is created by its request or by its outcome, whichever comes first; a later outcome moves
  its state on, an earlier or repeated one changes nothing, and a completed or rejected leg stays so;
- pauses are recomputed from every status change seen so far, sorted by time.

Nothing personal is kept: the applicant's citizen id is masked to its last three digits, names,
addresses and forms are never read, and timeline summaries name agencies, actions and codes only.
"""

from __future__ import annotations

from datetime import datetime
from typing import Final

from schemas.agencies import Agency
from schemas.authority import check_operator_action, check_outcome
from schemas.envelope import Event
from schemas.errors import EventContractError
from schemas.events import (
    DossierClosed,
    DossierReceived,
    DossierStatusChanged,
    HandoffReported,
    HandoffRequested,
    OperatorActionRecorded,
    OutcomeKind,
)
from schemas.workdays import VN_TZ
from services.runtime.consume.consumer import Context, Effect, Handlers
from services.runtime.storage.database import Connection
from services.runtime.storage.store import Write
from services.tracker import audit
from services.tracker.store import TrackerStore, to_text

SETTLING_KINDS: Final = frozenset({OutcomeKind.COMPLETED, OutcomeKind.REJECTED, OutcomeKind.DEAD_LETTERED})
_SUMMARY_REASON_CHARS: Final = 200


def mask_citizen_id(citizen_id: str) -> str:
    """``001085012345`` → ``*********345``: enough for a clerk to match a receipt, not to identify."""
    return "*" * (len(citizen_id) - 3) + citizen_id[-3:]


def write_for(event: Event) -> Write:
    """The projection write of one event (run inside the runtime's transaction)."""
    if isinstance(event, DossierReceived):
        return lambda conn: write_dossier_received(conn, event)
    if isinstance(event, HandoffRequested):
        return lambda conn: write_handoff_requested(conn, event)
    if isinstance(event, HandoffReported):
        return lambda conn: write_handoff_reported(conn, event)
    if isinstance(event, DossierStatusChanged):
        return lambda conn: write_dossier_status_changed(conn, event)
    if isinstance(event, DossierClosed):
        return lambda conn: write_dossier_closed(conn, event)
    raise EventContractError(f"the tracker does not project {event.event_type}")


def write_logged(event: HandoffRequested | HandoffReported) -> Write:
    """The projection write of a handoff event, and its entry in the hash-chained handoff log, in
    the same transaction (what the tracker's handlers run). The entry is appended first: on
    PostgreSQL the append waits for the log's lock, and waiting before this record has written any
    row of its own leaves fewer rows locked while another instance appends."""
    write = write_for(event)

    def log_and_write(conn: Connection) -> None:
        audit.append(conn, event)
        write(conn)

    return log_and_write


# The tracker's handlers: each event becomes its write (it emits nothing).


async def on_dossier_received(event: DossierReceived, ctx: Context[object]) -> Effect:
    return Effect(write=write_for(event))


async def on_handoff_requested(event: HandoffRequested, ctx: Context[object]) -> Effect:
    return Effect(write=write_logged(event))


async def on_handoff_reported(event: HandoffReported, ctx: Context[TrackerStore]) -> Effect:
    """An outcome counts only from the connector of the leg's agency, as the leg's request recorded
    it (:mod:`schemas.authority`); another is refused with ``NotTheAgencysOutcome``, which the runtime
    skips (the router, owner of the outcome topic, dead-letters it). Checked before the write, so a
    refused outcome leaves no row, no timeline line and no entry in the handoff log."""
    check_outcome(event, requested_agency(ctx.deps.conn, event) or event.data.agency)
    return Effect(write=write_logged(event))


async def on_dossier_status_changed(event: DossierStatusChanged, ctx: Context[object]) -> Effect:
    return Effect(write=write_for(event))


async def on_dossier_closed(event: DossierClosed, ctx: Context[object]) -> Effect:
    return Effect(write=write_for(event))


async def on_operator_action(event: OperatorActionRecorded, ctx: Context[object]) -> Effect:
    """A person's replay or unmask: an entry of the handoff log with their subject and reason, and
    nothing else (no dossier row, no timeline line). Only the operator tools record actions
    (:func:`schemas.authority.check_operator_action`); another producer's is refused with
    ``NotAnOperatorTool`` and dead-lettered with error class ``authorization`` (the tracker owns the
    topic), leaving no entry."""
    check_operator_action(event)

    def log(conn: Connection) -> None:
        audit.append(conn, event)

    return Effect(write=log)


HANDLERS: Handlers = {
    DossierReceived: on_dossier_received,
    HandoffRequested: on_handoff_requested,
    HandoffReported: on_handoff_reported,
    DossierStatusChanged: on_dossier_status_changed,
    DossierClosed: on_dossier_closed,
    OperatorActionRecorded: on_operator_action,
}
"""The tracker's events and their handlers."""


# --- the writes -------------------------------------------------------------------------------


def write_dossier_received(conn: Connection, event: DossierReceived) -> None:
    data = event.data
    dossier_id = str(event.dossier_id)
    _touch(conn, event, data.dossier_code, data.procedure_code)
    # The receipt is authoritative for the code and the procedure.
    conn.execute(
        "UPDATE dossiers SET dossier_code = ?, procedure_code = ?, applicant = ?, channel = ?,"
        " received_at = ?, clock_starts_at = ?, due_at = ? WHERE dossier_id = ?",
        (
            data.dossier_code,
            data.procedure_code,
            mask_citizen_id(data.applicant.citizen_id),
            data.channel.value,
            to_text(data.received_at),
            to_text(data.clock_starts_at),
            to_text(data.due_at),
            dossier_id,
        ),
    )
    # Status 2 is implied by the receipt; it is always a dossier's first status, so it never
    # replaces one already known (a status change that arrived earlier is newer).
    conn.execute(
        "UPDATE dossiers SET status = 2, status_at = ? WHERE dossier_id = ? AND status IS NULL",
        (to_text(event.occurred_at), dossier_id),
    )
    due = _local_date(data.due_at)
    _timeline(
        conn,
        event,
        f"Received ({data.channel.value}) as {data.dossier_code}, procedure {data.procedure_code}; due {due}",
    )


def requested_agency(conn: Connection, event: HandoffReported) -> Agency | None:
    """The agency the router's request named for the outcome's leg; None before the request was seen
    (an outcome may come first: what it says of its leg is then a claim, undone by the request)."""
    row = conn.execute(
        "SELECT agency FROM legs WHERE handoff_id = ? AND requested_at IS NOT NULL",
        (str(event.data.handoff_id),),
    ).fetchone()
    return Agency(row[0]) if row is not None else None


def write_handoff_requested(conn: Connection, event: HandoffRequested) -> None:
    data = event.data
    _touch(conn, event, data.dossier_code, data.procedure_code)
    at = to_text(event.occurred_at)
    # The first request sets the leg's start and due date. A newer request for a dead-lettered leg
    # (a replay with a new event) means the leg is being retried: it is no longer stuck. The request
    # names the leg's agency: a leg an outcome of another agency created before it (a claim no
    # connector may make, see on_handoff_reported) starts again from the request.
    conn.execute(
        """
        INSERT INTO legs (handoff_id, dossier_id, step_id, agency, action, state, state_at,
                          requested_at, leg_due_at)
        VALUES (?, ?, ?, ?, ?, 'requested', NULL, ?, ?)
        ON CONFLICT (handoff_id) DO UPDATE SET
            step_id = excluded.step_id,
            agency = excluded.agency,
            action = excluded.action,
            leg_due_at = CASE WHEN legs.requested_at IS NULL OR excluded.requested_at < legs.requested_at
                              THEN excluded.leg_due_at ELSE legs.leg_due_at END,
            requested_at = CASE WHEN legs.requested_at IS NULL OR excluded.requested_at < legs.requested_at
                                THEN excluded.requested_at ELSE legs.requested_at END,
            state = CASE WHEN legs.agency <> excluded.agency THEN 'requested'
                         WHEN legs.state = 'dead_lettered' AND excluded.requested_at > legs.state_at
                         THEN 'requested' ELSE legs.state END,
            error_class = CASE WHEN legs.agency <> excluded.agency
                                 OR (legs.state = 'dead_lettered' AND excluded.requested_at > legs.state_at)
                               THEN NULL ELSE legs.error_class END,
            settled_at = CASE WHEN legs.agency <> excluded.agency
                                OR (legs.state = 'dead_lettered' AND excluded.requested_at > legs.state_at)
                              THEN NULL ELSE legs.settled_at END,
            reason = CASE WHEN legs.agency <> excluded.agency THEN NULL ELSE legs.reason END,
            agency_reference = CASE WHEN legs.agency <> excluded.agency THEN NULL
                                    ELSE legs.agency_reference END,
            state_at = CASE WHEN legs.agency <> excluded.agency THEN NULL
                            WHEN legs.state = 'dead_lettered' AND excluded.requested_at > legs.state_at
                            THEN excluded.requested_at ELSE legs.state_at END
        """,
        (
            str(data.handoff_id),
            str(event.dossier_id),
            data.step_id,
            data.agency.value,
            data.action,
            at,
            to_text(data.leg_due_at),
        ),
    )
    _timeline(
        conn,
        event,
        f"Handed to {data.agency.value}: {data.action} (step {data.step_id}),"
        f" leg due {_local_date(data.leg_due_at)}",
    )


def write_handoff_reported(conn: Connection, event: HandoffReported) -> None:
    data = event.data
    _touch(conn, event, None, None)
    at = to_text(event.occurred_at)
    settled_at = at if data.kind in SETTLING_KINDS else None
    # Applied only when newer than the leg's last outcome, and never to a completed or rejected leg:
    # a late duplicate or an older outcome arriving after a newer one changes nothing. Nor to a leg
    # requested of another agency (on_handoff_reported refuses that outcome before it comes here).
    conn.execute(
        """
        INSERT INTO legs (handoff_id, dossier_id, step_id, agency, action, state, state_at, settled_at,
                          reason, agency_reference, error_class)
        VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
        ON CONFLICT (handoff_id) DO UPDATE SET
            state = excluded.state,
            state_at = excluded.state_at,
            settled_at = excluded.settled_at,
            reason = excluded.reason,
            agency_reference = COALESCE(excluded.agency_reference, legs.agency_reference),
            error_class = excluded.error_class
        WHERE legs.state NOT IN ('completed', 'rejected')
          AND (legs.state_at IS NULL OR legs.state_at <= excluded.state_at)
          AND (legs.requested_at IS NULL OR legs.agency = excluded.agency)
        """,
        (
            str(data.handoff_id),
            str(event.dossier_id),
            data.step_id,
            data.agency.value,
            data.action,
            data.kind.value,
            at,
            settled_at,
            data.reason,
            data.agency_reference,
            data.error_class,
        ),
    )
    _timeline(conn, event, _outcome_summary(event))


def write_dossier_status_changed(conn: Connection, event: DossierStatusChanged) -> None:
    data = event.data
    dossier_id = str(event.dossier_id)
    _touch(conn, event, data.dossier_code, data.procedure_code)
    _set_status(conn, event, int(data.status), data.holder.value if data.holder else None, data.reason)
    conn.execute(
        "INSERT INTO clock_marks (event_id, dossier_id, at, paused) VALUES (?, ?, ?, ?)"
        " ON CONFLICT DO NOTHING",
        (str(event.event_id), dossier_id, to_text(event.occurred_at), int(data.clock_paused)),
    )
    _derive_pauses(conn, dossier_id)
    text = f"Status {int(data.status)}: {data.status.en}"
    if data.holder is not None:
        text += f", held by {data.holder.value}"
    if data.clock_paused:
        text += ", clock paused"
    if data.reason:
        text += f" — {_short(data.reason)}"
    _timeline(conn, event, text)


def write_dossier_closed(conn: Connection, event: DossierClosed) -> None:
    data = event.data
    dossier_id = str(event.dossier_id)
    _touch(conn, event, data.dossier_code, data.procedure_code)
    conn.execute(
        "UPDATE dossiers SET closed = 1, closed_at = ?, result = ?, partial = ?, on_time = ?, reason = ?"
        " WHERE dossier_id = ?",
        (
            to_text(data.closed_at),
            data.result.value,
            int(data.partial),
            int(data.on_time),
            data.reason,
            dossier_id,
        ),
    )
    _set_status(conn, event, int(data.final_status), None, data.reason)
    text = f"Closed: {data.result.value}{' (partial)' if data.partial else ''},"
    text += " on time" if data.on_time else " overdue"
    if data.reason:
        text += f" — {_short(data.reason)}"
    _timeline(conn, event, text)


# --- helpers ----------------------------------------------------------------------------------


def _touch(conn: Connection, event: Event, code: str | None, procedure: str | None) -> None:
    """The dossier's row exists, with whatever this event knows filled in where it was missing. A
    row this would not change is left as it is (no new row version, no tally mark)."""
    conn.execute(
        """
        INSERT INTO dossiers (dossier_id, dossier_code, procedure_code, first_seen_at) VALUES (?, ?, ?, ?)
        ON CONFLICT (dossier_id) DO UPDATE SET
            dossier_code = COALESCE(dossiers.dossier_code, excluded.dossier_code),
            procedure_code = COALESCE(dossiers.procedure_code, excluded.procedure_code),
            first_seen_at = CASE WHEN excluded.first_seen_at < dossiers.first_seen_at
                                 THEN excluded.first_seen_at ELSE dossiers.first_seen_at END
        WHERE (dossiers.dossier_code IS NULL AND excluded.dossier_code IS NOT NULL)
           OR (dossiers.procedure_code IS NULL AND excluded.procedure_code IS NOT NULL)
           OR excluded.first_seen_at < dossiers.first_seen_at
        """,
        (str(event.dossier_id), code, procedure, to_text(event.occurred_at)),
    )


def _set_status(conn: Connection, event: Event, status: int, holder: str | None, reason: str | None) -> None:
    # The newest status wins; at equal times the one applied last (statuses of one dossier share a
    # partition, so that is the order they were emitted in).
    at = to_text(event.occurred_at)
    conn.execute(
        "UPDATE dossiers SET status = ?, status_at = ?, holder = ?, status_reason = ?"
        " WHERE dossier_id = ? AND (status_at IS NULL OR status_at <= ?)",
        (status, at, holder, reason, str(event.dossier_id), at),
    )


def _derive_pauses(conn: Connection, dossier_id: str) -> None:
    """Rebuild the dossier's pauses from all its clock marks: a pause opens at the first paused mark
    and closes at the next running one."""
    marks = conn.execute(
        "SELECT at, paused FROM clock_marks WHERE dossier_id = ? ORDER BY at, paused DESC", (dossier_id,)
    ).fetchall()
    pauses: list[tuple[str, str | None]] = []
    opened: str | None = None
    for mark in marks:
        if mark["paused"] and opened is None:
            opened = mark["at"]
        elif not mark["paused"] and opened is not None:
            pauses.append((opened, mark["at"]))
            opened = None
    if opened is not None:
        pauses.append((opened, None))
    conn.execute("DELETE FROM pauses WHERE dossier_id = ?", (dossier_id,))
    conn.executemany(
        'INSERT INTO pauses (dossier_id, start, "end") VALUES (?, ?, ?)',
        [(dossier_id, start, end) for start, end in pauses],
    )


def _timeline(conn: Connection, event: Event, summary: str) -> None:
    conn.execute(
        "INSERT INTO timeline (event_id, dossier_id, event_type, occurred_at, producer, summary)"
        " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
        (
            str(event.event_id),
            str(event.dossier_id),
            event.event_type.removeprefix("vn.lienthong."),
            to_text(event.occurred_at),
            event.producer,
            summary,
        ),
    )


def _outcome_summary(event: HandoffReported) -> str:
    data = event.data
    who = f"{data.agency.value} {data.action} (step {data.step_id})"
    if data.kind is OutcomeKind.COMPLETED:
        text = f"{who} completed"
    elif data.kind is OutcomeKind.REJECTED:
        text = f"{who} rejected"
    elif data.kind is OutcomeKind.WAITING_ON_CITIZEN:
        text = f"{who} waiting on the citizen"
    else:
        text = f"{who} stuck: dead-lettered ({data.error_class})"
    if data.agency_reference:
        text += f", ref {data.agency_reference}"
    if data.reason:
        text += f" — {_short(data.reason)}"
    return text


def _short(text: str) -> str:
    return text if len(text) <= _SUMMARY_REASON_CHARS else text[: _SUMMARY_REASON_CHARS - 1] + "…"


def _local_date(moment: datetime) -> str:
    return moment.astimezone(VN_TZ).date().isoformat()

"""The supervision views: one dossier, lists with filters, and the center's statistics.

Everything time-dependent is computed at read time from the projection, the procedure catalog and the
working calendar, "as of" an injected clock (``now``), so that overdue and the apology slip are
tested deterministically. A dossier's clock is frozen once it is closed (at its closing time) or once
the agencies are done with it (status 9 and the final statuses, at the time that status was set).

Definitions the numbers use:

- a leg is **open** while it is requested, waiting on the citizen or dead-lettered, and its dossier is
  not closed; it is **stuck** when dead-lettered (an operator must act), whether the dossier is closed
  or not;
- a leg's due date is its share of the deadline counted from its request (:class:`DeadlineClock` with
  the step's ``share_working_days``), extended by the dossier's pauses that fall after the request; a
  leg is **overdue** when open past its due date, or settled (completed or rejected) after it;
- a dossier is **overdue** when its clock says so (closed ones: when they did not close on time);
- a dossier **waits too long** when it is not closed and its clock has been paused on the citizen (a
  fee or tax to pay, a supplement) for longer than ``waiting_alert`` (30 days by default): its
  deadline does not run, so nothing else would ever flag it.

The statistics and the gauges count from tallies (:mod:`services.tracker.tally`): a closed dossier's
is taken once, when it closes or changes; only the live dossiers are evaluated on each read.

Several tracker instances (one consumer group on one PostgreSQL schema) each project the events of
their own partitions, and each answers from every instance's rows: every query reads the shared
tables when it is asked, nothing read is kept in memory from one query to the next (a
:class:`Count` holds the rows of one count only, the tallies are tables too), and what a view holds
besides its connection is configuration (the catalog, the calendar and the hash of both). So the
API and the page of any instance give the same answers, the events of each dossier split between
instances or not.
"""

from __future__ import annotations

import hashlib
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from importlib.metadata import version
from typing import Final, Literal

from pydantic import BaseModel, Field

from schemas.agencies import Agency
from schemas.catalog import Catalog, Procedure
from schemas.deadlines import DeadlineClock, Pause
from schemas.status import ClockEffect, NationalStatus
from schemas.workdays import WorkingCalendar, default_calendar
from services.runtime.storage.database import Connection, Row
from services.tracker import tally
from services.tracker.store import LIVE, from_text, maybe_from_text, read_snapshot
from services.tracker.tally import Tally

Clock = Callable[[], datetime]

LegState = Literal["requested", "waiting_on_citizen", "completed", "rejected", "dead_lettered"]
OPEN_STATES: Final = frozenset({"requested", "waiting_on_citizen", "dead_lettered"})
SETTLED_STATES: Final = frozenset({"completed", "rejected"})
_CLOCK_STOPPED: Final = frozenset({ClockEffect.STOPPED, ClockEffect.FINAL})
# Events of one instant in the order they happen: an outcome causes the next request, which the
# status change then reports, and the closing comes last.
_STORY_ORDER: Final = (
    "CASE event_type WHEN 'dossier.received' THEN 0 WHEN 'handoff.outcome' THEN 1"
    " WHEN 'handoff.requested' THEN 2 WHEN 'dossier.status_changed' THEN 3 ELSE 4 END"
)
_LEG_ORDER: Final = "ORDER BY requested_at IS NULL, requested_at, step_id"
DEFAULT_WAITING_ALERT: Final = timedelta(days=30)


def utc_now() -> datetime:
    return datetime.now(UTC)


# --- response models --------------------------------------------------------------------------


class StatusView(BaseModel):
    code: int = Field(description="National status code (1-10).")
    vi: str
    en: str

    @classmethod
    def of(cls, status: NationalStatus) -> StatusView:
        return cls(code=int(status), vi=status.vi, en=status.en)


class ProcedureView(BaseModel):
    code: str
    name_vi: str | None = Field(description="Null when the procedure is not in this tracker's catalog.")
    name_en: str | None


class LegView(BaseModel):
    handoff_id: str
    step_id: str
    agency: str
    action: str
    state: LegState
    stuck: bool = Field(description="Dead-lettered: an operator must replay or resolve it.")
    requested_at: datetime | None = Field(description="Null while only the leg's outcome has been seen.")
    due_at: datetime | None = Field(
        description="The agency's share, extended by the pauses since the request."
    )
    requested_due_at: datetime | None = Field(description="The leg's due date as the router requested it.")
    settled_at: datetime | None
    overdue: bool
    reason: str | None
    agency_reference: str | None
    error_class: str | None


class PauseView(BaseModel):
    start: datetime
    end: datetime | None = Field(description="Null while the clock is still paused.")


class TimelineEntry(BaseModel):
    event_id: str
    event_type: str = Field(description="Event type without the vn.lienthong. prefix.")
    occurred_at: datetime
    producer: str
    summary: str


class DossierSummary(BaseModel):
    dossier_id: str
    dossier_code: str | None
    procedure: ProcedureView | None
    status: StatusView | None = Field(description="Null while no status-bearing event has been seen.")
    holder: str | None = Field(description="Agency holding the dossier now; null at the desk.")
    applicant: str | None = Field(description="Citizen id masked to its last 3 digits.")
    received_at: datetime | None
    due_at: datetime | None = Field(description="Statutory due instant, extended by the pauses.")
    due_on: date | None = Field(description="The local day of the due date.")
    remaining_working_days: float | None = Field(description="Negative once overdue; 2 decimals.")
    overdue: bool
    paused: bool
    apology_due: bool = Field(description="The apology and new-date slip must be issued now.")
    apology_day: date | None = Field(description="The working day before the due date.")
    waiting_since: datetime | None = Field(
        description="Start of the pause on the citizen now open (a fee to pay, a supplement); null when none."
    )
    waiting_too_long: bool = Field(
        description="Not closed and paused on the citizen for longer than the tracker's alert threshold."
    )
    open_legs: int
    stuck: bool = Field(description="A leg is dead-lettered.")
    closed: bool
    result: str | None
    partial: bool | None
    on_time: bool | None
    reason: str | None


class DossierDetail(DossierSummary):
    channel: str | None
    clock_starts_at: datetime | None
    receipt_due_at: datetime | None = Field(description="The due date printed on the appointment receipt.")
    closed_at: datetime | None
    legs: list[LegView]
    pauses: list[PauseView]
    timeline: list[TimelineEntry]


class DossierPage(BaseModel):
    total: int = Field(description="Dossiers matching the filters (before limit and offset).")
    limit: int
    offset: int
    items: list[DossierSummary]


class StatusCount(BaseModel):
    code: int
    vi: str
    en: str
    count: int


class AgencyStats(BaseModel):
    agency: str
    open: int = Field(description="Legs requested, waiting on the citizen or stuck, of dossiers not closed.")
    waiting_on_citizen: int
    completed: int
    rejected: int
    stuck: int = Field(description="Dead-lettered legs.")
    overdue: int = Field(description="Open legs past their due date.")
    completed_late: int = Field(description="Legs completed after their due date.")
    on_time_ratio: float | None = Field(
        description="Completed on time / completed; null when none completed."
    )


class ProcedureStats(BaseModel):
    code: str
    name_vi: str | None
    name_en: str | None
    in_progress: int
    closed: int
    on_time: int
    on_time_ratio: float | None = Field(description="Closed on time / closed; null when none closed.")
    overdue: int = Field(description="Dossiers in progress past their due date.")


class Totals(BaseModel):
    dossiers: int
    in_progress: int
    closed: int
    on_time: int
    on_time_ratio: float | None
    overdue: int
    apology_due: int
    paused: int
    waiting_too_long: int = Field(description="Dossiers paused on the citizen for longer than the threshold.")
    stuck_legs: int
    stuck_dossiers: int
    unknown_status: int = Field(description="Dossiers seen only through events that carry no status yet.")


class Stats(BaseModel):
    as_of: datetime
    totals: Totals
    by_status: list[StatusCount]
    by_agency: list[AgencyStats]
    by_procedure: list[ProcedureStats]


# --- evaluation -------------------------------------------------------------------------------


@dataclass
class _Leg:
    view: LegView
    open: bool


@dataclass
class _Dossier:
    detail: DossierDetail
    legs: list[_Leg] = field(default_factory=list)

    @property
    def summary(self) -> DossierSummary:
        return DossierSummary.model_validate(self.detail.model_dump(include=set(DossierSummary.model_fields)))

    def tally(self) -> Tally:
        """What this dossier adds to the statistics and the gauges. Measures without a subject are
        the totals; ``procedure.*`` are by procedure code, ``agency.*`` by the agency of each leg."""
        d = self.detail
        counts: Tally = Counter()
        in_progress = not d.closed
        counts["dossiers", ""] += 1
        if d.status is None:
            counts["unknown_status", ""] += 1
        else:
            counts["status", str(d.status.code)] += 1
        counts["in_progress" if in_progress else "closed", ""] += 1
        counts["on_time", ""] += bool(d.closed and d.on_time)
        counts["overdue", ""] += in_progress and d.overdue
        counts["apology_due", ""] += d.apology_due
        counts["paused", ""] += in_progress and d.paused
        counts["waiting_too_long", ""] += d.waiting_too_long
        counts["stuck_dossiers", ""] += d.stuck
        if d.procedure is not None:
            code = d.procedure.code
            counts["procedure.in_progress" if in_progress else "procedure.closed", code] += 1
            counts["procedure.on_time", code] += bool(d.closed and d.on_time)
            counts["procedure.overdue", code] += in_progress and d.overdue
            # The gauges' states of an open dossier: overdue, else paused, else in progress.
            counts["procedure.paused_not_overdue", code] += in_progress and d.paused and not d.overdue
            counts["procedure.apology_due", code] += in_progress and d.apology_due
            counts["procedure.waiting_too_long", code] += d.waiting_too_long
        for leg in self.legs:
            v, agency = leg.view, leg.view.agency
            counts["agency.legs", agency] += 1
            counts["agency.open", agency] += leg.open
            counts["agency.requested", agency] += leg.open and v.state == "requested"
            counts["agency.waiting_on_citizen", agency] += leg.open and v.state == "waiting_on_citizen"
            counts["agency.stuck", agency] += v.stuck
            counts["agency.overdue", agency] += leg.open and v.overdue
            counts["agency.completed", agency] += v.state == "completed"
            counts["agency.completed_late", agency] += v.state == "completed" and v.overdue
            counts["agency.rejected", agency] += v.state == "rejected"
        return counts


# A dossier's row, its legs' rows and its pauses' rows, as read.
_Rows = tuple[Row, list[Row], list[Row]]


class Count:
    """Counts as of one instant, summed a batch at a time: the closed dossiers' sums and the live
    dossiers' rows were read at that instant; :meth:`step` evaluates the live ones."""

    def __init__(
        self,
        now: datetime,
        closed: Tally,
        live: list[_Rows],
        evaluate: Callable[[Row, list[Row], list[Row], datetime], _Dossier],
    ) -> None:
        self.now = now
        self.totals = closed
        self._pending = live[::-1]
        self._evaluate = evaluate

    def step(self, batch: int | None = None) -> bool:
        """Evaluate and add the next ``batch`` live dossiers (all of them if None); True once done."""
        for _ in range(len(self._pending) if batch is None else min(batch, len(self._pending))):
            row, legs, pauses = self._pending.pop()
            self.totals.update(self._evaluate(row, legs, pauses, self.now).tally())
        return not self._pending


class TrackerViews:
    """Reads the projection and answers the supervision questions as of ``now()``."""

    def __init__(
        self,
        conn: Connection,
        catalog: Catalog,
        *,
        calendar: WorkingCalendar | None = None,
        now: Clock = utc_now,
        waiting_alert: timedelta = DEFAULT_WAITING_ALERT,
    ) -> None:
        """``waiting_alert``: how long a dossier may wait on the citizen before it is listed."""
        self.conn = conn
        self.catalog = catalog
        self.calendar = calendar or default_calendar()
        self.now = now
        self.waiting_alert = waiting_alert
        self._procedures = {p.code: p for p in catalog.procedures}
        self._rules: str | None = None

    # -- queries --------------------------------------------------------------------------------

    def dossier(self, key: str) -> DossierDetail | None:
        """One dossier by its id or its receipt code; None if the tracker has not seen it."""
        with read_snapshot(self.conn):
            row = self.conn.execute(
                "SELECT dossier_id FROM dossiers WHERE dossier_id = ? OR dossier_code = ? LIMIT 1", (key, key)
            ).fetchone()
            if row is None:
                return None
            dossier_id = str(row["dossier_id"])
            (found,) = self._load("WHERE dossier_id = ?", (dossier_id,), now=self.now())
            timeline = self.conn.execute(
                "SELECT event_id, event_type, occurred_at, producer, summary FROM timeline"
                " WHERE dossier_id = ? ORDER BY occurred_at, " + _STORY_ORDER + ", event_id",
                (dossier_id,),
            ).fetchall()
        found.detail.timeline = [
            TimelineEntry(
                event_id=t["event_id"],
                event_type=t["event_type"],
                occurred_at=from_text(t["occurred_at"]),
                producer=t["producer"],
                summary=t["summary"],
            )
            for t in timeline
        ]
        return found.detail

    def dossiers(
        self,
        *,
        status: int | None = None,
        agency: str | None = None,
        procedure: str | None = None,
        overdue: bool | None = None,
        stuck: bool | None = None,
        waiting_too_long: bool | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> DossierPage:
        """Dossiers matching every filter given, most urgent first (open ones by due date)."""
        where: list[str] = []
        params: list[object] = []
        if status is not None:
            where.append("status = ?")
            params.append(status)
        if procedure is not None:
            where.append("procedure_code = ?")
            params.append(procedure)
        clause = ("WHERE " + " AND ".join(where)) if where else ""
        found = self._load(clause, tuple(params), now=self.now())
        if agency is not None:
            found = [d for d in found if any(leg.open and leg.view.agency == agency for leg in d.legs)]
        if overdue is not None:
            found = [d for d in found if d.detail.overdue is overdue]
        if stuck is not None:
            found = [d for d in found if d.detail.stuck is stuck]
        if waiting_too_long is not None:
            found = [d for d in found if d.detail.waiting_too_long is waiting_too_long]
        found.sort(key=_urgency)
        page = found[offset : offset + limit]
        return DossierPage(total=len(found), limit=limit, offset=offset, items=[d.summary for d in page])

    def stats(self) -> Stats:
        """Counts by status, agency and procedure, and overall totals."""
        count = self.start_count()
        count.step()
        now, counts = count.now, count.totals
        agency_names = [a.value for a in Agency]
        # Legs name only known agencies (their events are validated); any other would follow, sorted.
        agencies = agency_names + sorted(
            {s for (m, s), n in counts.items() if m == "agency.legs" and n and s not in agency_names}
        )
        procedures = list(self._procedures) + self._first_seen(
            {
                s
                for (m, s), n in counts.items()
                if m in ("procedure.in_progress", "procedure.closed") and n and s not in self._procedures
            }
        )

        def total(measure: str) -> int:
            return counts[measure, ""]

        def agency_stats(agency: str) -> AgencyStats:
            def c(measure: str) -> int:
                return counts["agency." + measure, agency]

            return AgencyStats(
                agency=agency,
                open=c("open"),
                waiting_on_citizen=c("waiting_on_citizen"),
                completed=c("completed"),
                rejected=c("rejected"),
                stuck=c("stuck"),
                overdue=c("overdue"),
                completed_late=c("completed_late"),
                on_time_ratio=_ratio(c("completed") - c("completed_late"), c("completed")),
            )

        def procedure_stats(code: str) -> ProcedureStats:
            def c(measure: str) -> int:
                return counts["procedure." + measure, code]

            known = self._procedures.get(code)
            return ProcedureStats(
                code=code,
                name_vi=known.name_vi if known else None,
                name_en=known.name_en if known else None,
                in_progress=c("in_progress"),
                closed=c("closed"),
                on_time=c("on_time"),
                on_time_ratio=_ratio(c("on_time"), c("closed")),
                overdue=c("overdue"),
            )

        return Stats(
            as_of=now,
            totals=Totals(
                dossiers=total("dossiers"),
                in_progress=total("in_progress"),
                closed=total("closed"),
                on_time=total("on_time"),
                on_time_ratio=_ratio(total("on_time"), total("closed")),
                overdue=total("overdue"),
                apology_due=total("apology_due"),
                paused=total("paused"),
                waiting_too_long=total("waiting_too_long"),
                stuck_legs=sum(n for (m, _), n in counts.items() if m == "agency.stuck"),
                stuck_dossiers=total("stuck_dossiers"),
                unknown_status=total("unknown_status"),
            ),
            by_status=[
                StatusCount(code=int(s), vi=s.vi, en=s.en, count=counts["status", str(int(s))])
                for s in NationalStatus
            ],
            by_agency=[agency_stats(agency) for agency in agencies],
            by_procedure=[procedure_stats(code) for code in procedures],
        )

    def evaluated(self) -> list[tuple[DossierDetail, list[tuple[LegView, bool]]]]:
        """Every dossier as of ``now()``, each leg with whether it is open."""
        return [
            (d.detail, [(leg.view, leg.open) for leg in d.legs]) for d in self._load("", (), now=self.now())
        ]

    # -- counting -------------------------------------------------------------------------------

    def catch_up(self, batch: int = tally.BATCH) -> bool:
        """Take the tallies of up to ``batch`` closed dossiers written to since; True once up to date."""
        if self._rules is None:
            self._rules = self._rules_of_judgement()
        tally.keep_rules(self.conn, self._rules)
        return tally.catch_up(self.conn, self._judge, batch)

    def start_count(self) -> Count:
        """The counts as of now: the closed dossiers' sums, and the live dossiers read now, to be
        evaluated by :meth:`Count.step` (as of now, whatever is written in between). Sums and rows
        are read at one instant; a closed dossier written to since the catch-up (by another
        instance's projection) is read with the live ones and its kept tally left out."""
        while not self.catch_up():
            pass
        with read_snapshot(self.conn):
            now = self.now()
            closed = tally.kept_totals(self.conn)
            rows = self._read(f"WHERE {LIVE}", ()) + self._read(f"WHERE {tally.REWRITTEN}", ())
        return Count(now, closed, rows, self._evaluate)

    def _judge(self, ids: list[str]) -> dict[str, Tally]:
        marks = ", ".join("?" * len(ids))
        # A closed dossier is judged as of its closing: the instant given here is not read.
        found = self._load(f"WHERE dossier_id IN ({marks}) AND NOT ({LIVE})", tuple(ids), now=self.now())
        return {d.detail.dossier_id: d.tally() for d in found}

    def _rules_of_judgement(self) -> str:
        """What a closed dossier's tally depends on besides its rows: the catalog's deadlines and shares,
        and the working days."""
        cal = self.calendar
        parts = (
            self.catalog.model_dump_json(),
            sorted(cal.extra_days_off),
            sorted(cal.extra_working_days),
            (cal.opens, cal.closes, cal.intake_cutoff, str(cal.tz)),
            version("holidays"),
        )
        return hashlib.sha256(repr(parts).encode()).hexdigest()

    def _first_seen(self, codes: set[str]) -> list[str]:
        """Procedure codes outside the catalog, in the order their first dossier was seen (the time of
        the earliest event about it), then by code: the same order whatever order the events came
        in, and whichever instance stored them."""
        if not codes:
            return []
        rows = self.conn.execute(
            f"SELECT procedure_code FROM dossiers WHERE procedure_code IN ({', '.join('?' * len(codes))})"
            " GROUP BY procedure_code ORDER BY MIN(first_seen_at), procedure_code",
            tuple(codes),
        ).fetchall()
        return [row[0] for row in rows]

    # -- loading and evaluating -----------------------------------------------------------------

    def _load(self, clause: str, params: tuple[object, ...], *, now: datetime) -> list[_Dossier]:
        return [self._evaluate(*found, now) for found in self._read(clause, params)]

    def _read(self, clause: str, params: tuple[object, ...]) -> list[_Rows]:
        with read_snapshot(self.conn):  # the legs and pauses of the very dossier rows read
            rows = self.conn.execute(f"SELECT * FROM dossiers {clause}", params).fetchall()
            if not rows:
                return []
            ids = [str(r["dossier_id"]) for r in rows]
            # The legs and pauses of the dossiers read, and only of those (of all without a clause).
            if len(ids) == 1:
                clause, params = "WHERE dossier_id = ?", tuple(ids)
            elif clause:
                clause = f"WHERE dossier_id IN (SELECT dossier_id FROM dossiers {clause})"
            legs = _grouped(self._rows_for("legs", clause, params, _LEG_ORDER))
            pauses = _grouped(self._rows_for("pauses", clause, params, "ORDER BY start"))
        return [(row, legs.get(id_, []), pauses.get(id_, [])) for row, id_ in zip(rows, ids, strict=True)]

    def _rows_for(self, table: str, clause: str, params: tuple[object, ...], order: str) -> list[Row]:
        rows: list[Row] = self.conn.execute(f"SELECT * FROM {table} {clause} {order}", params).fetchall()
        return rows

    def _evaluate(self, row: Row, leg_rows: list[Row], pause_rows: list[Row], now: datetime) -> _Dossier:
        code = row["procedure_code"]
        procedure = self._procedures.get(code) if code is not None else None
        status = NationalStatus(row["status"]) if row["status"] is not None else None
        closed = bool(row["closed"])
        closed_at = maybe_from_text(row["closed_at"])
        received_at = maybe_from_text(row["received_at"])
        receipt_due = maybe_from_text(row["due_at"])
        pauses = tuple(Pause(from_text(p["start"]), maybe_from_text(p["end"])) for p in pause_rows)

        # The instant the dossier's clock is read at: frozen once closed or done with the agencies.
        as_of = now
        live = not closed
        if closed and closed_at is not None:
            as_of = closed_at
        elif status is not None and status.clock_effect in _CLOCK_STOPPED and row["status_at"] is not None:
            as_of, live = from_text(row["status_at"]), False

        due_at: datetime | None = receipt_due
        remaining: float | None = None
        apology_day: date | None = None
        overdue = receipt_due is not None and as_of > receipt_due
        paused = any(p.start <= as_of and (p.end is None or as_of < p.end) for p in pauses)
        waiting_since = next((p.start for p in pauses if p.end is None), None) if not closed else None
        waiting_too_long = waiting_since is not None and live and now - waiting_since > self.waiting_alert
        apology_due = False
        if received_at is not None and procedure is not None:
            clock = DeadlineClock(received_at, procedure.deadline_working_days, pauses, self.calendar)
            due_at = clock.due(as_of).at.astimezone(UTC)
            remaining = round(clock.remaining_working_days(as_of), 2)
            overdue = clock.is_overdue(as_of)
            apology_day = clock.apology_due_on(as_of)
            apology_due = live and clock.is_apology_due(as_of)
        if closed and row["on_time"] is not None:
            overdue = not bool(row["on_time"])

        legs = [self._leg(leg, procedure, pauses, as_of, closed) for leg in leg_rows]
        detail = DossierDetail(
            dossier_id=row["dossier_id"],
            dossier_code=row["dossier_code"],
            procedure=(
                ProcedureView(
                    code=code,
                    name_vi=procedure.name_vi if procedure else None,
                    name_en=procedure.name_en if procedure else None,
                )
                if code is not None
                else None
            ),
            status=StatusView.of(status) if status is not None else None,
            holder=row["holder"],
            applicant=row["applicant"],
            received_at=received_at,
            due_at=due_at,
            due_on=self.calendar.local(due_at).date() if due_at is not None else None,
            remaining_working_days=remaining,
            overdue=overdue,
            paused=paused,
            apology_due=apology_due,
            apology_day=apology_day,
            waiting_since=waiting_since,
            waiting_too_long=waiting_too_long,
            open_legs=sum(leg.open for leg in legs),
            stuck=any(leg.view.stuck for leg in legs),
            closed=closed,
            result=row["result"],
            partial=_maybe_bool(row["partial"]),
            on_time=_maybe_bool(row["on_time"]),
            reason=row["reason"] if closed else row["status_reason"],
            channel=row["channel"],
            clock_starts_at=maybe_from_text(row["clock_starts_at"]),
            receipt_due_at=receipt_due,
            closed_at=closed_at,
            legs=[leg.view for leg in legs],
            pauses=[PauseView(start=p.start, end=p.end) for p in pauses],
            timeline=[],
        )
        return _Dossier(detail=detail, legs=legs)

    def _leg(
        self,
        row: Row,
        procedure: Procedure | None,
        pauses: tuple[Pause, ...],
        dossier_as_of: datetime,
        dossier_closed: bool,
    ) -> _Leg:
        state: LegState = row["state"]
        requested_at = maybe_from_text(row["requested_at"])
        requested_due = maybe_from_text(row["leg_due_at"])
        settled_at = maybe_from_text(row["settled_at"])
        # A completed or rejected leg is judged when it settled; an open one as of the dossier's clock.
        as_of = settled_at if state in SETTLED_STATES and settled_at is not None else dossier_as_of
        share = _share(procedure, row["step_id"])
        due_at = requested_due
        overdue = requested_due is not None and as_of > requested_due
        if requested_at is not None and share is not None:
            clock = DeadlineClock(requested_at, share, pauses, self.calendar)
            due_at = clock.due(as_of).at.astimezone(UTC)
            overdue = clock.is_overdue(as_of)
        view = LegView(
            handoff_id=row["handoff_id"],
            step_id=row["step_id"],
            agency=row["agency"],
            action=row["action"],
            state=state,
            stuck=state == "dead_lettered",
            requested_at=requested_at,
            due_at=due_at,
            requested_due_at=requested_due,
            settled_at=settled_at,
            overdue=overdue,
            reason=row["reason"],
            agency_reference=row["agency_reference"],
            error_class=row["error_class"],
        )
        return _Leg(view=view, open=state in OPEN_STATES and not dossier_closed)


def _share(procedure: Procedure | None, step_id: str) -> int | None:
    if procedure is None:
        return None
    try:
        return procedure.step(step_id).share_working_days
    except KeyError:
        return None


def _grouped(rows: Iterable[Row]) -> dict[str, list[Row]]:
    grouped: dict[str, list[Row]] = defaultdict(list)
    for row in rows:
        grouped[str(row["dossier_id"])].append(row)
    return grouped


def _urgency(dossier: _Dossier) -> tuple[bool, datetime, str]:
    d = dossier.detail
    far = datetime.max.replace(tzinfo=UTC)
    return (d.closed, d.due_at or far, d.dossier_code or d.dossier_id)


def _ratio(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def _maybe_bool(value: int | None) -> bool | None:
    return None if value is None else bool(value)

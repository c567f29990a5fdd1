"""The statutory deadline clock: due dates in working days, pauses, overdue and the apology slip.

The convention (what the civil servant writes on the appointment receipt, phiếu hẹn trả kết quả):

1. **The day of receipt.** A dossier received on a working day up to 15:00:00 local time is
   received that day; one received after 15:00 or on a day off counts as received on the next
   working day (Decree 61/2018/NĐ-CP, art. 19(1)(b): a dossier received after 15:00 is passed on
   at the start of the next working day, kept by Decree 107/2021/NĐ-CP; the civil-status rules say
   the same of a same-day result requested after 15:00: it is returned the next working day).
   :func:`counting_starts` gives that day, *D*.
2. **Counting.** A deadline of *N* working days is counted from *D* with *D* itself not counted
   (Civil Code 2015, art. 147(2): "ngày đầu tiên của thời hạn không được tính"); day 1 is the first
   working day after *D*.
3. **The end.** The deadline ends at the close of office hours of the *N*-th working day (Civil
   Code art. 148: a period ends at the end of its last day, moved to the next working day when that
   is a day off — counting only working days never lands on one). So the due date is
   ``add_working_days(D, N)``, due by :meth:`WorkingCalendar.closing` of that day, and a "same
   day" procedure (*N* = 0) is due the day of receipt, or the next working day after 15:00.

Pauses (the dossier waits on the citizen: supplement requested, fee to pay, stopped) extend the due
instant by the working time they cover from the moment the counting starts (the close of *D*); a
paused instant outside office hours costs nothing. The extended due may fall inside an office day.

An agency leg is a clock too: ``DeadlineClock(received_at=leg_started_at, working_days=share)``.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field, replace

from schemas.catalog import Procedure
from schemas.workdays import WorkingCalendar, default_calendar


@dataclass(frozen=True)
class Due:
    """A due date: the local day written on the receipt and the instant it ends (office closing)."""

    on: dt.date
    at: dt.datetime


@dataclass(frozen=True)
class Pause:
    """An interval during which the clock does not run; ``end`` None while still paused."""

    start: dt.datetime
    end: dt.datetime | None = None

    def __post_init__(self) -> None:
        if self.end is not None and self.end < self.start:
            raise ValueError(
                f"pause ends ({self.end.isoformat()}) before it starts ({self.start.isoformat()})"
            )


def _calendar(calendar: WorkingCalendar | None) -> WorkingCalendar:
    return calendar if calendar is not None else default_calendar()


def counting_starts(received_at: dt.datetime, calendar: WorkingCalendar | None = None) -> dt.date:
    """The day a dossier counts as received (*D*): the day itself, or the next working day when
    it came after the 15:00 cut-off or on a day off. The deadline's day 1 is the working day after it.
    """
    cal = _calendar(calendar)
    local = cal.local(received_at)
    day = local.date()
    if cal.is_working_day(day) and not cal.is_after_cutoff(local):
        return day
    return cal.next_working_day(day)


def due_date(received_at: dt.datetime, working_days: int, calendar: WorkingCalendar | None = None) -> Due:
    """The due date of a dossier received at ``received_at`` with a deadline of ``working_days``.

    See the module docstring for the rule and its legal sources.
    """
    if working_days < 0:
        raise ValueError(f"working_days must not be negative, got {working_days}")
    cal = _calendar(calendar)
    day = cal.add_working_days(counting_starts(received_at, cal), working_days)
    return Due(on=day, at=cal.closing(day))


def leg_due(started_at: dt.datetime, share_working_days: int, calendar: WorkingCalendar | None = None) -> Due:
    """The due date of an agency leg handed over at ``started_at`` with its share of the deadline.

    A handoff follows the same rule as an intake (a leg started after 15:00 counts from the next
    working day), as Decree 61/2018 art. 19 applies it to passing dossiers between agencies.
    """
    return due_date(started_at, share_working_days, calendar)


def planned_leg_dues(
    procedure: Procedure, received_at: dt.datetime, calendar: WorkingCalendar | None = None
) -> dict[str, Due]:
    """Each step's due date if every earlier leg used its whole share (the supervision plan)."""
    cal = _calendar(calendar)
    start = counting_starts(received_at, cal)
    plan: dict[str, Due] = {}
    for step_id, offset in procedure.share_offsets().items():
        day = cal.add_working_days(start, offset)
        plan[step_id] = Due(on=day, at=cal.closing(day))
    return plan


@dataclass(frozen=True)
class DeadlineClock:
    """The statutory clock of one dossier (or one leg): immutable, every answer is "as of ``now``"."""

    received_at: dt.datetime
    working_days: int
    pauses: tuple[Pause, ...] = ()
    calendar: WorkingCalendar = field(default_factory=default_calendar, compare=False, repr=False)

    def __post_init__(self) -> None:
        self.calendar.local(self.received_at)  # refuses a naive datetime early
        if self.working_days < 0:
            raise ValueError(f"working_days must not be negative, got {self.working_days}")

    @property
    def counting_starts(self) -> dt.date:
        """The day the dossier counts as received (*D*, not itself counted)."""
        return counting_starts(self.received_at, self.calendar)

    @property
    def statutory_due(self) -> Due:
        """The due date on the appointment receipt, before any pause."""
        return due_date(self.received_at, self.working_days, self.calendar)

    @property
    def _running_from(self) -> dt.datetime:
        # Working time after the close of day D is what the N days are made of.
        return self.calendar.closing(self.counting_starts)

    def is_paused(self, now: dt.datetime) -> bool:
        """Whether a pause covers ``now``."""
        return any(p.start <= now and (p.end is None or now < p.end) for p in self.pauses)

    def pause(self, at: dt.datetime) -> DeadlineClock:
        """A clock paused from ``at`` on (waiting on the citizen)."""
        if any(p.end is None for p in self.pauses):
            raise ValueError("the clock is already paused")
        return replace(self, pauses=(*self.pauses, Pause(start=at)))

    def resume(self, at: dt.datetime) -> DeadlineClock:
        """The clock running again from ``at``."""
        open_pauses = [p for p in self.pauses if p.end is None]
        if not open_pauses:
            raise ValueError("the clock is not paused")
        closed = tuple(p if p.end is not None else Pause(start=p.start, end=at) for p in self.pauses)
        return replace(self, pauses=closed)

    def paused_working_time(self, now: dt.datetime) -> dt.timedelta:
        """Working time spent paused up to ``now`` after counting started (overlaps counted once)."""
        intervals = sorted(
            (max(p.start, self._running_from), min(p.end or now, now))
            for p in self.pauses
            if min(p.end or now, now) > max(p.start, self._running_from)
        )
        total = dt.timedelta(0)
        covered_until: dt.datetime | None = None
        for start, end in intervals:
            if covered_until is not None:
                start = max(start, covered_until)
            if end > start:
                total += self.calendar.working_time_between(start, end)
            covered_until = end if covered_until is None else max(covered_until, end)
        return total

    def due(self, now: dt.datetime) -> Due:
        """The due date extended by the pauses known at ``now`` (an open pause counts up to ``now``)."""
        at = self.calendar.add_working_time(self.statutory_due.at, self.paused_working_time(now))
        return Due(on=self.calendar.local(at).date(), at=at)

    def remaining_working_days(self, now: dt.datetime) -> float:
        """Working days left at ``now``: office time until the due instant over one office day.

        Equal to ``working_days`` until counting starts, fractional during a day, constant while
        paused or out of office hours, negative once overdue.
        """
        start = max(now, self._running_from)
        left = self.calendar.working_time_between(start, self.due(now).at)
        return left / self.calendar.day_length

    def is_overdue(self, now: dt.datetime) -> bool:
        """Whether ``now`` is past the (extended) due instant."""
        return now > self.due(now).at

    def apology_due_on(self, now: dt.datetime) -> dt.date:
        """The working day before the due date: the apology slip must be issued by then."""
        return self.calendar.previous_working_day(self.due(now).on)

    def is_apology_due(self, now: dt.datetime) -> bool:
        """Whether the apology slip is due at ``now`` (from the apology day on, overdue included)."""
        return self.calendar.local(now).date() >= self.apology_due_on(now)

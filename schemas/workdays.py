"""Vietnamese working days and office hours: which days count, and how to count them.

A working day is a Monday to Friday that is not a public holiday, or a make-up working day. Both
come from the ``holidays`` package: it follows the lunar calendar for Tết and Hùng Kings' day,
applies the Labor Code's "next working day off" rule when a holiday falls on a weekend, and knows
the swaps the Government has decreed so far (a weekday off in exchange for a Saturday worked, e.g.
Monday 31 August 2026 off for Saturday 22 August 2026, which its ``weekend_workdays`` lists). Swaps
and bridge days decreed after the package's release are not in it; give them to
:class:`WorkingCalendar` (``extra_days_off`` and ``extra_working_days``, which win over the
package) or in a YAML file read by :func:`load_calendar`::

    days_off: [2027-02-03]            # decreed extra days off (bridge days)
    working_days: [2027-02-20]        # make-up working Saturdays
    office_hours: {opens: "07:30", closes: "17:00", intake_cutoff: "15:00"}

Working *time* is the time inside office hours on working days; the lunch break is not taken out,
so one working day is ``closes - opens`` (9h30 by default). All datetimes must be timezone-aware;
days are the local days in ``Asia/Ho_Chi_Minh``, and :func:`vn_today` is "today" in that sense
(never the machine's local date, which is another day for part of every day outside UTC+7).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path
from typing import NamedTuple
from zoneinfo import ZoneInfo

import holidays
import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

VN_TZ = ZoneInfo("Asia/Ho_Chi_Minh")

_ONE_DAY = dt.timedelta(days=1)


def vn_today(now: dt.datetime | None = None) -> dt.date:
    """The date in Vietnam at ``now`` (timezone-aware), or at this instant when None.

    Vietnam's date is the one on receipts, registrations and certificates, whatever the zone of
    the machine the code runs on; naive datetimes are refused.
    """
    if now is None:
        return dt.datetime.now(VN_TZ).date()
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError(f"a timezone-aware datetime is required, got {now.isoformat()}")
    return now.astimezone(VN_TZ).date()


class _Year(NamedTuple):
    """What the ``holidays`` package knows of one year: days off and make-up working days."""

    days_off: frozenset[dt.date]
    make_up_days: frozenset[dt.date]

    @classmethod
    def of(cls, year: int) -> _Year:
        known = holidays.country_holidays("VN", years=year)
        # ``weekend_workdays`` also lists swaps of other years (those decreed across New Year).
        make_up = frozenset(day for day in known.weekend_workdays if day.year == year)
        return cls(frozenset(known.keys()), make_up)


class WorkingCalendar:
    """Vietnamese working days plus the office hours of one center. Treat it as immutable."""

    def __init__(
        self,
        *,
        extra_days_off: Iterable[dt.date] = (),
        extra_working_days: Iterable[dt.date] = (),
        opens: dt.time = dt.time(7, 30),
        closes: dt.time = dt.time(17, 0),
        intake_cutoff: dt.time = dt.time(15, 0),
        tz: ZoneInfo = VN_TZ,
    ) -> None:
        if not opens < closes:
            raise ValueError(f"office hours: opens {opens} must be before closes {closes}")
        if not opens <= intake_cutoff <= closes:
            raise ValueError(f"office hours: intake cut-off {intake_cutoff} must be within office hours")
        self.extra_days_off = frozenset(extra_days_off)
        self.extra_working_days = frozenset(extra_working_days)
        both = self.extra_days_off & self.extra_working_days
        if both:
            raise ValueError(f"days both off and working: {', '.join(sorted(map(str, both)))}")
        self.opens = opens
        self.closes = closes
        self.intake_cutoff = intake_cutoff
        self.tz = tz
        self.day_length = dt.datetime.combine(dt.date.min, closes) - dt.datetime.combine(dt.date.min, opens)
        self._years: dict[int, _Year] = {}

    # -- days -------------------------------------------------------------------------------

    def _year(self, year: int) -> _Year:
        known = self._years.get(year)
        if known is None:
            known = self._years[year] = _Year.of(year)
        return known

    def is_holiday(self, day: dt.date) -> bool:
        """Whether ``day`` is a public holiday (including observed days and configured days off)."""
        if day in self.extra_days_off:
            return True
        return day in self._year(day.year).days_off

    def is_make_up_day(self, day: dt.date) -> bool:
        """Whether ``day`` is a weekend day worked in exchange for a weekday off (package or config)."""
        if day.weekday() < 5 or day in self.extra_days_off:
            return False
        return day in self.extra_working_days or day in self._year(day.year).make_up_days

    def is_working_day(self, day: dt.date) -> bool:
        """Whether civil servants work on ``day`` (make-up Saturdays count, holidays don't)."""
        if day in self.extra_working_days:
            return True
        if day.weekday() >= 5:
            return self.is_make_up_day(day)
        return not self.is_holiday(day)

    def next_working_day(self, day: dt.date) -> dt.date:
        """The first working day strictly after ``day``."""
        day += _ONE_DAY
        while not self.is_working_day(day):
            day += _ONE_DAY
        return day

    def previous_working_day(self, day: dt.date) -> dt.date:
        """The last working day strictly before ``day``."""
        day -= _ONE_DAY
        while not self.is_working_day(day):
            day -= _ONE_DAY
        return day

    def add_working_days(self, day: dt.date, n: int) -> dt.date:
        """The ``n``-th working day after ``day`` (before it when ``n`` < 0); ``day`` itself when 0.

        ``day`` need not be a working day: ``add_working_days(saturday, 1)`` is the Monday.
        """
        step = self.next_working_day if n > 0 else self.previous_working_day
        for _ in range(abs(n)):
            day = step(day)
        return day

    def working_days_between(self, start: dt.date, end: dt.date) -> int:
        """How many working days lie after ``start`` up to and including ``end`` (negative if reversed).

        The inverse of :meth:`add_working_days`: ``add_working_days(a, working_days_between(a, b)) == b``
        whenever ``b`` is a working day.
        """
        if end < start:
            return -self.working_days_between(end, start)
        count = 0
        day = start + _ONE_DAY
        while day <= end:
            count += self.is_working_day(day)
            day += _ONE_DAY
        return count

    # -- instants ---------------------------------------------------------------------------

    def local(self, moment: dt.datetime) -> dt.datetime:
        """``moment`` in the calendar's timezone; naive datetimes are refused."""
        if moment.tzinfo is None or moment.utcoffset() is None:
            raise ValueError(f"a timezone-aware datetime is required, got {moment.isoformat()}")
        return moment.astimezone(self.tz)

    def opening(self, day: dt.date) -> dt.datetime:
        """When the office opens on ``day``."""
        return dt.datetime.combine(day, self.opens, tzinfo=self.tz)

    def closing(self, day: dt.date) -> dt.datetime:
        """When the office closes on ``day``: a result due that day is due by then."""
        return dt.datetime.combine(day, self.closes, tzinfo=self.tz)

    def is_after_cutoff(self, moment: dt.datetime) -> bool:
        """Whether ``moment`` is later than the intake cut-off of its day (15:00:00 itself is not)."""
        return self.local(moment).timetz().replace(tzinfo=None) > self.intake_cutoff

    def working_time_between(self, start: dt.datetime, end: dt.datetime) -> dt.timedelta:
        """Office time on working days between two instants (negative if ``end`` is before ``start``)."""
        if end < start:
            return -self.working_time_between(end, start)
        start, end = self.local(start), self.local(end)
        total = dt.timedelta(0)
        day = start.date()
        while day <= end.date():
            if self.is_working_day(day):
                lo = max(start, self.opening(day))
                hi = min(end, self.closing(day))
                if hi > lo:
                    total += hi - lo
            day += _ONE_DAY
        return total

    def add_working_time(self, start: dt.datetime, amount: dt.timedelta) -> dt.datetime:
        """The earliest instant at which ``amount`` of working time has passed since ``start``.

        ``amount`` zero returns ``start`` unchanged; a positive amount always lands inside the office
        hours of a working day (at closing time when it fills that day exactly).
        """
        if amount < dt.timedelta(0):
            raise ValueError("amount of working time must not be negative")
        if not amount:
            return start
        moment = self.local(start)
        day = moment.date()
        left = amount
        while True:
            if self.is_working_day(day):
                lo = max(moment, self.opening(day))
                hi = self.closing(day)
                if hi > lo:
                    if left <= hi - lo:
                        return lo + left
                    left -= hi - lo
            day += _ONE_DAY


class _OfficeHoursFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    opens: dt.time = dt.time(7, 30)
    closes: dt.time = dt.time(17, 0)
    intake_cutoff: dt.time = dt.time(15, 0)


class _CalendarFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    days_off: list[dt.date] = []
    working_days: list[dt.date] = []
    office_hours: _OfficeHoursFile = _OfficeHoursFile()


def load_calendar(path: Path | None = None) -> WorkingCalendar:
    """The calendar configured in the YAML file at ``path``, or the plain national one when None."""
    if path is None:
        return default_calendar()
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        config = _CalendarFile.model_validate(raw)
    except (OSError, yaml.YAMLError, ValidationError) as error:
        raise ValueError(f"calendar {path}: {error}") from error
    hours = config.office_hours
    return WorkingCalendar(
        extra_days_off=config.days_off,
        extra_working_days=config.working_days,
        opens=hours.opens,
        closes=hours.closes,
        intake_cutoff=hours.intake_cutoff,
    )


@lru_cache(maxsize=1)
def default_calendar() -> WorkingCalendar:
    """The national calendar from the ``holidays`` package, default office hours, no local extras."""
    return WorkingCalendar()

"""Vietnamese working days: weekends, Tết, 30/4–1/5, decreed extras, and working time."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import holidays
import pytest
from hypothesis import given
from hypothesis import strategies as st

from schemas.workdays import VN_TZ, WorkingCalendar, load_calendar

CAL = WorkingCalendar()
D = dt.date
days = st.dates(min_value=D(2025, 1, 1), max_value=D(2028, 12, 31))


def at(y: int, m: int, d: int, hh: int = 9, mm: int = 0) -> dt.datetime:
    return dt.datetime(y, m, d, hh, mm, tzinfo=VN_TZ)


def test_tet_2027_break_runs_from_4_to_10_february() -> None:
    # Lunar New Year is Saturday 6 Feb 2027; the days off falling on the weekend move to the
    # 29th of the last lunar month (Thu 4 Feb) and the 5th day (Wed 10 Feb).
    assert CAL.is_working_day(D(2027, 2, 3))
    assert [CAL.is_working_day(D(2027, 2, d)) for d in range(4, 11)] == [False] * 7
    assert CAL.next_working_day(D(2027, 2, 3)) == D(2027, 2, 11)


def test_tet_2026_break_is_monday_to_friday_16_to_20_february() -> None:
    assert CAL.is_working_day(D(2026, 2, 13))
    assert not any(CAL.is_working_day(D(2026, 2, d)) for d in range(14, 23))
    assert CAL.is_working_day(D(2026, 2, 23))


def test_reunification_and_labour_day() -> None:
    assert not CAL.is_working_day(D(2026, 4, 30))  # Thursday
    assert not CAL.is_working_day(D(2026, 5, 1))  # Friday
    assert CAL.next_working_day(D(2026, 4, 29)) == D(2026, 5, 4)
    # 2027: 1 May is a Saturday, so Monday 3 May is off instead.
    assert not CAL.is_working_day(D(2027, 4, 30))
    assert not CAL.is_working_day(D(2027, 5, 3))
    assert CAL.next_working_day(D(2027, 4, 29)) == D(2027, 5, 4)


def test_national_day_and_weekends() -> None:
    assert not CAL.is_working_day(D(2027, 9, 2))
    assert not CAL.is_working_day(D(2027, 9, 3))
    assert not CAL.is_working_day(D(2026, 3, 7))  # a Saturday
    assert CAL.is_working_day(D(2026, 3, 9))


def test_decreed_bridge_day_and_make_up_saturday() -> None:
    cal = WorkingCalendar(extra_days_off=[D(2026, 4, 29)], extra_working_days=[D(2026, 4, 25)])
    assert not cal.is_working_day(D(2026, 4, 29))
    assert cal.is_working_day(D(2026, 4, 25))  # a Saturday worked to make up for it
    assert cal.add_working_days(D(2026, 4, 24), 1) == D(2026, 4, 25)
    assert cal.next_working_day(D(2026, 4, 28)) == D(2026, 5, 4)


def test_make_up_saturday_known_to_the_package_is_a_working_day() -> None:
    # The Government swapped Mon 31 Aug 2026 (off, a bridge to National Day) for Sat 22 Aug 2026.
    assert CAL.is_working_day(D(2026, 8, 22))
    assert not CAL.is_working_day(D(2026, 8, 31))
    assert CAL.next_working_day(D(2026, 8, 21)) == D(2026, 8, 22)
    assert CAL.add_working_days(D(2026, 8, 24), -1) == D(2026, 8, 22)
    # Fri 21 Aug to Fri 4 Sep: Sat 22, Mon 24 - Fri 28, Thu 3 and Fri 4 Sep.
    assert CAL.working_days_between(D(2026, 8, 21), D(2026, 9, 4)) == 8


def test_configured_day_off_overrides_a_make_up_day_of_the_package() -> None:
    cal = WorkingCalendar(extra_days_off=[D(2026, 8, 22)])
    assert not cal.is_working_day(D(2026, 8, 22))
    assert cal.next_working_day(D(2026, 8, 21)) == D(2026, 8, 24)


def test_every_make_up_day_the_package_knows_for_2026_and_2027_is_a_working_day() -> None:
    known = holidays.country_holidays("VN", years=[2026, 2027])
    first, last = D(2026, 1, 1), D(2027, 12, 31)
    span = [first + dt.timedelta(days=n) for n in range((last - first).days + 1)]
    make_up = [day for day in span if known.is_weekend(day) and known.is_working_day(day)]
    assert D(2026, 8, 22) in make_up  # so the walk below is never over an empty list
    assert [day for day in make_up if not CAL.is_working_day(day)] == []
    assert all(CAL.is_make_up_day(day) for day in make_up)


def test_calendar_from_yaml(tmp_path: Path) -> None:
    path = tmp_path / "calendar.yaml"
    path.write_text(
        "days_off: [2027-02-03]\nworking_days: [2027-02-20]\noffice_hours: {intake_cutoff: '16:00'}\n",
        encoding="utf-8",
    )
    cal = load_calendar(path)
    assert not cal.is_working_day(D(2027, 2, 3))
    assert cal.is_working_day(D(2027, 2, 20))
    assert not cal.is_after_cutoff(at(2027, 2, 2, 15, 30))


def test_calendar_yaml_with_a_typo_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "calendar.yaml"
    path.write_text("day_off: [2027-02-03]\n", encoding="utf-8")
    with pytest.raises(ValueError, match="day_off"):
        load_calendar(path)


def test_add_working_days_skips_weekends_and_holidays() -> None:
    assert CAL.add_working_days(D(2026, 4, 29), 1) == D(2026, 5, 4)
    assert CAL.add_working_days(D(2026, 3, 7), 1) == D(2026, 3, 9)  # from a Saturday
    assert CAL.add_working_days(D(2026, 5, 4), -1) == D(2026, 4, 29)
    assert CAL.add_working_days(D(2026, 3, 7), 0) == D(2026, 3, 7)


def test_working_days_between() -> None:
    assert CAL.working_days_between(D(2027, 2, 3), D(2027, 2, 11)) == 1
    assert CAL.working_days_between(D(2027, 2, 11), D(2027, 2, 3)) == -1
    assert CAL.working_days_between(D(2026, 3, 9), D(2026, 3, 16)) == 5


def test_working_time_counts_office_hours_of_working_days_only() -> None:
    friday_4pm, monday_9am = at(2026, 3, 6, 16), at(2026, 3, 9, 9)
    assert CAL.working_time_between(friday_4pm, monday_9am) == dt.timedelta(hours=2, minutes=30)
    assert CAL.add_working_time(friday_4pm, dt.timedelta(hours=2, minutes=30)) == monday_9am
    assert CAL.working_time_between(monday_9am, friday_4pm) == -dt.timedelta(hours=2, minutes=30)


def test_naive_datetimes_are_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        CAL.is_after_cutoff(dt.datetime(2026, 3, 9, 9))


@given(days, st.integers(0, 40), st.integers(0, 40))
def test_adding_n_then_m_is_adding_n_plus_m(day: dt.date, n: int, m: int) -> None:
    assert CAL.add_working_days(CAL.add_working_days(day, n), m) == CAL.add_working_days(day, n + m)


@given(days, st.integers(1, 40))
def test_added_days_are_working_days_and_counted_back(day: dt.date, n: int) -> None:
    end = CAL.add_working_days(day, n)
    assert CAL.is_working_day(end)
    assert CAL.working_days_between(day, end) == n
    assert CAL.add_working_days(end, -n) <= day


@given(
    st.datetimes(min_value=dt.datetime(2026, 1, 1), max_value=dt.datetime(2027, 12, 31)),
    st.integers(0, 5 * 24 * 60),
)
def test_working_time_added_is_working_time_measured(start: dt.datetime, minutes: int) -> None:
    begin = start.replace(tzinfo=VN_TZ)
    amount = dt.timedelta(minutes=minutes)
    assert CAL.working_time_between(begin, CAL.add_working_time(begin, amount)) == amount

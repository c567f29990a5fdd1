"""The statutory deadline clock: receipts around Tết and 30/4, pauses, overdue, the apology slip."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from schemas.catalog import load_catalog
from schemas.deadlines import DeadlineClock, Due, Pause, counting_starts, due_date, leg_due, planned_leg_dues
from schemas.workdays import VN_TZ, WorkingCalendar, default_calendar

CAL = default_calendar()
D = dt.date


def at(y: int, m: int, d: int, hh: int = 9, mm: int = 0) -> dt.datetime:
    return dt.datetime(y, m, d, hh, mm, tzinfo=VN_TZ)


def due_on(y: int, m: int, d: int) -> Due:
    return Due(on=D(y, m, d), at=at(y, m, d, 17, 0))


# -- the receipt --------------------------------------------------------------------------------


def test_after_cutoff_on_the_last_working_day_before_tet_2027() -> None:
    # Received Wed 3 Feb 2027 at 15:30, the last working day before Tết, 10 working days.
    # After 15:00, so the dossier counts as received on the next working day. Tết 2027 (1st day
    # Sat 6 Feb): Thu 4 and Fri 5 off, Sat 6 / Sun 7 weekend, Mon 8 - Wed 10 off. So day D is
    # Thu 11 Feb, which is not counted itself. Counting:
    #   Fri 12 Feb = 1, Mon 15 = 2, Tue 16 = 3, Wed 17 = 4, Thu 18 = 5,
    #   Fri 19 = 6, Mon 22 = 7, Tue 23 = 8, Wed 24 = 9, Thu 25 Feb = 10.
    # The receipt says: due Thursday 25 February 2027, by closing time.
    received = at(2027, 2, 3, 15, 30)
    assert counting_starts(received) == D(2027, 2, 11)
    assert due_date(received, 10) == due_on(2027, 2, 25)


def test_before_cutoff_the_same_day_is_day_zero() -> None:
    # Wed 3 Feb 2027 at 10:00: D = 3 Feb; day 1 is Thu 11 Feb, day 10 is Wed 24 Feb.
    assert due_date(at(2027, 2, 3, 10), 10) == due_on(2027, 2, 24)


def test_exactly_three_pm_is_still_the_same_day() -> None:
    assert counting_starts(at(2026, 3, 10, 15, 0)) == D(2026, 3, 10)
    assert counting_starts(at(2026, 3, 10, 15, 1)) == D(2026, 3, 11)
    assert due_date(at(2026, 3, 10, 15, 0), 3).on == D(2026, 3, 13)
    assert due_date(at(2026, 3, 10, 15, 1), 3).on == D(2026, 3, 16)


def test_weekend_intake_counts_from_monday() -> None:
    # Online on Saturday 7 March 2026: received Monday 9 March, due 3 working days later.
    assert counting_starts(at(2026, 3, 7, 10)) == D(2026, 3, 9)
    assert due_date(at(2026, 3, 7, 10), 3) == due_on(2026, 3, 12)


def test_same_day_procedure_is_due_today_or_next_working_day_after_cutoff() -> None:
    assert due_date(at(2026, 3, 10, 9), 0).on == D(2026, 3, 10)
    assert due_date(at(2026, 3, 13, 16), 0).on == D(2026, 3, 16)  # Friday after 15:00 → Monday


def test_reunification_and_labour_day_2026() -> None:
    # Wed 29 Apr 2026 at 14:00, 3 days: Thu 30/4 and Fri 1/5 off, weekend; Mon 4 May = 1,
    # Tue 5 = 2, Wed 6 May = 3.
    assert due_date(at(2026, 4, 29, 14), 3) == due_on(2026, 5, 6)


def test_reunification_and_labour_day_2027() -> None:
    # Thu 29 Apr 2027 at 16:00, 5 days: after the cut-off, and Fri 30/4, Sat 1/5 (observed Mon
    # 3/5) are off, so D = Tue 4 May; Wed 5 = 1, Thu 6 = 2, Fri 7 = 3, Mon 10 = 4, Tue 11 May = 5.
    assert counting_starts(at(2027, 4, 29, 16)) == D(2027, 5, 4)
    assert due_date(at(2027, 4, 29, 16), 5) == due_on(2027, 5, 11)


def test_decreed_bridge_day_moves_the_due_date() -> None:
    cal = WorkingCalendar(extra_days_off=[D(2027, 2, 11)])
    assert due_date(at(2027, 2, 3, 15, 30), 10, cal).on == D(2027, 2, 26)


def test_make_up_saturday_22_august_2026_brings_the_due_date_a_day_earlier() -> None:
    # Fri 21 Aug 2026 at 10:00, 10 days. Sat 22 Aug is worked in exchange for Mon 31 Aug off
    # (the package's substituted day), then 1-2 Sep are National Day: Sat 22 = 1, Mon 24 - Fri 28
    # = 2..6, Thu 3 Sep = 7, Fri 4 = 8, Mon 7 = 9, Tue 8 Sep = 10 (Wed 9 if 22 Aug were off).
    assert due_date(at(2026, 8, 21, 10), 10) == due_on(2026, 9, 8)
    # A 5-day procedure received that Friday is due Thursday 27 August, not Friday 28.
    assert due_date(at(2026, 8, 21, 10), 5) == due_on(2026, 8, 27)
    # After the cut-off on Friday, the dossier counts as received on the make-up Saturday itself.
    assert counting_starts(at(2026, 8, 21, 15, 30)) == D(2026, 8, 22)


def test_leg_due_and_planned_leg_dues() -> None:
    # Tax receives the land-transfer dossier at 16:00 Friday 6 Mar 2026 with a 3-day share.
    assert leg_due(at(2026, 3, 6, 16), 3) == due_on(2026, 3, 12)
    land = load_catalog().procedure("9.900001")
    plan = planned_leg_dues(land, at(2026, 3, 9, 9))
    assert {step: due.on for step, due in plan.items()} == {
        "check_dossier": D(2026, 3, 12),
        "assess_obligations": D(2026, 3, 17),
        "register_transfer": D(2026, 3, 23),
    }
    assert plan["register_transfer"] == due_date(at(2026, 3, 9, 9), land.deadline_working_days)


# -- the running clock ----------------------------------------------------------------------------


def test_apology_slip_is_due_the_working_day_before() -> None:
    clock = DeadlineClock(received_at=at(2027, 2, 3, 15, 30), working_days=10)
    assert clock.apology_due_on(at(2027, 2, 12)) == D(2027, 2, 24)
    assert not clock.is_apology_due(at(2027, 2, 23, 16))
    assert clock.is_apology_due(at(2027, 2, 24, 8))
    # Due Monday → the slip is due the Friday before.
    monday = DeadlineClock(received_at=at(2026, 3, 9, 9), working_days=5)
    assert monday.statutory_due.on == D(2026, 3, 16)
    assert monday.apology_due_on(at(2026, 3, 9, 9)) == D(2026, 3, 13)


def test_overdue_after_closing_time_of_the_due_day() -> None:
    clock = DeadlineClock(received_at=at(2026, 3, 9, 9), working_days=3)
    assert not clock.is_overdue(at(2026, 3, 12, 17, 0))
    assert clock.is_overdue(at(2026, 3, 12, 17, 1))
    assert clock.remaining_working_days(at(2026, 3, 13, 17)) == pytest.approx(-1.0)


def test_remaining_days_are_the_full_deadline_until_counting_starts() -> None:
    clock = DeadlineClock(received_at=at(2026, 3, 9, 9), working_days=3)
    assert clock.remaining_working_days(at(2026, 3, 9, 10)) == 3
    assert clock.remaining_working_days(at(2026, 3, 10, 12, 15)) == pytest.approx(2.5)  # half of 9h30 gone
    assert clock.remaining_working_days(at(2026, 3, 12, 17)) == 0


def test_paying_tax_for_two_working_days_moves_the_due_date_two_days() -> None:
    # Land transfer received Mon 9 Mar 2026, due Mon 23 Mar. Tax notice issued Mon 16 Mar at 09:00;
    # the citizen pays on Wed 18 Mar at 09:00: two working days paused.
    clock = DeadlineClock(received_at=at(2026, 3, 9, 9), working_days=10)
    paused = clock.pause(at(2026, 3, 16, 9))
    assert paused.is_paused(at(2026, 3, 17, 9))
    frozen = paused.remaining_working_days(at(2026, 3, 16, 9))
    assert paused.remaining_working_days(at(2026, 3, 17, 16)) == pytest.approx(frozen)
    resumed = paused.resume(at(2026, 3, 18, 9))
    assert not resumed.is_paused(at(2026, 3, 18, 10))
    assert resumed.due(at(2026, 3, 18, 10)) == due_on(2026, 3, 25)
    assert clock.statutory_due == due_on(2026, 3, 23)


def test_pause_over_tet_costs_nothing_but_working_days() -> None:
    clock = DeadlineClock(
        received_at=at(2027, 1, 25, 9),
        working_days=10,
        pauses=(Pause(start=at(2027, 2, 3, 17), end=at(2027, 2, 11, 7, 30)),),
    )
    assert clock.due(at(2027, 3, 1)) == clock.statutory_due


def test_pause_misuse_is_refused() -> None:
    clock = DeadlineClock(received_at=at(2026, 3, 9, 9), working_days=3)
    with pytest.raises(ValueError, match="not paused"):
        clock.resume(at(2026, 3, 10))
    with pytest.raises(ValueError, match="already paused"):
        clock.pause(at(2026, 3, 10)).pause(at(2026, 3, 11))
    with pytest.raises(ValueError, match="before it starts"):
        Pause(start=at(2026, 3, 10), end=at(2026, 3, 9))
    with pytest.raises(ValueError, match="timezone-aware"):
        DeadlineClock(received_at=dt.datetime(2026, 3, 9, 9), working_days=3)


# -- invariants -----------------------------------------------------------------------------------

moments = st.datetimes(min_value=dt.datetime(2025, 12, 1), max_value=dt.datetime(2027, 12, 31)).map(
    lambda moment: moment.replace(tzinfo=VN_TZ)
)
deadlines = st.integers(min_value=0, max_value=25)
spans = st.timedeltas(min_value=dt.timedelta(0), max_value=dt.timedelta(days=20))


@given(moments, deadlines)
def test_due_date_is_a_working_day_not_before_counting_starts(received: dt.datetime, n: int) -> None:
    due = due_date(received, n)
    assert CAL.is_working_day(due.on)
    assert due.on >= counting_starts(received) >= received.date()
    assert due.at == CAL.closing(due.on)


@given(moments, deadlines, st.integers(min_value=0, max_value=10))
def test_more_working_days_never_give_an_earlier_due_date(received: dt.datetime, n: int, more: int) -> None:
    assert due_date(received, n + more).on >= due_date(received, n).on


@given(moments, deadlines, spans, spans, spans)
def test_a_pause_never_brings_the_due_date_forward(
    received: dt.datetime, n: int, offset: dt.timedelta, length: dt.timedelta, later: dt.timedelta
) -> None:
    plain = DeadlineClock(received_at=received, working_days=n)
    start = received + offset
    paused = DeadlineClock(received_at=received, working_days=n, pauses=(Pause(start, start + length),))
    now = start + length + later
    assert paused.due(now).at >= plain.due(now).at
    assert CAL.is_working_day(paused.due(now).on)
    empty = DeadlineClock(received_at=received, working_days=n, pauses=(Pause(start, start),))
    assert empty.due(now) == plain.due(now)


@given(moments, deadlines, spans, spans, st.lists(spans, min_size=2, max_size=4))
def test_remaining_days_never_increase_as_time_passes(
    received: dt.datetime, n: int, offset: dt.timedelta, length: dt.timedelta, steps: list[dt.timedelta]
) -> None:
    start = received + offset
    clock = DeadlineClock(received_at=received, working_days=n, pauses=(Pause(start, start + length),))
    now = received
    previous = clock.remaining_working_days(now)
    assert previous <= n
    for step in steps:
        now += step
        current = clock.remaining_working_days(now)
        assert current <= previous + 1e-9
        previous = current


@given(moments, deadlines, st.one_of(st.none(), spans))
def test_apology_day_is_a_working_day_strictly_before_the_due_date(
    received: dt.datetime, n: int, paused_for: dt.timedelta | None
) -> None:
    clock = DeadlineClock(received_at=received, working_days=n)
    if paused_for is not None:
        clock = clock.pause(received).resume(received + paused_for)
    now = received + dt.timedelta(days=60)
    apology = clock.apology_due_on(now)
    assert CAL.is_working_day(apology)
    assert apology < clock.due(now).on
    assert CAL.next_working_day(apology) == clock.due(now).on

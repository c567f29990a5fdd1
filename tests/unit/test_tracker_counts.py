"""The gauges and the statistics count closed dossiers from kept tallies, evaluating only the live ones
as of now, and give exactly what evaluating every dossier gives."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import AsyncIterator, Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest

from schemas.agencies import Agency
from schemas.events import DossierReceived
from schemas.status import NationalStatus
from schemas.workdays import WorkingCalendar
from services.runtime.observe.metrics import LegState, OpenDossierState, RatioScope
from services.runtime.storage.database import Row
from services.tracker.gauges import Snapshot, refresh, snapshot, zeroed_snapshot
from services.tracker.views import (
    AgencyStats,
    ProcedureStats,
    Stats,
    StatusCount,
    Totals,
    TrackerViews,
)
from tests.factories import dossier_received, outcome_for
from tests.unit.test_tracker import (
    BIRTH,
    CATALOG,
    MARRIAGE,
    MONDAY_9AM,
    Tracker,
    closed,
    closed_marriage,
    in_progress_marriage,
    land_transfer_story,
    local,
    receive,
    requested,
    status,
)

# --- the reference: every dossier evaluated as of now (what the gauges and /stats did before) -------


def reference_snapshot(views: TrackerViews) -> Snapshot:
    shot = zeroed_snapshot(views)
    closed: dict[str, int] = defaultdict(int)
    closed_on_time: dict[str, int] = defaultdict(int)
    completed: dict[str, int] = defaultdict(int)
    completed_late: dict[str, int] = defaultdict(int)
    for detail, legs in views.evaluated():
        code = detail.procedure.code if detail.procedure is not None else None
        if code is not None and not detail.closed:
            state = (
                OpenDossierState.OVERDUE
                if detail.overdue
                else OpenDossierState.PAUSED
                if detail.paused
                else OpenDossierState.IN_PROGRESS
            )
            shot.dossiers[(code, state)] += 1
            shot.apology_due[code] += detail.apology_due
            shot.waiting_too_long[code] += detail.waiting_too_long
        if code is not None and detail.closed:
            closed[code] += 1
            closed_on_time[code] += bool(detail.on_time)
        for leg, is_open in legs:
            if leg.stuck:
                shot.legs[(leg.agency, LegState.STUCK)] += 1
            if is_open and leg.state == "requested":
                shot.legs[(leg.agency, LegState.REQUESTED)] += 1
            if is_open and leg.state == "waiting_on_citizen":
                shot.legs[(leg.agency, LegState.WAITING_ON_CITIZEN)] += 1
            if is_open and leg.overdue:
                shot.legs[(leg.agency, LegState.OVERDUE)] += 1
            if leg.state == "completed":
                completed[leg.agency] += 1
                completed_late[leg.agency] += leg.overdue
    for code, count in closed.items():
        shot.on_time_ratio[(RatioScope.PROCEDURE, code)] = closed_on_time[code] / count
    for agency_name, count in completed.items():
        shot.on_time_ratio[(RatioScope.AGENCY, agency_name)] = (count - completed_late[agency_name]) / count
    return shot


def reference_stats(views: TrackerViews) -> Stats:
    now = views.now()
    by_status = dict.fromkeys(NationalStatus, 0)
    agencies: dict[str, dict[str, int]] = {a.value: defaultdict(int) for a in Agency}
    catalog = {p.code: p for p in views.catalog.procedures}
    procedures: dict[str, dict[str, int]] = {code: defaultdict(int) for code in catalog}
    totals: dict[str, int] = defaultdict(int)
    for d, legs in views.evaluated():
        totals["dossiers"] += 1
        if d.status is None:
            totals["unknown_status"] += 1
        else:
            by_status[NationalStatus(d.status.code)] += 1
        in_progress = not d.closed
        totals["in_progress" if in_progress else "closed"] += 1
        totals["on_time"] += bool(d.closed and d.on_time)
        totals["overdue"] += in_progress and d.overdue
        totals["apology_due"] += d.apology_due
        totals["paused"] += in_progress and d.paused
        totals["stuck_dossiers"] += d.stuck
        if d.procedure is not None:
            counts = procedures.setdefault(d.procedure.code, defaultdict(int))
            counts["in_progress" if in_progress else "closed"] += 1
            counts["on_time"] += bool(d.closed and d.on_time)
            counts["overdue"] += in_progress and d.overdue
        for v, is_open in legs:
            counts = agencies.setdefault(v.agency, defaultdict(int))
            counts["open"] += is_open
            counts["waiting_on_citizen"] += is_open and v.state == "waiting_on_citizen"
            counts["stuck"] += v.stuck
            counts["overdue"] += is_open and v.overdue
            if v.state == "completed":
                counts["completed"] += 1
                counts["completed_late"] += v.overdue
            elif v.state == "rejected":
                counts["rejected"] += 1
            totals["stuck_legs"] += v.stuck

    def ratio(part: int, whole: int) -> float | None:
        return round(part / whole, 4) if whole else None

    return Stats(
        as_of=now,
        totals=Totals(
            **{k: totals[k] for k in Totals.model_fields if k != "on_time_ratio"},
            on_time_ratio=ratio(totals["on_time"], totals["closed"]),
        ),
        by_status=[StatusCount(code=int(s), vi=s.vi, en=s.en, count=n) for s, n in by_status.items()],
        by_agency=[
            AgencyStats(
                agency=agency,
                **{k: c[k] for k in AgencyStats.model_fields if k not in ("agency", "on_time_ratio")},
                on_time_ratio=ratio(c["completed"] - c["completed_late"], c["completed"]),
            )
            for agency, c in agencies.items()
        ],
        by_procedure=[
            ProcedureStats(
                code=code,
                name_vi=catalog[code].name_vi if code in catalog else None,
                name_en=catalog[code].name_en if code in catalog else None,
                in_progress=c["in_progress"],
                closed=c["closed"],
                on_time=c["on_time"],
                on_time_ratio=ratio(c["on_time"], c["closed"]),
                overdue=c["overdue"],
            )
            for code, c in procedures.items()
        ],
    )


def assert_counts_as_evaluating_everything(views: TrackerViews) -> None:
    assert snapshot(views) == reference_snapshot(views)
    assert views.stats() == reference_stats(views)


# --- the harness ----------------------------------------------------------------------------------


@pytest.fixture
async def tracker(tmp_path: Path) -> AsyncIterator[Tracker]:
    tracker = Tracker(tmp_path / "tracker.db")
    await tracker.start()
    yield tracker
    await tracker.stop()


def views_of(tracker: Tracker, calendar: WorkingCalendar | None = None) -> TrackerViews:
    return TrackerViews(tracker.store.conn, CATALOG, calendar=calendar, now=lambda: tracker.now)


@pytest.fixture
def evaluations(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """The ids of the dossiers evaluated, in order, by any TrackerViews."""
    seen: list[str] = []
    evaluate = TrackerViews._evaluate

    def counting(self: TrackerViews, row: Row, *args: Any) -> Any:
        seen.append(row["dossier_id"])
        return evaluate(self, row, *args)

    monkeypatch.setattr(TrackerViews, "_evaluate", counting)
    yield seen


def elsewhere(received: DossierReceived, code: str) -> DossierReceived:
    """The same receipt for a procedure outside this tracker's catalog."""
    return received.model_copy(update={"data": received.data.model_copy(update={"procedure_code": code})})


class Mixed:
    """Open, paused, overdue-to-be, closed on time and late, stuck, unknown and out-of-catalog dossiers."""

    async def feed(self, tracker: Tracker) -> None:
        await in_progress_marriage(tracker)  # overdue from Tue 8 Dec
        _, land_events = land_transfer_story()
        await tracker.feed(*land_events[:8])  # waiting on the citizen to pay: paused
        self.closed_on_time = await closed_marriage(tracker, on_time=True)
        await closed_marriage(tracker, on_time=False)  # its leg completed late
        self.closed_land, self.closed_land_events = land_transfer_story()
        await tracker.feed(*self.closed_land_events)

        birth = receive(BIRTH)
        registered = requested(birth, "register_birth", MONDAY_9AM)
        born = outcome_for(registered, "completed", after=timedelta(hours=2))
        card = self.card = requested(birth, "issue_health_card", born.occurred_at, cause=born)
        stuck = outcome_for(
            card, "dead_lettered", after=timedelta(minutes=15), reason="unreachable", error_class="transient"
        )
        await tracker.feed(
            birth,
            registered,
            born,
            card,
            stuck,
            status(birth, NationalStatus.PROCESSED, NationalStatus.IN_PROGRESS, local(12, 1, 10)),
            closed(birth, local(12, 1, 10), on_time=True, partial=True, reason="no health card"),
        )

        _, orphan_events = land_transfer_story()
        await tracker.feed(orphan_events[3])  # an outcome of a dossier not received yet: no status
        later = elsewhere(receive(MARRIAGE), "9.999998")
        # Seen a minute after: listed after 9.999998 although its code sorts first.
        earlier = elsewhere(
            dossier_received(MARRIAGE, received_at=MONDAY_9AM + timedelta(minutes=1)), "9.999997"
        )
        await tracker.feed(later, earlier, closed(earlier, local(12, 2, 10), on_time=False))

    async def late_events(self, tracker: Tracker) -> None:
        """Events about dossiers already closed and counted."""
        # The dead-lettered leg, replayed, completes after the closing: no longer stuck, and late.
        await tracker.feed(outcome_for(self.card, "completed", after=timedelta(days=6)))
        # A second closing (a new event): the dossier did not close on time after all.
        await tracker.feed(closed(self.closed_on_time, local(12, 9, 10), on_time=False))
        # A status change that paused the land transfer's clock, arriving late: its legs' due dates move.
        late_pause = status(
            self.closed_land,
            NationalStatus.SUPPLEMENT_REQUESTED,
            NationalStatus.IN_PROGRESS,
            local(11, 30, 10),
            paused=True,
        )
        resumed = status(
            self.closed_land,
            NationalStatus.IN_PROGRESS,
            NationalStatus.SUPPLEMENT_REQUESTED,
            local(12, 1, 9),
        )
        await tracker.feed(late_pause, resumed)
        tracker.apply_again(self.closed_land_events[-1])  # the closing applied once more


# --- the tests ------------------------------------------------------------------------------------


async def test_the_counts_are_those_of_every_dossier_evaluated_as_of_now(tracker: Tracker) -> None:
    mixed = Mixed()
    await mixed.feed(tracker)
    views = views_of(tracker)
    tracker.now = local(12, 3, 10)
    assert_counts_as_evaluating_everything(views)
    before = snapshot(views)
    assert before.legs[("social_insurance", LegState.STUCK)] == 1
    assert before.dossiers[(MARRIAGE, OpenDossierState.IN_PROGRESS)] == 1
    assert before.dossiers[("9.999998", OpenDossierState.IN_PROGRESS)] == 1
    assert before.on_time_ratio[(RatioScope.PROCEDURE, MARRIAGE)] == 1 / 2
    assert [p.code for p in views.stats().by_procedure][-2:] == ["9.999998", "9.999997"]

    await mixed.late_events(tracker)
    tracker.now = local(12, 10, 10)  # the open marriage is overdue now, its apology slip due
    assert_counts_as_evaluating_everything(views)
    after = snapshot(views)
    assert after.legs[("social_insurance", LegState.STUCK)] == 0
    assert after.on_time_ratio[(RatioScope.PROCEDURE, MARRIAGE)] == 0.0
    assert after.on_time_ratio[(RatioScope.AGENCY, "social_insurance")] == 0.0
    assert after.dossiers[(MARRIAGE, OpenDossierState.OVERDUE)] == 1
    assert after.apology_due[MARRIAGE] == 1
    # Another reader of the same database (the API's views) agrees without judging anything again.
    assert views_of(tracker).stats() == reference_stats(views)


async def test_a_refresh_evaluates_only_the_live_dossiers_and_those_written_to(
    tracker: Tracker, evaluations: list[str]
) -> None:
    done = [await closed_marriage(tracker, on_time=i % 3 != 0) for i in range(30)]
    live = {str((await in_progress_marriage(tracker)).dossier_id) for _ in range(3)}
    tracker.now = local(12, 10, 10)
    views = views_of(tracker)

    first = snapshot(views)
    assert len(evaluations) == 33, "the closed dossiers are judged once"
    evaluations.clear()
    assert snapshot(views) == first
    assert sorted(evaluations) == sorted(live), "then only the live ones are evaluated"
    assert first == reference_snapshot(views)

    evaluations.clear()
    await tracker.feed(closed(done[1], local(12, 9, 11), on_time=False))  # a late closing event
    changed = snapshot(views)
    assert sorted(evaluations) == sorted([*live, str(done[1].dossier_id)])
    assert changed == reference_snapshot(views) and changed != first


async def test_a_database_from_before_the_tallies_is_counted_in_full(tracker: Tracker) -> None:
    mixed = Mixed()
    await mixed.feed(tracker)
    tracker.now = local(12, 3, 10)
    snapshot(views_of(tracker))
    # As a tracker of the previous version left it: no tallies, no triggers, and events it projected.
    conn = tracker.store.conn
    for (trigger,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'").fetchall():
        conn.execute(f"DROP TRIGGER {trigger}")
    for table in ("closed_tallies", "closed_totals", "tally_state", "tally_dirty", "schema_version"):
        conn.execute(f"DROP TABLE {table}")
    conn.execute("DROP INDEX dossiers_live")
    await mixed.late_events(tracker)
    await tracker.service.restart()  # this version starts on that database

    views = views_of(tracker)
    tracker.now = local(12, 10, 10)
    assert_counts_as_evaluating_everything(views)


async def test_closed_dossiers_are_judged_again_under_another_calendar(tracker: Tracker) -> None:
    late = await closed_marriage(tracker, on_time=False)  # closed Wed 9 Dec, its leg late
    await tracker.feed(status(late, NationalStatus.PROCESSED, NationalStatus.IN_PROGRESS, local(12, 9, 10)))
    tracker.now = local(12, 10, 10)
    national = views_of(tracker)
    assert snapshot(national).on_time_ratio[(RatioScope.AGENCY, "civil_status")] == 0.0

    # A week of decreed days off: the leg finished within its share after all.
    week_off = WorkingCalendar(extra_days_off=[date(2026, 12, day) for day in range(1, 8)])
    local_center = views_of(tracker, week_off)
    assert snapshot(local_center).on_time_ratio[(RatioScope.AGENCY, "civil_status")] == 1.0
    assert_counts_as_evaluating_everything(local_center)
    assert_counts_as_evaluating_everything(national)


async def test_a_refresh_lets_the_event_loop_run_between_batches(tracker: Tracker) -> None:
    mixed = Mixed()
    await mixed.feed(tracker)
    for _ in range(6):
        await in_progress_marriage(tracker)
    tracker.now = local(12, 3, 10)
    views = views_of(tracker)
    turns = 0
    refreshing = asyncio.ensure_future(refresh(views, batch=2))
    while not refreshing.done():
        turns += 1
        await asyncio.sleep(0)
    assert await refreshing == reference_snapshot(views)
    assert turns > 5, "the refresh yields between batches of dossiers"

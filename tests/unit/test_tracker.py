"""The tracker answers supervision questions from the events it saw — without a broker.

Events are fed through the same path the runtime takes (handler → one transaction with the event id),
and the answers are read over HTTP from the tracker's API mounted on a bare FastAPI app.
"""

from __future__ import annotations

import json
import random
import sqlite3
import uuid
from collections.abc import AsyncIterator, Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from schemas.catalog import load_catalog
from schemas.deadlines import leg_due
from schemas.envelope import Event
from schemas.events import (
    ClosedResult,
    DossierClosed,
    DossierClosedData,
    DossierReceived,
    DossierStatusChanged,
    DossierStatusChangedData,
    HandoffRequested,
    HandoffRequestedData,
)
from schemas.status import NationalStatus
from schemas.workdays import VN_TZ
from services.tracker import projection
from services.tracker.app import TrackerSettings, build_app, tracker_topics
from services.tracker.gauges import snapshot
from services.tracker.store import TrackerStore
from services.tracker.views import TrackerViews
from tests.factories import dossier_received, example_form, outcome_for
from tests.in_memory import InMemoryService

LAND_TRANSFER, BIRTH, MARRIAGE = "9.900001", "9.900003", "9.900005"
CATALOG = load_catalog()


def local(month: int, day: int, hour: int, minute: int = 0) -> datetime:
    """An instant in Hà Nội time, late 2026 (no public holiday from 25 November to the end of the year)."""
    return datetime(2026, month, day, hour, minute, tzinfo=VN_TZ).astimezone(UTC)


MONDAY_9AM = local(11, 30, 9)


def receive(procedure_code: str) -> DossierReceived:
    return dossier_received(procedure_code, received_at=MONDAY_9AM)


# --- building the events the router would emit --------------------------------------------------


def requested(
    received: DossierReceived, step_id: str, at: datetime, cause: Event | None = None
) -> HandoffRequested:
    step = CATALOG.procedure(received.data.procedure_code).step(step_id)
    data = HandoffRequestedData(
        handoff_id=uuid.uuid4(),
        dossier_code=received.data.dossier_code,
        procedure_code=received.data.procedure_code,
        step_id=step_id,
        agency=step.agency,
        action=step.action,
        form_kind=received.data.form_kind,
        form=received.data.form,
        inputs={},
        leg_due_at=leg_due(at, step.share_working_days).at,
        dossier_due_at=received.data.due_at,
    )
    return HandoffRequested.create(data=data, producer="router", caused_by=cause or received, occurred_at=at)


def status(
    received: DossierReceived,
    new: NationalStatus,
    previous: NationalStatus,
    at: datetime,
    *,
    holder: str | None = None,
    paused: bool = False,
    reason: str | None = None,
) -> DossierStatusChanged:
    data = DossierStatusChangedData.model_validate(
        {
            "dossier_code": received.data.dossier_code,
            "procedure_code": received.data.procedure_code,
            "status": new,
            "previous_status": previous,
            "holder": holder,
            "reason": reason,
            "clock_paused": paused,
        },
        strict=False,
    )
    return DossierStatusChanged.create(data=data, producer="router", caused_by=received, occurred_at=at)


def closed(
    received: DossierReceived,
    at: datetime,
    *,
    on_time: bool,
    result: ClosedResult = ClosedResult.COMPLETED,
    partial: bool = False,
    reason: str | None = None,
) -> DossierClosed:
    final = NationalStatus.PROCESSED if result is ClosedResult.COMPLETED else NationalStatus.STOPPED
    data = DossierClosedData(
        dossier_code=received.data.dossier_code,
        procedure_code=received.data.procedure_code,
        final_status=final,
        result=result,
        partial=partial,
        reason=reason,
        closed_at=at,
        on_time=on_time,
    )
    return DossierClosed.create(data=data, producer="router", caused_by=received, occurred_at=at)


def after(request: HandoffRequested, at: datetime) -> timedelta:
    return at - request.occurred_at


def land_transfer_story() -> tuple[DossierReceived, list[Event]]:
    """A land transfer from receipt to closing, with the tax waiting two working days for payment.

    Received Mon 30 Nov 09:00; land checks by Tue; tax issues its notice Wed 10:00 (clock paused);
    payment confirmed Fri 10:00 (clock runs again); land registers the transfer Tue 8 Dec 10:00.
    """
    received = receive(LAND_TRANSFER)
    check = requested(received, "check_dossier", MONDAY_9AM + timedelta(seconds=1))
    checked = outcome_for(check, "completed", after=after(check, local(12, 1, 10)))
    checked = checked.model_copy(
        update={"data": checked.data.model_copy(update={"agency_reference": "VPDK-1"})}
    )
    tax = requested(received, "assess_obligations", local(12, 1, 10), cause=checked)
    notice = {"notice_no": "TB-9", "total_vnd": 87_500_000}
    waiting = outcome_for(
        tax, "waiting_on_citizen", after=after(tax, local(12, 2, 10)), reason="Chờ nộp thuế", result=notice
    )
    paid = outcome_for(tax, "completed", after=after(tax, local(12, 4, 10)), result=notice)
    register = requested(received, "register_transfer", local(12, 4, 10), cause=paid)
    registered = outcome_for(register, "completed", after=after(register, local(12, 8, 10)))
    events: list[Event] = [
        received,
        check,
        status(
            received, NationalStatus.IN_PROGRESS, NationalStatus.ACCEPTED, check.occurred_at, holder="land"
        ),
        checked,
        tax,
        status(
            received, NationalStatus.IN_PROGRESS, NationalStatus.IN_PROGRESS, tax.occurred_at, holder="tax"
        ),
        waiting,
        status(
            received,
            NationalStatus.PAYMENT_REQUIRED,
            NationalStatus.IN_PROGRESS,
            waiting.occurred_at,
            paused=True,
            reason="Chờ nộp thuế",
        ),
        paid,
        register,
        status(
            received,
            NationalStatus.IN_PROGRESS,
            NationalStatus.PAYMENT_REQUIRED,
            paid.occurred_at,
            holder="land",
        ),
        registered,
        status(received, NationalStatus.PROCESSED, NationalStatus.IN_PROGRESS, registered.occurred_at),
        closed(received, registered.occurred_at, on_time=True),
    ]
    return received, events


# --- the harness --------------------------------------------------------------------------------


class Tracker:
    """The tracker's app in memory (its consumer, projection and API on FastStream's test broker), with
    a clock the test sets; its answers are read over HTTP."""

    def __init__(self, path: Path) -> None:
        self.now = datetime(2026, 11, 30, 3, 0, tzinfo=UTC)
        settings = TrackerSettings(
            data_dir=path.with_suffix(""), bootstrap_servers="127.0.0.1:1", staff_sign_in="off"
        )
        self.service = InMemoryService(lambda: build_app(settings, now=lambda: self.now), [])

    @property
    def store(self) -> TrackerStore:
        store: TrackerStore = self.service.store
        return store

    async def start(self) -> None:
        await self.service.start()
        assert self.service.app is not None
        transport = httpx.ASGITransport(app=self.service.app)
        self.http = httpx.AsyncClient(transport=transport, base_url="http://tracker")

    async def stop(self) -> None:
        await self.http.aclose()
        await self.service.stop()

    async def feed(self, *events: Event) -> None:
        """As the producers publish them; the runtime dedupes and projects each in one transaction."""
        for event in events:
            await self.service.feed(event)

    def apply_again(self, event: Event) -> None:
        """Run an event's write once more, past the runtime's dedupe (as a replay after a crash might)."""
        self.store.commit(None, [], projection.write_for(event))

    async def get(self, path: str, **params: Any) -> Any:
        response = await self.http.get(path, params=params)
        assert response.status_code == 200, response.text
        return response.json()

    async def dossier(self, event: Event) -> Any:
        return await self.get(f"/dossiers/{event.dossier_id}")

    async def ids(self, **filters: Any) -> set[str]:
        page = await self.get("/dossiers", limit=500, **filters)
        return {item["dossier_id"] for item in page["items"]}


@pytest.fixture
async def tracker(tmp_path: Path) -> AsyncIterator[Tracker]:
    tracker = Tracker(tmp_path / "tracker.db")
    await tracker.start()
    yield tracker
    await tracker.stop()


def by_agency(stats: Any, agency: str) -> Any:
    return next(a for a in stats["by_agency"] if a["agency"] == agency)


def by_procedure(stats: Any, code: str) -> Any:
    return next(p for p in stats["by_procedure"] if p["code"] == code)


def count_of(stats: Any, code: int) -> int:
    return int(next(s["count"] for s in stats["by_status"] if s["code"] == code))


# --- one dossier ----------------------------------------------------------------------------------


async def test_land_transfer_timeline_from_receipt_to_closing(tracker: Tracker) -> None:
    received, events = land_transfer_story()
    await tracker.feed(*events)
    tracker.now = local(12, 9, 10)

    d = await tracker.dossier(received)

    assert d["dossier_code"] == received.data.dossier_code
    assert d["procedure"] == {
        "code": LAND_TRANSFER,
        "name_vi": "Chuyển nhượng quyền sử dụng đất",
        "name_en": "Land-use-right transfer",
    }
    assert d["status"] == {"code": 9, "vi": "Đã xử lý xong", "en": "Result back at the desk"}
    assert d["holder"] is None
    assert (d["closed"], d["result"], d["partial"], d["on_time"], d["overdue"]) == (
        True,
        "completed",
        False,
        True,
        False,
    )
    assert d["received_at"] == "2026-11-30T02:00:00Z"
    # 10 working days from Mon 30 Nov end on Mon 14 Dec; the two paid-for days push it to Wed 16 Dec.
    assert d["receipt_due_at"] == "2026-12-14T10:00:00Z"
    assert d["due_on"] == "2026-12-16"
    assert d["pauses"] == [{"start": "2026-12-02T03:00:00Z", "end": "2026-12-04T03:00:00Z"}]
    # Read when it closed (Tue 8 Dec 10:00): 7 office hours that day, then 6 whole days, of 9.5 h.
    assert d["remaining_working_days"] == round(6 + 7 / 9.5, 2)
    assert not d["apology_due"]
    assert d["apology_day"] == "2026-12-15"

    legs = {leg["step_id"]: leg for leg in d["legs"]}
    assert list(legs) == ["check_dossier", "assess_obligations", "register_transfer"]
    assert all(
        leg["state"] == "completed" and not leg["overdue"] and not leg["stuck"] for leg in legs.values()
    )
    assert legs["check_dossier"]["agency_reference"] == "VPDK-1"
    assert legs["assess_obligations"]["agency"] == "tax"
    assert legs["assess_obligations"]["settled_at"] == "2026-12-04T03:00:00Z"
    # The tax leg's 3 days are extended by the two days the citizen took to pay.
    assert legs["assess_obligations"]["requested_due_at"] == "2026-12-04T10:00:00Z"
    assert legs["assess_obligations"]["due_at"] == "2026-12-08T10:00:00Z"

    timeline = d["timeline"]
    assert len(timeline) == len(events)
    assert [t["event_type"] for t in timeline][:3] == [
        "dossier.received",
        "handoff.requested",
        "dossier.status_changed",
    ]
    assert timeline[-1]["event_type"] == "dossier.closed"
    summaries = "\n".join(t["summary"] for t in timeline)
    assert "Handed to tax: assess_transfer_obligations" in summaries
    assert "tax assess_transfer_obligations (step assess_obligations) waiting on the citizen" in summaries
    assert "Closed: completed, on time" in summaries


async def test_the_dossier_is_found_by_its_receipt_code_too(tracker: Tracker) -> None:
    received = receive(MARRIAGE)
    await tracker.feed(received)
    d = await tracker.get(f"/dossiers/{received.data.dossier_code}")
    assert d["dossier_id"] == str(received.dossier_id)
    assert d["status"]["code"] == 2


async def test_an_unknown_dossier_is_404_with_a_reason(tracker: Tracker) -> None:
    response = await tracker.http.get(f"/dossiers/{uuid.uuid4()}")
    assert response.status_code == 404
    assert "no dossier" in response.json()["detail"]


async def test_a_payment_pause_holds_the_clock_and_extends_the_due_date(tracker: Tracker) -> None:
    received, events = land_transfer_story()
    await tracker.feed(*events[:8])  # up to status 6, the tax notice issued Wed 2 Dec 10:00

    tracker.now = local(12, 2, 10)
    at_pause = await tracker.dossier(received)
    tracker.now = local(12, 3, 10)
    a_day_later = await tracker.dossier(received)

    assert a_day_later["status"]["code"] == 6 and a_day_later["paused"]
    assert a_day_later["holder"] is None
    assert a_day_later["reason"] == "Chờ nộp thuế"
    assert a_day_later["pauses"] == [{"start": "2026-12-02T03:00:00Z", "end": None}]
    assert a_day_later["remaining_working_days"] == at_pause["remaining_working_days"]
    assert at_pause["due_on"] == "2026-12-14"
    assert a_day_later["due_on"] == "2026-12-15"  # one working day paused so far
    tax = next(leg for leg in a_day_later["legs"] if leg["agency"] == "tax")
    assert tax["state"] == "waiting_on_citizen" and tax["reason"] == "Chờ nộp thuế"
    stats = await tracker.get("/stats")
    assert stats["totals"]["paused"] == 1
    assert by_agency(stats, "tax")["waiting_on_citizen"] == 1

    await tracker.feed(*events[8:11])  # paid Fri 4 Dec 10:00: the clock runs again
    tracker.now = local(12, 7, 10)
    resumed = await tracker.dossier(received)
    assert resumed["status"]["code"] == 4 and resumed["holder"] == "land" and not resumed["paused"]
    assert resumed["due_on"] == "2026-12-16"
    assert resumed["due_at"] == "2026-12-16T10:00:00Z"


async def test_a_dossier_waiting_on_the_citizen_past_the_threshold_is_listed_counted_and_gauged(
    tracker: Tracker,
) -> None:
    """The clock is paused while the tax notice waits to be paid, so the dossier never goes overdue:
    past 30 days of waiting (the default threshold) it is listed and counted all the same."""
    received, events = land_transfer_story()
    await tracker.feed(*events[:8])  # the tax notice issued Wed 2 Dec 10:00, clock paused
    paused_at = local(12, 2, 10)

    tracker.now = paused_at + timedelta(days=29)
    detail = await tracker.dossier(received)
    assert detail["paused"] and not detail["overdue"] and not detail["waiting_too_long"]
    assert detail["waiting_since"] == "2026-12-02T03:00:00Z"
    assert await tracker.ids(waiting_too_long=True) == set()

    tracker.now = paused_at + timedelta(days=31)
    detail = await tracker.dossier(received)
    assert detail["waiting_too_long"] and not detail["overdue"]
    assert await tracker.ids(waiting_too_long=True) == {str(received.dossier_id)}
    assert (await tracker.get("/stats"))["totals"]["waiting_too_long"] == 1
    views = TrackerViews(tracker.store.conn, CATALOG, now=lambda: tracker.now)
    assert snapshot(views).waiting_too_long[LAND_TRANSFER] == 1

    await tracker.feed(*events[8:11])  # paid at last: the clock runs again and nothing waits
    assert await tracker.ids(waiting_too_long=True) == set()
    assert snapshot(views).waiting_too_long[LAND_TRANSFER] == 0


async def test_an_overdue_dossier_and_its_overdue_leg(tracker: Tracker) -> None:
    # Marriage: 5 working days from Mon 30 Nov, due Mon 7 Dec 17:00.
    received = receive(MARRIAGE)
    leg = requested(received, "register_marriage", MONDAY_9AM)
    await tracker.feed(
        received,
        leg,
        status(
            received, NationalStatus.IN_PROGRESS, NationalStatus.ACCEPTED, MONDAY_9AM, holder="civil_status"
        ),
    )

    tracker.now = local(12, 7, 16, 59)
    assert not (await tracker.dossier(received))["overdue"]
    assert await tracker.ids(overdue=True) == set()

    tracker.now = local(12, 8, 10)
    d = await tracker.dossier(received)
    assert d["overdue"] and d["apology_due"]
    assert d["remaining_working_days"] == round(-2.5 / 9.5, 2)
    assert d["legs"][0]["overdue"] and d["legs"][0]["state"] == "requested"
    assert await tracker.ids(overdue=True) == {str(received.dossier_id)}
    assert await tracker.ids(overdue=False) == set()
    stats = await tracker.get("/stats")
    assert stats["totals"]["overdue"] == 1
    assert by_procedure(stats, MARRIAGE)["overdue"] == 1
    assert by_agency(stats, "civil_status")["overdue"] == 1


async def test_the_apology_slip_is_due_one_working_day_before_the_due_date(tracker: Tracker) -> None:
    received = receive(MARRIAGE)  # due Mon 7 Dec: the apology day is Fri 4 Dec
    await tracker.feed(received)

    tracker.now = local(12, 3, 16)
    before = await tracker.dossier(received)
    tracker.now = local(12, 4, 8)
    on_the_day = await tracker.dossier(received)

    assert before["apology_day"] == on_the_day["apology_day"] == "2026-12-04"
    assert not before["apology_due"]
    assert on_the_day["apology_due"] and not on_the_day["overdue"]
    assert (await tracker.get("/stats"))["totals"]["apology_due"] == 1

    await tracker.feed(closed(received, local(12, 4, 9), on_time=True))
    done = await tracker.dossier(received)
    assert not done["apology_due"], "a closed dossier needs no apology"


async def test_a_dead_lettered_leg_is_stuck_in_lists_and_stats(tracker: Tracker) -> None:
    received = receive(BIRTH)
    birth = requested(received, "register_birth", MONDAY_9AM)
    born = outcome_for(birth, "completed", after=timedelta(hours=2))
    residence = requested(received, "register_residence", born.occurred_at, cause=born)
    card = requested(received, "issue_health_card", born.occurred_at, cause=born)
    stuck = outcome_for(
        card,
        "dead_lettered",
        after=timedelta(minutes=15),
        reason="social insurance system unreachable after 4 attempts",
        error_class="transient",
    )
    healthy = receive(BIRTH)
    await tracker.feed(received, birth, born, residence, card, stuck, healthy)

    d = await tracker.dossier(received)
    assert d["stuck"]
    leg = next(leg for leg in d["legs"] if leg["step_id"] == "issue_health_card")
    assert leg["state"] == "dead_lettered" and leg["stuck"]
    assert leg["error_class"] == "transient"
    assert leg["reason"] == "social insurance system unreachable after 4 attempts"
    assert any("stuck: dead-lettered (transient)" in t["summary"] for t in d["timeline"])

    assert await tracker.ids(stuck=True) == {str(received.dossier_id)}
    assert await tracker.ids(stuck=False) == {str(healthy.dossier_id)}
    stats = await tracker.get("/stats")
    assert stats["totals"]["stuck_legs"] == 1 and stats["totals"]["stuck_dossiers"] == 1
    assert by_agency(stats, "social_insurance")["stuck"] == 1
    assert by_agency(stats, "residence")["open"] == 1
    assert by_agency(stats, "civil_status")["completed"] == 1

    # A replayed handoff that completes un-sticks the leg.
    await tracker.feed(outcome_for(card, "completed", after=timedelta(hours=3)))
    assert await tracker.ids(stuck=True) == set()
    assert (await tracker.get("/stats"))["totals"]["stuck_legs"] == 0


# --- order and repetition -------------------------------------------------------------------------


async def test_events_arriving_before_the_dossier_is_received_are_kept_and_filled_in(
    tracker: Tracker,
) -> None:
    received, events = land_transfer_story()
    check, in_progress, checked = events[1], events[2], events[3]
    await tracker.feed(checked)  # an outcome before anything else

    early = await tracker.dossier(received)
    assert early["dossier_code"] is None and early["status"] is None and early["received_at"] is None
    assert early["legs"][0]["state"] == "completed" and early["legs"][0]["requested_at"] is None
    assert (await tracker.get("/stats"))["totals"]["unknown_status"] == 1

    await tracker.feed(in_progress, received, check)  # the status before the receipt, the request last
    d = await tracker.dossier(received)
    assert d["dossier_code"] == received.data.dossier_code
    assert d["status"]["code"] == 4, "the receipt's implied status 2 does not replace a newer one"
    assert d["legs"][0]["state"] == "completed", "a late request does not reopen a completed leg"
    assert d["legs"][0]["requested_at"] == "2026-11-30T02:00:01Z"
    assert d["applicant"] == "*********345"


async def test_any_arrival_order_gives_the_same_answers(tmp_path: Path) -> None:
    received, events = land_transfer_story()
    answers = []
    for seed in range(4):
        shuffled = list(events)
        if seed:
            random.Random(seed).shuffle(shuffled)
        tracker = Tracker(tmp_path / f"tracker-{seed}.db")
        tracker.now = local(12, 9, 10)
        await tracker.start()
        await tracker.feed(*shuffled)
        answers.append((await tracker.dossier(received), await tracker.get("/stats")))
        await tracker.stop()
    assert all(answer == answers[0] for answer in answers[1:])


async def test_an_older_outcome_arriving_late_changes_nothing(tracker: Tracker) -> None:
    received, events = land_transfer_story()
    waiting, paid = events[6], events[8]
    await tracker.feed(received, paid, waiting)
    tax = next(leg for leg in (await tracker.dossier(received))["legs"] if leg["agency"] == "tax")
    assert tax["state"] == "completed" and tax["settled_at"] == "2026-12-04T03:00:00Z"


async def test_events_applied_twice_change_nothing(tracker: Tracker, tmp_path: Path) -> None:
    received, events = land_transfer_story()
    once = Tracker(tmp_path / "once.db")
    once.now = tracker.now = local(12, 3, 10)
    await once.start()
    await once.feed(*events[:9])
    await tracker.feed(*events[:9])
    await tracker.feed(*events[:9])  # redelivered: the runtime skips them
    for event in events[:9]:
        tracker.apply_again(event)  # and even when it does not, the writes are idempotent

    assert await tracker.dossier(received) == await once.dossier(received)
    assert await tracker.get("/stats") == await once.get("/stats")
    assert await tracker.get("/dossiers") == await once.get("/dossiers")
    await once.stop()


# --- lists and stats ------------------------------------------------------------------------------


async def in_progress_marriage(tracker: Tracker) -> DossierReceived:
    received = receive(MARRIAGE)
    leg = requested(received, "register_marriage", MONDAY_9AM)
    started = status(
        received, NationalStatus.IN_PROGRESS, NationalStatus.ACCEPTED, MONDAY_9AM, holder="civil_status"
    )
    await tracker.feed(received, leg, started)
    return received


async def closed_marriage(tracker: Tracker, *, on_time: bool) -> DossierReceived:
    received = receive(MARRIAGE)
    leg = requested(received, "register_marriage", MONDAY_9AM)
    closing_at = local(12, 3, 10) if on_time else local(12, 9, 10)
    done = outcome_for(leg, "completed", after=after(leg, closing_at))
    await tracker.feed(
        received,
        leg,
        done,
        status(received, NationalStatus.PROCESSED, NationalStatus.IN_PROGRESS, closing_at),
        closed(received, closing_at, on_time=on_time),
    )
    return received


async def test_filters_select_by_status_agency_procedure_and_overdue(tracker: Tracker) -> None:
    land, land_events = land_transfer_story()
    await tracker.feed(*land_events[:5])  # with tax since Tue 1 Dec
    marriage = await in_progress_marriage(tracker)
    done = await closed_marriage(tracker, on_time=True)
    returned = receive(LAND_TRANSFER)
    check = requested(returned, "check_dossier", MONDAY_9AM)
    refused = outcome_for(check, "rejected", reason="Thửa đất không tồn tại")
    await tracker.feed(
        returned,
        check,
        refused,
        status(returned, NationalStatus.STOPPED, NationalStatus.IN_PROGRESS, refused.occurred_at),
        closed(
            returned,
            refused.occurred_at,
            on_time=True,
            result=ClosedResult.RETURNED,
            reason="land: Thửa đất không tồn tại",
        ),
    )
    tracker.now = local(12, 8, 10)  # the marriage is overdue; the land transfer is not

    assert await tracker.ids(status=4) == {str(land.dossier_id), str(marriage.dossier_id)}
    assert await tracker.ids(status=9) == {str(done.dossier_id)}
    assert await tracker.ids(status=8) == {str(returned.dossier_id)}
    assert await tracker.ids(agency="tax") == {str(land.dossier_id)}
    assert await tracker.ids(agency="civil_status") == {str(marriage.dossier_id)}
    assert await tracker.ids(agency="land") == set(), (
        "land's legs are settled (completed or of a closed dossier)"
    )
    assert await tracker.ids(procedure=MARRIAGE) == {str(marriage.dossier_id), str(done.dossier_id)}
    assert await tracker.ids(procedure=MARRIAGE, overdue=True) == {str(marriage.dossier_id)}
    assert await tracker.ids(overdue=False) == {
        str(land.dossier_id),
        str(done.dossier_id),
        str(returned.dossier_id),
    }

    page = await tracker.get("/dossiers", limit=2)
    assert page["total"] == 4 and len(page["items"]) == 2
    # Open dossiers first, the most urgent first: the overdue marriage, then the land transfer.
    assert [i["dossier_id"] for i in page["items"]] == [str(marriage.dossier_id), str(land.dossier_id)]
    rest = await tracker.get("/dossiers", limit=2, offset=2)
    assert {i["dossier_id"] for i in rest["items"]} == {str(done.dossier_id), str(returned.dossier_id)}
    summary = page["items"][0]
    assert summary["status"]["en"] == "In progress with an agency" and summary["holder"] == "civil_status"
    assert summary["overdue"] and summary["open_legs"] == 1 and "legs" not in summary

    returned_detail = await tracker.dossier(returned)
    assert (
        returned_detail["result"] == "returned"
        and returned_detail["reason"] == "land: Thửa đất không tồn tại"
    )
    assert returned_detail["legs"][0]["reason"] == "Thửa đất không tồn tại"

    bad = await tracker.http.get("/dossiers", params={"agency": "ministry_of_magic"})
    assert bad.status_code == 422


async def test_stats_count_statuses_agencies_and_the_on_time_ratio(tracker: Tracker) -> None:
    await closed_marriage(tracker, on_time=True)
    await closed_marriage(tracker, on_time=True)
    await closed_marriage(tracker, on_time=False)
    await in_progress_marriage(tracker)
    tracker.now = local(12, 10, 10)

    stats = await tracker.get("/stats")

    marriage = by_procedure(stats, MARRIAGE)
    assert (marriage["in_progress"], marriage["closed"], marriage["on_time"]) == (1, 3, 2)
    assert marriage["on_time_ratio"] == round(2 / 3, 4)
    assert marriage["overdue"] == 1
    assert by_procedure(stats, LAND_TRANSFER)["on_time_ratio"] is None
    assert count_of(stats, 9) == 3 and count_of(stats, 4) == 1 and count_of(stats, 6) == 0
    civil = by_agency(stats, "civil_status")
    assert (civil["open"], civil["completed"], civil["completed_late"], civil["overdue"]) == (1, 3, 1, 1)
    assert civil["on_time_ratio"] == round(2 / 3, 4)
    totals = stats["totals"]
    assert (totals["dossiers"], totals["in_progress"], totals["closed"], totals["on_time"]) == (4, 1, 3, 2)
    assert totals["on_time_ratio"] == round(2 / 3, 4)
    assert {a["agency"] for a in stats["by_agency"]} >= {"land", "tax", "civil_status", "residence"}
    assert stats["as_of"] == "2026-12-10T03:00:00Z"


# --- personal data ----------------------------------------------------------------------------------


def personal_values(forms: Iterable[dict[str, Any]]) -> set[str]:
    found: set[str] = set()
    for form in forms:
        for key, value in form.items():
            if isinstance(value, dict):
                found |= {
                    str(value[k])
                    for k in ("citizen_id", "full_name", "date_of_birth", "address")
                    if k in value
                }
            elif key in ("child_full_name", "place_of_birth", "residence_address"):
                found.add(str(value))
    return found


async def test_the_citizen_id_is_masked_and_no_personal_data_is_served_or_stored(tracker: Tracker) -> None:
    _, land_events = land_transfer_story()
    birth = receive(BIRTH)
    await tracker.feed(*land_events, birth, requested(birth, "register_birth", MONDAY_9AM))
    personal = personal_values(example_form(kind) for kind in ("land_transfer", "birth"))
    assert "001085012345" in personal and "Nguyễn Văn An" in personal

    land = await tracker.dossier(land_events[0])
    assert land["applicant"] == "*********345"
    assert (await tracker.dossier(birth))["applicant"] == "*********456"  # the mother
    answers = [
        land,
        await tracker.dossier(birth),
        await tracker.get("/dossiers"),
        await tracker.get("/stats"),
    ]
    served = json.dumps(answers, ensure_ascii=False)
    assert not {value for value in personal if value in served}

    tracker.store.conn.execute("PRAGMA wal_checkpoint(FULL)")
    assert isinstance(tracker.store.conn, sqlite3.Connection)
    stored = "\n".join(tracker.store.conn.iterdump())
    assert not {value for value in personal if value in stored}


# --- the service ----------------------------------------------------------------------------------


def test_the_tracker_reads_every_dossier_topic_and_every_agency_queue() -> None:
    topics = tracker_topics("t1.")
    assert topics[:4] == [
        "t1.dossier.received",
        "t1.dossier.status",
        "t1.dossier.closed",
        "t1.handoff.outcome",
    ]
    assert {
        "t1.handoff.land.requested",
        "t1.handoff.tax.requested",
        "t1.handoff.civil_status.requested",
    } <= set(topics)


async def test_the_service_is_not_ready_before_its_broker_started(tmp_path: Path) -> None:
    app = build_app(TrackerSettings(data_dir=tmp_path, bootstrap_servers="127.0.0.1:1", staff_sign_in="off"))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://tracker") as http:
        assert (await http.get("/health")).status_code == 200
        not_ready = await http.get("/ready")
        assert not_ready.status_code == 503 and not_ready.json()["status"] == "starting"
        assert (await http.get("/stats")).json()["totals"]["dossiers"] == 0
    assert (tmp_path / "tracker.db").exists()
    with sqlite3.connect(tmp_path / "tracker.db") as conn:
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"dossiers", "legs", "pauses", "timeline", "processed_events", "outbox"} <= tables

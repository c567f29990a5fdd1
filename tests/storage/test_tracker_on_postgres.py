"""The tracker on PostgreSQL: the same answers as on SQLite, from any of several instances sharing one
schema, and one hash-chained handoff log whatever the number of instances appending to it.

The trackers are the real app on FastStream's in-memory broker (``tests.unit.test_tracker.Tracker``),
read over HTTP; a SQLite tracker fed the same events is the reference.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, cast
from unittest.mock import patch

import psycopg
import pytest
from aiokafka.partitioner import DefaultPartitioner
from typer.testing import CliRunner

from schemas.envelope import Event
from schemas.events import DossierReceived, HandoffReported, HandoffRequested
from schemas.topics import MAIN_PARTITIONS
from services.runtime.consume.records import event_record
from services.runtime.storage.database import current_version
from services.runtime.storage.postgres import PostgresLocation
from services.tools.cli.audit_cmd import app as audit_cli
from services.tracker import audit, projection
from services.tracker.app import tracker_topics
from services.tracker.gauges import snapshot
from services.tracker.store import TrackerStore
from services.tracker.views import TrackerViews
from tests.factories import outcome_for
from tests.in_memory import topic_of
from tests.unit.test_tracker import (
    CATALOG,
    LAND_TRANSFER,
    MARRIAGE,
    MONDAY_9AM,
    Tracker,
    closed,
    closed_marriage,
    local,
    receive,
    requested,
)
from tests.unit.test_tracker_counts import Mixed, reference_snapshot, views_of

DATABASE_URL = "LIENTHONG_DATABASE_URL"


# --- the harness ----------------------------------------------------------------------------------


class PostgresTracker(Tracker):
    """The tracker's app with its store in the ``tracker`` schema of ``url`` (as
    ``LIENTHONG_DATABASE_URL`` would put it, set only while the app is built)."""

    def __init__(self, path: Path, url: str) -> None:
        super().__init__(path)
        build = self.service.build

        def build_on_postgres() -> Any:
            with patch.dict(os.environ, {DATABASE_URL: url}):
                return build()

        self.service.build = build_on_postgres

    async def stop(self) -> None:
        store = self.store
        await super().stop()
        store.close()  # the store's connection pool


StartTracker = Callable[[], Awaitable[PostgresTracker]]


def migrate(url: str) -> None:
    """What ``lienthong db migrate`` does for the tracker: an instance only checks the version."""
    TrackerStore(PostgresLocation(url, "tracker"), migrate_now=True).close()


@dataclass
class Recording:
    """Stands in for a tracker to record what a scenario feeds it, in order, to feed it again to others:
    ``("feed", event)`` as the producers publish it, ``("again", event)`` its write applied once more."""

    steps: list[tuple[str, Event]] = field(default_factory=list)

    async def feed(self, *events: Event) -> None:
        self.steps += [("feed", event) for event in events]

    def apply_again(self, event: Event) -> None:
        self.steps.append(("again", event))

    def cut(self) -> list[tuple[str, Event]]:
        steps, self.steps = self.steps, []
        return steps


async def recorded(scenario: Callable[[Tracker], Any]) -> list[tuple[str, Event]]:
    recording = Recording()
    await scenario(cast(Tracker, recording))
    return recording.cut()


async def replay(tracker: Tracker, steps: Sequence[tuple[str, Event]]) -> None:
    for kind, event in steps:
        if kind == "feed":
            await tracker.feed(event)
        else:
            tracker.apply_again(event)


def owner(event: Event, members: Sequence[Tracker]) -> Tracker:
    """Which member of one consumer group receives ``event``: its partition as Kafka's default
    partitioner picks it from the record's key (the dossier id), and the partitions of every topic the
    tracker reads dealt to the members in turn (aiokafka's default, round-robin assignor)."""
    partitions = list(range(MAIN_PARTITIONS))
    partition: int = DefaultPartitioner()(event_record(event, topic_of(event)).key, partitions, partitions)
    index = sorted(tracker_topics()).index(topic_of(event)) * MAIN_PARTITIONS + partition
    return members[index % len(members)]


async def replay_split(members: Sequence[Tracker], steps: Sequence[tuple[str, Event]]) -> set[int]:
    """Each step to the member owning it, every member consuming its own share at the same time (in
    order within its share, interleaved with the others'); the indices of the members that had some."""
    shares: dict[int, list[tuple[str, Event]]] = {}
    for step in steps:
        shares.setdefault(members.index(owner(step[1], members)), []).append(step)
    await asyncio.gather(*(replay(members[i], share) for i, share in shares.items()))
    return set(shares)


FILTERS: list[dict[str, Any]] = [
    {},
    {"status": 4},
    {"status": 9},
    {"agency": "civil_status"},
    {"agency": "tax"},
    {"procedure": MARRIAGE},
    {"overdue": True},
    {"overdue": False},
    {"stuck": True},
    {"waiting_too_long": False},
    {"limit": 3, "offset": 2},
]


async def answers(tracker: Tracker, dossier_ids: set[str]) -> dict[str, Any]:
    """Everything the API, the page and the gauges say, as of the tracker's clock."""
    found: dict[str, Any] = {
        "dossiers": {key: await tracker.get(f"/dossiers/{key}") for key in sorted(dossier_ids)},
        "lists": [await tracker.get("/dossiers", **({"limit": 500} | f)) for f in FILTERS],
        "stats": await tracker.get("/stats"),
        "gauges": snapshot(views_of(tracker)),
    }
    for path in (
        "/giam-sat",
        "/giam-sat?lang=en",
        *(f"/giam-sat/ho-so/{key}" for key in sorted(dossier_ids)),
    ):
        response = await tracker.http.get(path)
        assert response.status_code == 200, response.text
        found[path] = response.text
    return found


def dossiers_of(steps: Sequence[tuple[str, Event]]) -> set[str]:
    return {str(event.dossier_id) for _, event in steps}


def handoff_events(steps: Sequence[tuple[str, Event]]) -> list[str]:
    return [
        str(event.event_id)
        for kind, event in steps
        if kind == "feed" and isinstance(event, HandoffRequested | HandoffReported)
    ]


@pytest.fixture
async def on_sqlite(tmp_path: Path) -> AsyncIterator[Tracker]:
    tracker = Tracker(tmp_path / "reference" / "tracker.db")
    await tracker.start()
    yield tracker
    await tracker.stop()


@pytest.fixture
def tracker_schema(fresh_database_url: str) -> Iterator[Callable[[], TrackerStore]]:
    """Opens tracker stores, as many instances would, on one migrated ``tracker`` schema; closes them
    when the test ends."""
    migrate(fresh_database_url)
    opened: list[TrackerStore] = []

    def open_store() -> TrackerStore:
        opened.append(TrackerStore(PostgresLocation(fresh_database_url, "tracker")))
        return opened[-1]

    yield open_store
    for store in opened:
        store.close()


@pytest.fixture
async def tracker_instances(
    fresh_database_url: str, tmp_path: Path
) -> AsyncIterator[Callable[[], Awaitable[PostgresTracker]]]:
    """Starts tracker apps, as many instances would, on one migrated ``tracker`` schema; stops them
    when the test ends."""
    migrate(fresh_database_url)
    started: list[PostgresTracker] = []

    async def start() -> PostgresTracker:
        tracker = PostgresTracker(tmp_path / f"instance-{len(started)}" / "tracker.db", fresh_database_url)
        await tracker.start()
        started.append(tracker)
        return tracker

    yield start
    for tracker in started:
        await tracker.stop()


def set_clocks(trackers: Sequence[Tracker], when: Any) -> None:
    for tracker in trackers:
        tracker.now = when


# --- the same answers as on SQLite -----------------------------------------------------------------


@pytest.mark.postgres
async def test_the_same_events_give_the_same_answers_on_postgresql_as_on_sqlite(
    on_sqlite: Tracker, tracker_instances: StartTracker
) -> None:
    on_postgres = await tracker_instances()
    mixed = Mixed()
    first = await recorded(mixed.feed)
    late = await recorded(mixed.late_events)
    both = [on_sqlite, on_postgres]
    ids = dossiers_of(first + late)

    for tracker in both:
        await replay(tracker, first)
    set_clocks(both, local(12, 3, 10))
    reference = await answers(on_sqlite, ids)
    assert await answers(on_postgres, ids) == reference
    assert reference["stats"]["totals"]["closed"] == 5 and reference["stats"]["totals"]["stuck_legs"] == 1

    for tracker in both:
        await replay(tracker, late)
    set_clocks(both, local(12, 10, 10))  # the open marriage is overdue by now, its apology slip due
    reference = await answers(on_sqlite, ids)
    assert await answers(on_postgres, ids) == reference
    assert reference["stats"]["totals"]["stuck_legs"] == 0
    views = views_of(on_postgres)
    assert snapshot(views) == reference_snapshot(views)

    # The handoff log: the same entries, hash for hash.
    assert audit.entries(on_postgres.store.conn) == audit.entries(on_sqlite.store.conn)
    assert audit.verify(on_postgres.store.conn).checked == len(handoff_events(first + late))


# --- several instances on one schema --------------------------------------------------------------


@pytest.mark.postgres
async def test_two_instances_on_one_schema_answer_alike_from_either(
    on_sqlite: Tracker, tracker_instances: StartTracker
) -> None:
    first, second = await tracker_instances(), await tracker_instances()
    group = [first, second]
    mixed = Mixed()
    before = await recorded(mixed.feed)
    late = await recorded(mixed.late_events)
    ids = dossiers_of(before + late)
    trackers = [on_sqlite, *group]

    await replay(on_sqlite, before)
    assert await replay_split(group, before) == {0, 1}, "each instance consumes a share"
    set_clocks(trackers, local(12, 3, 10))
    reference = await answers(on_sqlite, ids)
    for tracker in group:
        assert await answers(tracker, ids) == reference

    # The partitions move between the instances (a rebalance): a dossier's later events are projected
    # by the other instance than its first ones.
    await replay(on_sqlite, late)
    moved = [second, first]
    projected_by: dict[str, set[int]] = {}
    for steps, members in ((before, group), (late, moved)):
        for _, event in steps:
            projected_by.setdefault(str(event.dossier_id), set()).add(id(owner(event, members)))
    assert any(len(instances) == 2 for instances in projected_by.values())
    await replay_split(moved, late)
    set_clocks(trackers, local(12, 10, 10))
    reference = await answers(on_sqlite, ids)
    for tracker in group:
        assert await answers(tracker, ids) == reference

    # One log, written by both: every handoff once, one chain.
    verdict = audit.verify(first.store.conn)
    assert verdict.ok, verdict.problem
    logged = [entry.event_id for entry in audit.entries(second.store.conn)]
    assert sorted(logged) == sorted(handoff_events(before + late))


# --- the handoff log under concurrent appends ----------------------------------------------------


def handoffs(dossiers: int) -> list[tuple[HandoffRequested, HandoffReported]]:
    """A request and its outcome for each of ``dossiers`` land transfers."""
    pairs = []
    for _ in range(dossiers):
        received = receive(LAND_TRANSFER)
        check = requested(received, "check_dossier", MONDAY_9AM + timedelta(seconds=1))
        pairs.append((check, outcome_for(check, "completed", after=timedelta(hours=2))))
    return pairs


def project(store: TrackerStore, event: Event) -> bool:
    """What the tracker's consumer commits for an event: its id, its rows and (a handoff) its log entry."""
    if isinstance(event, HandoffRequested | HandoffReported):
        return store.commit(str(event.event_id), [], projection.write_logged(event))
    return store.commit(str(event.event_id), [], projection.write_for(event))


@contextmanager
def held_open(store: TrackerStore, event: Event) -> Iterator[threading.Thread]:
    """``event`` projected by ``store`` in a thread whose transaction stays open, its rows written,
    until the block ends (then it commits)."""
    written, release = threading.Event(), threading.Event()

    def write_then_hold(conn: Any) -> None:
        if isinstance(event, HandoffRequested | HandoffReported):
            projection.write_logged(event)(conn)
        else:
            projection.write_for(event)(conn)
        written.set()
        assert release.wait(30), "the transaction was never released"

    holding = threading.Thread(target=store.commit, args=(str(event.event_id), [], write_then_hold))
    holding.start()
    try:
        assert written.wait(10), "the write did not happen"
        yield holding
    finally:
        release.set()
        holding.join(30)


def waiting_for_an_advisory_lock(url: str) -> bool:
    with psycopg.connect(url, autocommit=True) as conn:
        waiting = "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
        row = conn.execute(waiting).fetchone()
    return row is not None and row[0] > 0


def wait_until(condition: Callable[[], bool], within_s: float, what: str) -> None:
    deadline = time.monotonic() + within_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {within_s} s")
        time.sleep(0.01)


@pytest.mark.postgres
def test_an_append_waits_for_the_other_instances_and_chains_after_it(
    tracker_schema: Callable[[], TrackerStore], fresh_database_url: str
) -> None:
    first, second = tracker_schema(), tracker_schema()
    ((request, outcome),) = handoffs(1)

    with held_open(first, request):
        appending = threading.Thread(target=project, args=(second, outcome))
        appending.start()
        wait_until(lambda: waiting_for_an_advisory_lock(fresh_database_url), 10, "the second append waiting")
        assert appending.is_alive()
    appending.join(30)

    chain = audit.entries(second.conn)
    assert [(e.seq, e.event_id) for e in chain] == [(1, str(request.event_id)), (2, str(outcome.event_id))]
    assert chain[1].prev_hash == chain[0].hash
    assert audit.verify(first.conn).ok


@pytest.mark.postgres
async def test_a_count_taken_while_another_instance_writes_is_right_once_that_write_commits(
    tracker_schema: Callable[[], TrackerStore], tmp_path: Path
) -> None:
    """One instance counts while another's transaction changes a closed dossier, not yet committed:
    the count is right for that moment, and the next one counts the change."""
    counting, writing = tracker_schema(), tracker_schema()
    reference = TrackerStore(tmp_path / "reference.db")
    closing = await recorded(lambda tracker: closed_marriage(tracker, on_time=True))
    received = closing[0][1]
    assert isinstance(received, DossierReceived)
    for _, event in closing:
        project(counting, event)
        project(reference, event)
    now = local(12, 10, 10)
    views, expected = (TrackerViews(s.conn, CATALOG, now=lambda: now) for s in (counting, reference))
    late = closed(received, local(12, 9, 10), on_time=False)  # it did not close on time after all

    with held_open(writing, late):
        assert views.stats() == expected.stats(), "the count as of the moment before the late closing"
    project(reference, late)
    assert views.stats().totals.on_time == 0
    assert views.stats() == expected.stats()
    assert snapshot(views) == snapshot(expected)
    reference.close()


@pytest.mark.postgres
def test_concurrent_appends_from_two_instances_make_one_chain(
    tracker_schema: Callable[[], TrackerStore],
) -> None:
    """Two instances append at the same moment, round after round, each in its own transactions: the
    requests of every dossier through one, the outcomes through the other (as on two partitions)."""
    stores = [tracker_schema(), tracker_schema()]
    pairs = handoffs(40)
    rounds = threading.Barrier(2, timeout=30)
    failures: list[BaseException] = []

    def append_all(store: TrackerStore, events: list[HandoffRequested | HandoffReported]) -> None:
        try:
            for event in events:
                rounds.wait()
                assert project(store, event)
        except BaseException as error:  # seen by the test, not lost in the thread
            failures.append(error)
            rounds.abort()

    shares: list[list[HandoffRequested | HandoffReported]] = [[r for r, _ in pairs], [o for _, o in pairs]]
    threads = [threading.Thread(target=append_all, args=(s, e)) for s, e in zip(stores, shares, strict=True)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not failures, failures

    verdict = audit.verify(stores[0].conn)
    assert verdict.ok, verdict.problem
    assert verdict.checked == 2 * len(pairs)
    chain = audit.entries(stores[1].conn)
    requests = {str(r.event_id) for r, _ in pairs}
    # Each round both appended at once: one waited for the other's commit and chained after it.
    for i in range(0, len(chain), 2):
        assert {chain[i].event_id in requests, chain[i + 1].event_id in requests} == {True, False}
    legs = stores[0].conn.execute("SELECT count(*) FROM legs WHERE state = 'completed'").fetchone()
    assert legs[0] == len(pairs)


# --- lienthong audit on PostgreSQL, and SQLite files from before versioning -----------------------


@pytest.mark.postgres
def test_lienthong_audit_reads_and_verifies_the_log_in_postgresql(
    tracker_schema: Callable[[], TrackerStore], fresh_database_url: str
) -> None:
    store = tracker_schema()
    pairs = handoffs(2)
    for request, outcome in pairs:
        project(store, request)
        project(store, outcome)
    cli = CliRunner()
    env = {DATABASE_URL: fresh_database_url}

    verified = cli.invoke(audit_cli, ["verify", "--no-anchor"], env=env)
    assert verified.exit_code == 0, verified.output
    assert f"intact: 4 entries, head {audit.entries(store.conn)[-1].hash}" in verified.output
    dossier = str(pairs[0][0].dossier_id)
    shown = cli.invoke(audit_cli, ["show", dossier, "--db", fresh_database_url], env={DATABASE_URL: ""})
    assert shown.exit_code == 0, shown.output
    lines = shown.output.strip().splitlines()
    assert len(lines) == 2, shown.output
    assert lines[0].startswith("#1 ") and "router → land  check_transfer  handoff" in lines[0]
    assert lines[1].startswith("#2 ") and "connector.land → router  check_transfer → completed" in lines[1]

    store.conn.execute("UPDATE handoff_log SET to_party = 'tax' WHERE seq = 3")
    broken = cli.invoke(audit_cli, ["verify", "--no-anchor"], env=env)
    assert broken.exit_code == 1, broken.output
    assert f"entry 3 (event {pairs[1][0].event_id}) was edited" in broken.output


@pytest.mark.postgres
def test_lienthong_audit_says_when_the_schema_holds_no_log(fresh_database_url: str) -> None:
    result = CliRunner().invoke(audit_cli, ["verify"], env={DATABASE_URL: fresh_database_url})
    assert result.exit_code == 2
    assert "holds no handoff log" in result.output and "lienthong db migrate" in result.output


def test_a_sqlite_file_from_before_versioning_opens_with_its_handoff_log(tmp_path: Path) -> None:
    path = tmp_path / "tracker.db"
    store = TrackerStore(path)
    (request, outcome), (other, _) = handoffs(2)
    project(store, request)
    project(store, outcome)
    store.close()
    with sqlite3.connect(path) as old:  # as a release before the versioned schema left it
        old.execute("DROP TABLE schema_version")
    store = TrackerStore(path)
    assert current_version(store.conn) == TrackerStore.migrations()[-1].version  # every version applied
    assert audit.verify(store.conn).checked == 2, "its log is kept"
    project(store, other)
    assert audit.verify(store.conn).checked == 3
    store.close()

    # A file whose log was never written (the log's table used to be made by the first append).
    with sqlite3.connect(path) as old:
        old.execute("DROP TABLE schema_version")
        old.execute("DROP TABLE handoff_log")
    store = TrackerStore(path)
    assert audit.entries(store.conn) == []
    project(store, outcome_for(other, "rejected", reason="Thửa đất không tồn tại"))
    assert audit.verify(store.conn).ok
    store.close()

    verified = CliRunner().invoke(audit_cli, ["verify", "--db", str(path)], env={DATABASE_URL: ""})
    assert verified.exit_code == 0 and "intact: 1 entries" in verified.output, verified.output

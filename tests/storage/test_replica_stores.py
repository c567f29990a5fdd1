"""Several instances of one service on one store (issue 19, "Replicas"): a pending agency job is polled
by one connector instance at a time and taken over when that one dies or stalls; any router instance
routes any dossier, and an outcome for a dossier no store holds is dead-lettered; receipt numbers and
Idempotency-Keys hold across intake instances; one outbox relay at a time sends, and a row committed
late is sent, not lost. PostgreSQL is where instances share a store; SQLite runs what means something
there too (two connections on one file)."""

from __future__ import annotations

import asyncio
import json
import sys
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar

import psycopg
import pytest

from connectors.base import Completed, HandoffResult, Pending
from schemas.agencies import Agency
from schemas.catalog import load_catalog
from schemas.envelope import Event
from schemas.events import DossierClosed, HandoffRequested, HandoffRequestedData
from schemas.forms import FormKind
from schemas.topics import HANDOFF_OUTCOME
from schemas.workdays import default_calendar
from services.connector.host import ConnectorHost
from services.connector.settings import HostSettings
from services.connector.store import PENDING, SETTLED, ConnectorStore, DuePoll, LeaseLost
from services.intake.intake import Intake
from services.intake.store import IntakeStore, KeyReused
from services.router.store import RouterStore
from services.runtime.failures import dead_letter_records
from services.runtime.failures.blip_retry import BlipRetry
from services.runtime.storage.database import StoreLocation
from services.runtime.storage.outbox import OutboxRelay, OutgoingRecord
from services.runtime.storage.postgres import PostgresLocation, schema_name
from services.runtime.storage.store import SqlProcessingStore
from services.tools.stack.samples import SampleDossiers
from tests.clock import travel, vn
from tests.factories import dossier_received, example_form, of_type, outcome_for
from tests.in_memory import events_of
from tests.unit.test_connector_host import FakeMarriageRegistry, outcomes, record_of
from tests.unit.test_router import MARRIAGE, RouterHarness, requests

Where = Callable[[str], StoreLocation]

T0 = 1_800_000_000.0  # the stores are given their "now": any instant will do
LEASE_S = 15.0
CONNECTOR = "connector-civil_status"
WITHIN_S = 10.0


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def where(request: pytest.FixtureRequest, tmp_path: Path) -> Where:
    """Where a named store lives: a file in the test's folder, or a schema of a fresh database."""
    if request.param == "sqlite":
        return lambda name: tmp_path / f"{name}.db"
    url: str = request.getfixturevalue("fresh_database_url")
    return lambda name: PostgresLocation(url, schema_name(name))


def until(condition: Callable[[], bool], what: str, within_s: float = WITHIN_S) -> None:
    deadline = time.monotonic() + within_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {within_s} s: {what}")
        time.sleep(0.01)


async def until_async(condition: Callable[[], bool], what: str, within_s: float = WITHIN_S) -> None:
    deadline = time.monotonic() + within_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {within_s} s: {what}")
        await asyncio.sleep(0.01)


# --- connector host: pending jobs under a lease --------------------------------------------------


def marriage_request() -> HandoffRequested:
    """A request to register a marriage, as the router sends it (a new handoff each time)."""
    received = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)
    data = HandoffRequestedData(
        handoff_id=uuid.uuid4(),
        dossier_code=f"LT-261123-{uuid.uuid4().int % 1_000_000:06d}",
        procedure_code=MARRIAGE,
        step_id="register_marriage",
        agency=Agency.CIVIL_STATUS,
        action="register_marriage",
        form_kind=FormKind("marriage"),
        form=example_form("marriage"),
        leg_due_at=received + timedelta(days=5),
        dossier_due_at=received + timedelta(days=5),
    )
    return HandoffRequested.create(
        data=data, producer="router", dossier_id=uuid.uuid4(), occurred_at=received
    )


def pending_jobs(store: ConnectorStore, count: int, due_at: float = T0) -> list[HandoffRequested]:
    """``count`` handoffs waiting on their agency, due from ``due_at`` on, polled as ``job-<n>``."""
    jobs = [marriage_request() for _ in range(count)]
    for n, job in enumerate(jobs):
        recording = store.recording(job, PENDING, poll_token=f"job-{n}", next_poll_at=due_at + n / 1000)
        store.commit(None, (), recording)
    return jobs


def tokens(due: list[DuePoll]) -> list[str]:
    return [d.poll_token for d in due]


def still_pending(store: ConnectorStore, due: DuePoll, next_poll_at: float) -> Callable[..., None]:
    """What a poll that found the job still running records."""
    return store.recording(
        due.request,
        PENDING,
        attempt=due.polls + 1,
        poll_token=due.poll_token,
        next_poll_at=next_poll_at,
        as_received=due.stored,
    )


def test_a_due_job_is_polled_by_one_instance_until_it_records_the_poll(where: Where) -> None:
    a = ConnectorStore(where(CONNECTOR), migrate_now=True, owner="a")
    b = ConnectorStore(where(CONNECTOR), owner="b")
    pending_jobs(a, 3)
    claimed = a.claim_due_polls(T0 + 1, LEASE_S)
    assert tokens(claimed) == ["job-0", "job-1", "job-2"], "earliest first"
    assert b.claim_due_polls(T0 + 2, LEASE_S) == [], "a polls them: b does not"
    a.commit(None, (), a.while_leased(claimed[0], still_pending(a, claimed[0], next_poll_at=T0 + 3)))
    assert tokens(b.claim_due_polls(T0 + 4, LEASE_S)) == ["job-0"], "a's recording ended its lease"
    a.close()
    b.close()


def test_a_dead_instances_jobs_are_polled_by_another_once_its_lease_ends(where: Where) -> None:
    a = ConnectorStore(where(CONNECTOR), migrate_now=True, owner="a")
    pending_jobs(a, 2)
    assert len(a.claim_due_polls(T0 + 1, LEASE_S)) == 2
    a.close()  # the process dies mid-round: nothing recorded, nothing released
    b = ConnectorStore(where(CONNECTOR), owner="b")
    assert b.claim_due_polls(T0 + LEASE_S, LEASE_S) == [], "the lease still runs"
    assert tokens(b.claim_due_polls(T0 + 1 + LEASE_S + 0.5, LEASE_S)) == ["job-0", "job-1"]
    b.close()


def test_a_stalled_instance_cannot_record_over_the_instance_that_took_its_job(where: Where) -> None:
    a = ConnectorStore(where(CONNECTOR), migrate_now=True, owner="a")
    b = ConnectorStore(where(CONNECTOR), owner="b")
    pending_jobs(a, 1)
    [stale] = a.claim_due_polls(T0 + 1, LEASE_S)
    [taken] = b.claim_due_polls(T0 + 2 + LEASE_S, LEASE_S)  # a stalled past its lease
    late = OutgoingRecord("handoff.outcome", b"k", b"what a found out too late")
    with pytest.raises(LeaseLost):
        a.commit(None, [late], a.while_leased(stale, a.recording(stale.request, SETTLED)))
    assert a.outbox.is_empty(), "the late outcome rolled back with the recording"
    assert a.handoff(str(stale.request.data.handoff_id)) == (PENDING, 0)
    b.commit(None, (), b.while_leased(taken, b.recording(taken.request, SETTLED)))
    assert b.handoff(str(taken.request.data.handoff_id)) == (SETTLED, 0)
    a.close()
    b.close()


def test_only_the_holder_renews_a_lease_and_only_until_another_takes_it(where: Where) -> None:
    """A round of slow polls renews the lease of the jobs it has not reached yet."""
    a = ConnectorStore(where(CONNECTOR), migrate_now=True, owner="a")
    b = ConnectorStore(where(CONNECTOR), owner="b")
    pending_jobs(a, 1)
    [due] = a.claim_due_polls(T0 + 1, LEASE_S)
    assert a.renew_lease(due, T0 + 10, LEASE_S)
    assert b.claim_due_polls(T0 + 2 + LEASE_S, LEASE_S) == [], "renewed until later"
    assert not b.renew_lease(due, T0 + 11, LEASE_S), "b does not hold it"
    [taken] = b.claim_due_polls(T0 + 11 + LEASE_S, LEASE_S)
    assert not a.renew_lease(due, T0 + 12 + LEASE_S, LEASE_S), "b took it over"
    assert b.renew_lease(taken, T0 + 13 + LEASE_S, LEASE_S)
    a.close()
    b.close()


def test_a_job_another_instance_polls_is_next_due_when_its_lease_ends(where: Where) -> None:
    """Else the other instance's poll loop, finding a job due that it may not claim, would spin."""
    a = ConnectorStore(where(CONNECTOR), migrate_now=True, owner="a")
    b = ConnectorStore(where(CONNECTOR), owner="b")
    pending_jobs(a, 1, due_at=T0)
    assert b.next_poll_at() == T0
    a.claim_due_polls(T0 + 1, LEASE_S)
    assert b.next_poll_at() == T0 + 1 + LEASE_S
    a.close()
    b.close()


def test_a_store_made_before_the_leases_gains_them(tmp_path: Path) -> None:
    path = tmp_path / f"{CONNECTOR}.db"
    old = ConnectorStore(path)
    [job] = pending_jobs(old, 1)
    for column in ("lease_owner", "lease_until"):
        old.conn.execute(f"ALTER TABLE handoffs DROP COLUMN {column}")
    old.close()
    store = ConnectorStore(path)
    assert [d.request.data.handoff_id for d in store.claim_due_polls(T0 + 1, LEASE_S)] == [
        job.data.handoff_id
    ]
    store.close()


def test_instances_claiming_at_once_never_share_a_job(fresh_database_url: str) -> None:
    location = PostgresLocation(fresh_database_url, schema_name(CONNECTOR))
    seeding = ConnectorStore(location, migrate_now=True)
    jobs = pending_jobs(seeding, 120)
    instances = [ConnectorStore(location) for _ in range(4)]
    polled: list[list[str]] = [[] for _ in instances]
    start = threading.Barrier(len(instances))
    failures: list[BaseException] = []

    def poll_all(n: int) -> None:
        store = instances[n]
        try:
            start.wait(WITHIN_S)
            while claimed := store.claim_due_polls(T0 + 1, LEASE_S, limit=5):
                for due in claimed:
                    polled[n].append(str(due.request.data.handoff_id))
                    store.commit(None, (), store.while_leased(due, store.recording(due.request, SETTLED)))
        except BaseException as error:
            failures.append(error)

    threads = [threading.Thread(target=poll_all, args=(n,)) for n in range(len(instances))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert failures == []
    every = [handoff for one in polled for handoff in one]
    assert sorted(every) == sorted(str(job.data.handoff_id) for job in jobs), "each job once, none left"
    for store in (seeding, *instances):
        store.close()


class GatedRegistry(FakeMarriageRegistry):
    """Answers polls with ``Completed``; the poll of ``held`` waits until the test opens ``gate``."""

    actions: ClassVar[frozenset[str]] = frozenset({"register_marriage"})

    def __init__(self, held: str | None = None) -> None:
        super().__init__()
        self.held = held
        self.gate = asyncio.Event()
        self.polled: list[str] = []

    async def poll(self, poll_token: str) -> HandoffResult:
        self.polled.append(poll_token)
        if poll_token == self.held:
            await self.gate.wait()
        return Completed({"so_dang_ky": poll_token})


async def _unused_send(record: OutgoingRecord) -> Awaitable[object]:
    raise AssertionError("the relay is not run here")


def connector_instance(location: StoreLocation, registry: GatedRegistry, owner: str) -> ConnectorHost:
    store = ConnectorStore(location, owner=owner)
    relay = OutboxRelay(store.outbox, _unused_send)
    patient = BlipRetry(attempts=1, call_timeout_s=30.0)  # the held poll outlasts the test's steps
    return ConnectorHost(registry, store, relay, HostSettings(blip_retry=patient, poll_interval_s=0.0))


def registry_of(host: ConnectorHost) -> GatedRegistry:
    registry = host.connector
    assert isinstance(registry, GatedRegistry)
    return registry


async def start_jobs(host: ConnectorHost, count: int) -> None:
    """``count`` handoffs the agency answered "pending" (``job-<n>``), due at once."""
    registry_of(host).reactions = [Pending(poll_token=f"job-{n}") for n in range(count)]
    for _ in range(count):
        request = marriage_request()
        effect = await host.on_request(request, record_of(request))
        host.store.commit(str(request.event_id), effect.emitted, effect.write)


def completed_outcomes(host: ConnectorHost) -> list[str]:
    return sorted(
        str(o.data.result["so_dang_ky"])
        for o in outcomes([r for _, r in host.store.outbox.pending()])
        if o.data.kind == "completed"
    )


@pytest.fixture
def two_connectors(where: Where) -> Iterator[tuple[ConnectorHost, ConnectorHost]]:
    """Two instances of the civil-status connector on one store; the first one's poll of job-0 waits."""
    ConnectorStore(where(CONNECTOR), migrate_now=True).close()
    a = connector_instance(where(CONNECTOR), GatedRegistry(held="job-0"), "a")
    b = connector_instance(where(CONNECTOR), GatedRegistry(), "b")
    yield a, b
    a.store.close()
    b.store.close()


def polled(host: ConnectorHost) -> list[str]:
    return registry_of(host).polled


async def test_a_job_being_polled_by_one_connector_is_left_alone_by_the_other(
    two_connectors: tuple[ConnectorHost, ConnectorHost],
) -> None:
    a, b = two_connectors
    await start_jobs(a, 3)
    round_a = asyncio.create_task(a.poll_once())
    await until_async(lambda: polled(a) == ["job-0"], "a polls job-0")
    assert await b.poll_once() == 0 and polled(b) == [], "b leaves a's round alone"
    registry_of(a).gate.set()
    assert await round_a == 3
    assert completed_outcomes(a) == ["job-0", "job-1", "job-2"], "each job completed once"


async def test_a_job_left_by_a_stalled_connector_is_completed_by_the_other_once(
    two_connectors: tuple[ConnectorHost, ConnectorHost],
) -> None:
    a, b = two_connectors
    await start_jobs(a, 1)
    round_a = asyncio.create_task(a.poll_once())
    await until_async(lambda: polled(a) == ["job-0"], "a polls job-0, and hangs")
    after_the_lease = datetime.fromtimestamp(time.time() + a.poll_lease_s + 1, UTC)
    with travel(after_the_lease):
        assert await b.poll_once() == 1, "b takes the job over and completes it"
    registry_of(a).gate.set()
    assert await round_a == 0, "a's late answer is dropped"
    assert completed_outcomes(a) == ["job-0"], "one outcome, b's"


async def test_a_stopped_connector_leaves_its_jobs_to_the_other_at_once(
    two_connectors: tuple[ConnectorHost, ConnectorHost],
) -> None:
    a, b = two_connectors
    await start_jobs(a, 2)
    round_a = asyncio.create_task(a.poll_once())
    await until_async(lambda: polled(a) == ["job-0"], "a polls job-0")
    round_a.cancel()  # a rolling restart stops a's poll loop
    with pytest.raises(asyncio.CancelledError):
        await round_a
    assert await b.poll_once() == 2, "no lease to wait out"
    assert sorted(polled(b)) == ["job-0", "job-1"]


# --- router: any instance routes any dossier --------------------------------------------------------


async def published_because_of(
    event: Event, fed: RouterHarness, *instances: RouterHarness
) -> list[OutgoingRecord]:
    """What feeding ``event`` to one instance made any instance publish (the instances share one outbox,
    and whichever relay leads sends it)."""
    before = [len(instance.service.published) for instance in instances]
    await fed.service.feed(event)
    return [r for i, n in zip(instances, before, strict=True) for r in i.service.published[n:]]


async def test_any_router_instance_routes_any_dossier_and_dead_letters_unknown_ones(
    fresh_database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    RouterStore(PostgresLocation(fresh_database_url, "router"), migrate_now=True).close()
    monkeypatch.setenv("LIENTHONG_DATABASE_URL", fresh_database_url)
    first, second = RouterHarness(tmp_path / "1" / "router.db"), RouterHarness(tmp_path / "2" / "router.db")
    await first.service.start()
    await second.service.start()
    try:
        received = events_of(await published_because_of(dossier_received(MARRIAGE), first, first, second))
        register = requests(received)["register_marriage"]
        # the outcome's partition has moved to the second instance meanwhile
        outcome = outcome_for(register, "completed")
        routed = events_of(await published_because_of(outcome, second, first, second))
        [closed] = of_type(routed, DossierClosed)
        assert closed.dossier_id == register.dossier_id and closed.data.result == "completed"
        orphan = outcome_for(register, "completed").model_copy(update={"dossier_id": uuid.uuid4()})
        letters = [
            r for r in await published_because_of(orphan, second, first, second) if r.topic.endswith(".dlq")
        ]
        [letter] = letters
        assert letter.topic == HANDOFF_OUTCOME + ".dlq"
        assert letter.headers[dead_letter_records.ERROR_CLASS] == "poison"
        assert "is being routed" in letter.headers[dead_letter_records.EXCEPTION_MESSAGE]
    finally:
        await first.service.stop()
        await second.service.stop()


# --- intake: receipt numbers and Idempotency-Keys across instances ----------------------------------

NOW = vn(2026, 11, 23, 9, 30)


def land_transfer_body(seed: int) -> bytes:
    samples = SampleDossiers(seed=seed)
    return json.dumps(samples.land_transfer("TD-12-345", samples.person(), 120.5)).encode()


def intake_instance(location: StoreLocation) -> Intake:
    return Intake(IntakeStore(location), load_catalog(), default_calendar(), "")


def run_together(*calls: Callable[[], Any]) -> list[Any]:
    """Each call in its own thread, started at one moment; their results (or what they raised)."""
    start = threading.Barrier(len(calls))
    results: list[Any] = [None] * len(calls)

    def run(n: int) -> None:
        start.wait(WITHIN_S)
        try:
            results[n] = calls[n]()
        except BaseException as error:
            results[n] = error

    threads = [threading.Thread(target=run, args=(n,)) for n in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    return results


def receipt_number(code: str) -> int:
    return int(code.rsplit("-", 1)[1])


def test_two_intakes_number_the_days_dossiers_without_a_gap_or_a_repeat(where: Where) -> None:
    IntakeStore(where("intake"), migrate_now=True).close()
    one, two = intake_instance(where("intake")), intake_instance(where("intake"))
    body = land_transfer_body(7)

    def submit(intake: Intake, prefix: str) -> list[str]:
        return [str(intake.accept(f"{prefix}-{n}", body, NOW)[0]["dossier_code"]) for n in range(40)]

    codes = run_together(lambda: submit(one, "one"), lambda: submit(two, "two"))
    every = [code for answer in codes for code in answer]
    assert sorted(receipt_number(code) for code in every) == list(range(1, 81))
    assert one.store.outbox.size() == 80
    one.store.close()
    two.store.close()


def test_one_key_sent_to_two_intakes_at_once_makes_one_dossier(where: Where) -> None:
    IntakeStore(where("intake"), migrate_now=True).close()
    one, two = intake_instance(where("intake")), intake_instance(where("intake"))
    body = land_transfer_body(7)
    keys = [f"same-{n}" for n in range(30)]

    def submit(intake: Intake) -> list[tuple[dict[str, Any], bool]]:
        return [intake.accept(key, body, NOW) for key in keys]

    answers = run_together(lambda: submit(one), lambda: submit(two))
    assert not any(isinstance(a, BaseException) for a in answers), answers
    for (first, made_first), (second, made_second) in zip(*answers, strict=True):
        assert first == second, "both callers get the one dossier"
        assert made_first != made_second, "exactly one of the calls made it"
    codes = [str(response["dossier_code"]) for response, _ in answers[0]]
    assert sorted(receipt_number(code) for code in codes) == list(range(1, 31)), (
        "the loser's number is not lost"
    )
    assert one.store.outbox.size() == 30, "one event per dossier"
    one.store.close()
    two.store.close()


@pytest.mark.parametrize("same_body", [True, False], ids=["retry", "other-dossier"])
def test_the_intake_that_loses_a_keys_race_answers_the_winners_dossier(
    fresh_database_url: str, same_body: bool
) -> None:
    """The interleaving that made a 500: the loser found no submission, numbered its dossier while the
    winner committed, then hit the key."""
    location = PostgresLocation(fresh_database_url, "intake")
    winner, loser = IntakeStore(location, migrate_now=True), IntakeStore(location)
    day = date(2026, 11, 23)
    numbering = threading.Event()
    go_on = threading.Event()

    def build_winner(number: int) -> tuple[str, dict[str, Any], list[OutgoingRecord]]:
        numbering.set()
        assert go_on.wait(WITHIN_S)
        return "dossier-w", {"dossier_code": f"LT-261123-{number:06d}"}, [OutgoingRecord("t", b"w", b"w")]

    def build_loser(number: int) -> tuple[str, dict[str, Any], list[OutgoingRecord]]:
        return "dossier-l", {"dossier_code": f"LT-261123-{number:06d}"}, [OutgoingRecord("t", b"l", b"l")]

    results: dict[str, Any] = {}

    def run(name: str, call: Callable[[], Any]) -> None:
        try:
            results[name] = call()
        except BaseException as error:
            results[name] = error

    first = threading.Thread(target=run, args=("winner", lambda: winner.accept("k", "h", day, build_winner)))
    first.start()
    assert numbering.wait(WITHIN_S)
    loser_hash = "h" if same_body else "other"
    second = threading.Thread(
        target=run, args=("loser", lambda: loser.accept("k", loser_hash, day, build_loser))
    )
    second.start()
    with psycopg.connect(fresh_database_url, autocommit=True) as watcher:

        def loser_waits() -> bool:
            row = watcher.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                " AND wait_event_type = 'Lock'"
            ).fetchone()
            return row is not None and row[0] >= 1

        until(loser_waits, "the loser waits on the winner's receipt number")
    go_on.set()
    first.join(WITHIN_S)
    second.join(WITHIN_S)
    assert results["winner"] == ({"dossier_code": "LT-261123-000001"}, True)
    if same_body:
        assert results["loser"] == ({"dossier_code": "LT-261123-000001"}, False)
    else:
        assert isinstance(results["loser"], KeyReused)
    assert [r.key for _, r in winner.outbox.pending()] == [b"w"], "the loser's event rolled back"
    after, made = winner.accept("next", "n", day, build_loser)
    assert made and after == {"dossier_code": "LT-261123-000002"}, "the loser's number left no gap"
    winner.close()
    loser.close()


# --- outbox relay: one sender at a time on a shared outbox -----------------------------------------


class Recorder:
    """A sender that keeps what it was given (Kafka acknowledges at once); ``on_send`` runs after each
    record, while the relay's batch is still being sent."""

    def __init__(self, on_send: Callable[[bytes], None] = lambda value: None) -> None:
        self.sent: list[bytes] = []
        self.on_send = on_send

    async def __call__(self, record: OutgoingRecord) -> Awaitable[object]:
        self.sent.append(record.value)
        self.on_send(record.value)
        acked: asyncio.Future[object] = asyncio.get_running_loop().create_future()
        acked.set_result(None)
        return acked


def rows(key: str, *numbers: int) -> list[OutgoingRecord]:
    return [OutgoingRecord("dossier.status", key.encode(), f"{key}{n}".encode()) for n in numbers]


@pytest.fixture
def outbox_location(fresh_database_url: str) -> PostgresLocation:
    location = PostgresLocation(fresh_database_url, "intake")
    SqlProcessingStore(location, migrate_now=True).close()
    return location


async def test_two_relays_on_one_outbox_never_both_send(outbox_location: PostgresLocation) -> None:
    one, two = SqlProcessingStore(outbox_location), SqlProcessingStore(outbox_location)
    sent_by_one, sent_by_two = Recorder(), Recorder()
    relays = OutboxRelay(one.outbox, sent_by_one), OutboxRelay(two.outbox, sent_by_two)
    assert await relays[0].flush_once() == 0, "the first to ask leads"
    written: list[bytes] = []
    for n in range(20):
        batch = rows("d", 3 * n, 3 * n + 1, 3 * n + 2)
        (one if n % 2 else two).commit(None, batch)  # both instances write
        written += [r.value for r in batch]
        await asyncio.gather(*(relay.flush_once() for relay in (relays if n % 2 else relays[::-1])))
    assert sent_by_one.sent == written, "the leader sent everything, in order"
    assert sent_by_two.sent == [], "the other one stood by"
    assert one.outbox.is_empty()
    one.outbox.stand_down()  # the leader stops
    two.commit(None, rows("d", 99))
    assert await relays[1].flush_once() == 1 and sent_by_two.sent == [b"d99"]
    assert await relays[0].flush_once() == 0, "the lock is the other's now"
    one.close()
    two.close()


_LEADER = """
import sys
from services.runtime.storage.postgres import PostgresLocation
from services.runtime.storage.store import SqlProcessingStore
store = SqlProcessingStore(PostgresLocation(sys.argv[1], sys.argv[2]))
print("leader" if store.outbox.may_send() else "not leader", flush=True)
sys.stdin.read()
"""


async def test_when_the_leading_relays_process_dies_the_other_takes_over(
    outbox_location: PostgresLocation,
) -> None:
    leader = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        _LEADER,
        outbox_location.url,
        outbox_location.schema,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert leader.stdout is not None
        said = await asyncio.wait_for(leader.stdout.readline(), WITHIN_S)
        assert said.strip() == b"leader"
        standby = SqlProcessingStore(outbox_location)
        sender = Recorder()
        relay = OutboxRelay(standby.outbox, sender)
        standby.commit(None, rows("d", 1, 2))
        assert await relay.flush_once() == 0, "the other process leads"
        leader.kill()  # SIGKILL: no goodbye to the server
        await asyncio.wait_for(leader.wait(), WITHIN_S)
        deadline = time.monotonic() + WITHIN_S
        while not await relay.flush_once():
            assert time.monotonic() < deadline, "the standby relay never took over"
            await asyncio.sleep(0.05)
        assert sender.sent == [b"d1", b"d2"] and standby.outbox.is_empty()
        standby.close()
    finally:
        if leader.returncode is None:
            leader.kill()
            await leader.wait()


_OUR_ADVISORY_LOCKS = (
    "locktype = 'advisory' AND granted"
    " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
)


async def test_a_relay_whose_lock_session_the_server_ended_stops_sending(
    outbox_location: PostgresLocation,
) -> None:
    """The client does not know the server ended its session until it uses it: it must check."""
    one, two = SqlProcessingStore(outbox_location), SqlProcessingStore(outbox_location)
    sent_by_one, sent_by_two = Recorder(), Recorder()
    first, second = OutboxRelay(one.outbox, sent_by_one), OutboxRelay(two.outbox, sent_by_two)
    one.commit(None, rows("d", 1))
    assert await first.flush_once() == 1 and await second.flush_once() == 0
    with psycopg.connect(outbox_location.url, autocommit=True) as admin:
        ended = admin.execute(
            f"SELECT pg_terminate_backend(pid) FROM pg_locks WHERE {_OUR_ADVISORY_LOCKS}"
        ).fetchall()
        assert len(ended) == 1, "one relay held the lock"
        # the session is gone once the server no longer lists it
        until(
            lambda: (
                admin.execute(f"SELECT count(*) FROM pg_locks WHERE {_OUR_ADVISORY_LOCKS}").fetchone() == (0,)
            ),
            "the lock is released",
        )
    two.commit(None, rows("d", 2, 3))
    assert await second.flush_once() == 2, "the second relay took over"
    one.commit(None, rows("d", 4))
    assert await first.flush_once() == 0, "the first one knows it no longer leads"
    assert await second.flush_once() == 1
    assert sent_by_one.sent == [b"d1"] and sent_by_two.sent == [b"d2", b"d3", b"d4"]
    one.close()
    two.close()


async def test_rows_committed_out_of_id_order_are_all_sent_in_commit_order_per_key(
    outbox_location: PostgresLocation,
) -> None:
    """One instance's transaction takes the lower ids and commits last, while the relay sends the rows
    committed before it: the relay must neither skip those rows nor delete them unsent (as a delete of
    "every id up to the last one sent" would)."""
    slow, quick, relaying = (SqlProcessingStore(outbox_location) for _ in range(3))

    def slow_commits_meanwhile(value: bytes) -> None:
        if value == b"b2":
            slow.conn.execute("COMMIT")

    sender = Recorder(on_send=slow_commits_meanwhile)
    relay = OutboxRelay(relaying.outbox, sender)
    slow.conn.execute("BEGIN")
    slow.outbox.add(rows("a", 1, 2))  # the lower ids, not committed yet
    quick.commit(None, rows("b", 1, 2))
    assert await relay.flush_once() == 2, "the rows committed so far"
    assert not slow.conn.in_transaction
    quick.commit(None, rows("b", 3))
    assert await relay.flush_once() == 3
    assert relaying.outbox.is_empty()
    sent = sender.sent
    assert sorted(sent) == [b"a1", b"a2", b"b1", b"b2", b"b3"], "every row once"
    for key in (b"a", b"b"):
        mine = [value for value in sent if value.startswith(key)]
        assert mine == sorted(mine), f"{key!r} in the order it was committed"
    for store in (slow, quick, relaying):
        store.close()

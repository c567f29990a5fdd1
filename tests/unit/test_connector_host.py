"""The connector host classifies what an agency does: outcomes, blips retried, outages and broken replies
dead-lettered, pending work polled to its end, redeliveries ignored — with a fake agency, no broker."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

import pytest

from connectors.base import Completed, Connector, HandoffRequest, HandoffResult, Pending, WaitingOnCitizen
from connectors.errors import AgencyProtocolError, AgencyRejected, AgencyUnavailable
from schemas.agencies import Agency
from schemas.envelope import Event
from schemas.events import HandoffReported, HandoffRequested, parse_event
from services.connector.host import (
    _OUTCOME_NAMESPACE,
    ConnectorHost,
    WrongAgency,
    poll_wait,
)
from services.connector.settings import HostSettings
from services.connector.store import ConnectorStore
from services.runtime.consume import headers
from services.runtime.consume.consumer import dedupe_key
from services.runtime.consume.records import ReceivedRecord
from services.runtime.failures import dead_letter_records
from services.runtime.failures.blip_retry import BlipRetry
from services.runtime.storage.outbox import OutboxRelay, OutgoingRecord
from tests.factories import dossier_received
from tests.unit.test_router import RouterHarness, requests


class FakeMarriageRegistry(Connector):
    """Answers from a script: each call pops the next reaction."""

    agency: ClassVar[Agency] = Agency.CIVIL_STATUS
    actions: ClassVar[frozenset[str]] = frozenset({"register_marriage"})

    def __init__(self, *reactions: HandoffResult | Exception) -> None:
        self.reactions = list(reactions)
        self.calls: list[str] = []
        self.polls: list[HandoffResult] = []

    async def handle(self, request: HandoffRequest) -> HandoffResult:
        self.calls.append(request.handoff_id)
        reaction = self.reactions.pop(0)
        if isinstance(reaction, Exception):
            raise reaction
        return reaction

    async def poll(self, poll_token: str) -> HandoffResult:
        return self.polls.pop(0)


async def _send(record: OutgoingRecord) -> object:  # the relay is not run in these tests
    raise AssertionError("not used")


def make_host(tmp_path: Path, connector: Connector) -> ConnectorHost:
    store = ConnectorStore(tmp_path / "connector.db")
    relay = OutboxRelay(store.outbox, _send)  # type: ignore[arg-type]
    fast = BlipRetry(attempts=3, within_s=1.0, first_wait_s=0.01, max_wait_s=0.02, call_timeout_s=0.5)
    return ConnectorHost(connector, store, relay, HostSettings(blip_retry=fast, poll_interval_s=0.0))


async def routed(path: Path, received: Event) -> list[Event]:
    """What the router emits for ``received`` (its real wiring, in memory)."""
    router = RouterHarness(path)
    await router.service.start()
    try:
        return await router.feed(received)
    finally:
        await router.service.stop()


@pytest.fixture
async def marriage_request(tmp_path: Path) -> HandoffRequested:
    emitted = await routed(tmp_path / "router" / "router.db", dossier_received("9.900005"))
    return requests(emitted)["register_marriage"]


def record_of(event: Event) -> ReceivedRecord:
    return ReceivedRecord(
        topic="handoff.civil_status.requested",
        partition=2,
        offset=41,
        timestamp=event.occurred_at,
        key=str(event.dossier_id).encode(),
        value=event.model_dump_json().encode(),
        headers={},
        group_id="connector",
    )


async def handle(host: ConnectorHost, request: HandoffRequested) -> list[OutgoingRecord]:
    effect = await host.on_request(request, record_of(request))
    host.store.commit(str(request.event_id), effect.emitted, effect.write)
    return effect.emitted


def outcomes(records: list[OutgoingRecord]) -> list[HandoffReported]:
    events = [parse_event(r.value, r.headers) for r in records if r.topic.endswith("handoff.outcome")]
    return [e for e in events if isinstance(e, HandoffReported)]


async def test_completed_call_publishes_a_completed_outcome(
    tmp_path: Path, marriage_request: HandoffRequested
) -> None:
    host = make_host(tmp_path, FakeMarriageRegistry(Completed({"so_dang_ky": "KH-1"}, reference="KH-1")))
    [outcome] = outcomes(await handle(host, marriage_request))
    assert outcome.data.kind == "completed" and outcome.data.result == {"so_dang_ky": "KH-1"}
    assert outcome.data.agency_reference == "KH-1" and outcome.causation_id == marriage_request.event_id


async def test_business_rejection_is_an_outcome_never_retried(
    tmp_path: Path, marriage_request: HandoffRequested
) -> None:
    connector = FakeMarriageRegistry(AgencyRejected("Người chồng chưa đủ 20 tuổi"))
    host = make_host(tmp_path, connector)
    [outcome] = outcomes(await handle(host, marriage_request))
    assert outcome.data.kind == "rejected" and outcome.data.reason == "Người chồng chưa đủ 20 tuổi"
    assert len(connector.calls) == 1


async def test_a_blip_is_retried_in_process(tmp_path: Path, marriage_request: HandoffRequested) -> None:
    connector = FakeMarriageRegistry(AgencyUnavailable("503"), AgencyUnavailable("503"), Completed())
    host = make_host(tmp_path, connector)
    [outcome] = outcomes(await handle(host, marriage_request))
    assert outcome.data.kind == "completed" and len(connector.calls) == 3
    assert set(connector.calls) == {str(marriage_request.data.handoff_id)}, (
        "one idempotency key for every try"
    )


def tier_copy(record: OutgoingRecord, offset: int) -> ReceivedRecord:
    """The record as the delay tier's consumer receives it."""
    return ReceivedRecord(
        topic=record.topic, partition=0, offset=offset, timestamp=datetime.now(UTC), key=record.key,
        value=record.value, headers=dict(record.headers), group_id="connector-retry",
    )  # fmt: skip


async def deliver(
    host: ConnectorHost, request: HandoffRequested, record: ReceivedRecord
) -> list[OutgoingRecord]:
    effect = await host.on_request(request, record)
    host.store.commit(dedupe_key(request, record), effect.emitted, effect.write)
    return effect.emitted


async def test_an_outage_walks_every_delay_tier_then_dead_letters_with_its_story(
    tmp_path: Path, marriage_request: HandoffRequested
) -> None:
    host = make_host(tmp_path, FakeMarriageRegistry(*[AgencyUnavailable("connection refused")] * 12))
    emitted = await handle(host, marriage_request)
    for attempt, tier in enumerate(("10s", "1m", "10m"), start=1):
        [delayed] = emitted
        assert delayed.topic == f"handoff.civil_status.requested.retry.{tier}"
        assert delayed.headers[headers.RETRY_ATTEMPT] == str(attempt)
        assert int(delayed.headers[headers.RETRY_DUE_MS]) > time.time() * 1000
        assert delayed.value == marriage_request.model_dump_json().encode(), "the original request, unchanged"
        assert outcomes(emitted) == [], "no outcome while retries remain"
        emitted = await deliver(host, marriage_request, tier_copy(delayed, offset=attempt))
    [outcome] = outcomes(emitted)
    assert outcome.data.kind == "dead_lettered" and outcome.data.error_class == "transient"
    [letter] = [r for r in emitted if r.topic.endswith(".dlq")]
    assert letter.topic == "handoff.civil_status.requested.dlq"
    assert letter.value == marriage_request.model_dump_json().encode(), "the original record, whole"
    assert letter.headers[dead_letter_records.ORIGINAL_TOPIC] == "handoff.civil_status.requested.retry.10m"
    assert letter.headers[dead_letter_records.ATTEMPTS] == "4"
    assert (
        letter.headers[dead_letter_records.FIRST_FAILURE] <= letter.headers[dead_letter_records.LAST_FAILURE]
    )
    assert "connection refused" in letter.headers[dead_letter_records.EXCEPTION_MESSAGE]


async def test_a_delayed_request_completes_when_the_agency_is_back(
    tmp_path: Path, marriage_request: HandoffRequested
) -> None:
    connector = FakeMarriageRegistry(*[AgencyUnavailable("503")] * 3, Completed({"so_dang_ky": "KH-9"}))
    host = make_host(tmp_path, connector)
    [delayed] = await handle(host, marriage_request)
    assert await handle(host, marriage_request) == [], "a redelivery of the original is not a second retry"
    [outcome] = outcomes(await deliver(host, marriage_request, tier_copy(delayed, offset=7)))
    assert outcome.data.kind == "completed" and len(connector.calls) == 4


async def test_a_delayed_request_that_comes_back_pending_is_polled_to_completion(
    tmp_path: Path, marriage_request: HandoffRequested
) -> None:
    # The host keeps a request only while it is pending: the copy off the delay tier must store it.
    connector = FakeMarriageRegistry(
        *[AgencyUnavailable("503")] * 3, WaitingOnCitizen("lệ phí chưa nộp", poll_token="fee-2")
    )
    host = make_host(tmp_path, connector)
    [delayed] = await handle(host, marriage_request)
    [waiting] = outcomes(await deliver(host, marriage_request, tier_copy(delayed, offset=3)))
    assert waiting.data.kind == "waiting_on_citizen"
    connector.polls = [Completed({"paid": True})]
    assert await host.poll_once() == 1
    kinds = [o.data.kind for o in outcomes([r for _, r in host.store.outbox.pending()])]
    assert kinds == ["waiting_on_citizen", "completed"]


async def test_an_open_circuit_sends_requests_to_the_tier_without_calling(
    tmp_path: Path, marriage_request: HandoffRequested
) -> None:
    connector = FakeMarriageRegistry(*[AgencyUnavailable("503")] * 3)
    host = make_host(tmp_path, connector)
    host.breaker.threshold = 1
    await handle(host, marriage_request)  # three failed calls: the circuit opens
    other = await routed(tmp_path / "r2" / "router.db", dossier_received("9.900005"))
    second = requests(other)["register_marriage"]
    [delayed] = await handle(host, second)
    assert delayed.topic.endswith(".retry.10s") and "circuit" in delayed.headers[headers.LAST_ERROR]
    assert len(connector.calls) == 3, "the open circuit spared the agency a call"


async def test_a_replayed_dead_letter_is_handled_again(
    tmp_path: Path, marriage_request: HandoffRequested
) -> None:
    connector = FakeMarriageRegistry(AgencyProtocolError("reply has no so_dang_ky"), Completed())
    host = make_host(tmp_path, connector)
    emitted = await handle(host, marriage_request)
    [letter] = [r for r in emitted if r.topic.endswith(".dlq")]
    assert await handle(host, marriage_request) == [], "a plain redelivery does not revive it"
    replayed = tier_copy(letter, offset=0)
    replayed.headers[headers.REPLAY_ID] = "handoff.civil_status.requested.dlq/0/0"
    [outcome] = outcomes(await deliver(host, marriage_request, replayed))
    assert outcome.data.kind == "completed"


async def test_a_broken_reply_is_dead_lettered_without_retry(
    tmp_path: Path, marriage_request: HandoffRequested
) -> None:
    connector = FakeMarriageRegistry(AgencyProtocolError("reply has no so_dang_ky"))
    host = make_host(tmp_path, connector)
    [outcome] = outcomes(await handle(host, marriage_request))
    assert outcome.data.error_class == "protocol" and len(connector.calls) == 1


async def test_a_crashing_adapter_is_dead_lettered_not_fatal(
    tmp_path: Path, marriage_request: HandoffRequested
) -> None:
    host = make_host(tmp_path, FakeMarriageRegistry(KeyError("so_dang_ky")))
    [outcome] = outcomes(await handle(host, marriage_request))
    assert outcome.data.error_class == "internal"


async def test_waiting_on_citizen_is_published_then_polled_to_completion(
    tmp_path: Path, marriage_request: HandoffRequested
) -> None:
    connector = FakeMarriageRegistry(
        WaitingOnCitizen("lệ phí chưa nộp", poll_token="fee-1", result={"fee_vnd": 0})
    )
    host = make_host(tmp_path, connector)
    [waiting] = outcomes(await handle(host, marriage_request))
    assert waiting.data.kind == "waiting_on_citizen"
    connector.polls = [WaitingOnCitizen("lệ phí chưa nộp", poll_token="fee-1"), Completed({"paid": True})]
    assert await host.poll_once() == 0, "still unpaid: nothing new is published"
    assert await host.poll_once() == 1
    pending = [r for _, r in host.store.outbox.pending()]
    kinds = [o.data.kind for o in outcomes(pending)]
    assert kinds == ["waiting_on_citizen", "completed"]


async def test_redelivered_request_does_not_call_the_agency_again(
    tmp_path: Path, marriage_request: HandoffRequested
) -> None:
    connector = FakeMarriageRegistry(Completed(), Completed())
    host = make_host(tmp_path, connector)
    await handle(host, marriage_request)
    assert await handle(host, marriage_request) == []
    assert len(connector.calls) == 1


async def test_request_for_another_agency_is_poison(
    tmp_path: Path, marriage_request: HandoffRequested
) -> None:
    land_host = make_host(tmp_path, FakeMarriageRegistry())
    land_host.agency = Agency.LAND
    with pytest.raises(WrongAgency):
        await land_host.on_request(marriage_request, record_of(marriage_request))


async def test_deciding_an_outcome_twice_gives_it_the_same_event_id(
    tmp_path: Path, marriage_request: HandoffRequested
) -> None:
    # A connector that crashed after publishing and before committing decides again: the router
    # must see the same event id, so that it drops the copy.
    first = make_host(tmp_path / "a", FakeMarriageRegistry(Completed()))
    second = make_host(tmp_path / "b", FakeMarriageRegistry(Completed()))
    [one] = outcomes(await handle(first, marriage_request))
    [two] = outcomes(await handle(second, marriage_request))
    assert one.event_id == two.event_id
    name = f"{marriage_request.data.handoff_id}/completed"
    assert one.event_id == uuid.uuid5(_OUTCOME_NAMESPACE, name), "the ids outcomes always had"


async def test_a_pending_job_is_polled_when_due_not_a_whole_interval_later(
    tmp_path: Path, marriage_request: HandoffRequested
) -> None:
    """The poll loop sleeps until the earliest job is due; a job pending meanwhile shortens the sleep."""
    polled_at: list[float] = []
    polled = asyncio.Event()

    class TimedRegistry(FakeMarriageRegistry):
        async def poll(self, poll_token: str) -> HandoffResult:
            polled_at.append(time.monotonic())
            polled.set()
            return Completed({"paid": True})

    connector = TimedRegistry(WaitingOnCitizen("lệ phí chưa nộp", poll_token="fee-1"))
    store = ConnectorStore(tmp_path / "connector.db")
    relay = OutboxRelay(store.outbox, _send)  # type: ignore[arg-type]
    host = ConnectorHost(connector, store, relay, HostSettings(poll_interval_s=1.0))
    loop = asyncio.create_task(host.poll_loop())
    try:
        await asyncio.sleep(0.2)  # the loop found nothing pending and waits a whole interval
        pending_at = time.monotonic()
        await handle(host, marriage_request)  # due one interval from now
        await asyncio.wait_for(polled.wait(), timeout=5)
    finally:
        loop.cancel()
    # the first poll is due an eighth of the interval after; a fixed-interval loop polled it 1.8 s after
    assert 0.12 <= polled_at[0] - pending_at < 0.6


async def test_an_idle_connector_looks_at_its_store_about_once_a_second(
    tmp_path: Path, marriage_request: HandoffRequested
) -> None:
    """With nothing pending, the poll loop does not claim at its pending-job interval (each claim is a
    transaction: three round trips on PostgreSQL); a job that becomes pending still wakes it at once."""
    polled = asyncio.Event()

    class Registry(FakeMarriageRegistry):
        async def poll(self, poll_token: str) -> HandoffResult:
            polled.set()
            return Completed({"paid": True})

    store = ConnectorStore(tmp_path / "connector.db")
    claims: list[float] = []
    claim = store.claim_due_polls

    def counted(now: float, lease_s: float, limit: int = 100) -> list[Any]:
        claims.append(now)
        return claim(now, lease_s, limit)

    store.claim_due_polls = counted  # type: ignore[method-assign]
    relay = OutboxRelay(store.outbox, _send)  # type: ignore[arg-type]
    connector = Registry(WaitingOnCitizen("lệ phí chưa nộp", poll_token="fee-1"))
    host = ConnectorHost(connector, store, relay, HostSettings(poll_interval_s=0.05))
    loop = asyncio.create_task(host.poll_loop())
    try:
        deadline = time.monotonic() + 5
        while not claims:  # the loop's first round
            assert time.monotonic() < deadline, "the poll loop never claimed"
            await asyncio.sleep(0.01)
        idle_from = len(claims)
        await asyncio.sleep(1.5)  # a 50 ms loop would claim about 30 times meanwhile
        assert len(claims) - idle_from <= 2, f"{len(claims) - idle_from} claims in 1.5 s with nothing pending"
        await handle(host, marriage_request)  # pending now: the loop wakes and polls when it is due
        await asyncio.wait_for(polled.wait(), timeout=5)
    finally:
        loop.cancel()


def test_a_pending_job_waits_twice_as_long_for_each_poll_up_to_the_interval() -> None:
    assert [poll_wait(8.0, polls) for polls in range(6)] == [1.0, 2.0, 4.0, 8.0, 8.0, 8.0]
    assert poll_wait(8.0, 10_000) == 8.0, "a job pending for weeks"


async def test_a_job_still_running_is_polled_less_and_less_often(
    tmp_path: Path, marriage_request: HandoffRequested
) -> None:
    connector = FakeMarriageRegistry(Pending(poll_token="job-1"))
    store = ConnectorStore(tmp_path / "connector.db")
    relay = OutboxRelay(store.outbox, _send)  # type: ignore[arg-type]
    host = ConnectorHost(connector, store, relay, HostSettings(poll_interval_s=8.0))
    await handle(host, marriage_request)
    waits = []
    for _ in range(4):
        due = store.next_poll_at()
        assert due is not None
        waits.append(round(due - time.time()))
        store.conn.execute("UPDATE handoffs SET next_poll_at = 0")  # due now
        connector.polls = [Pending(poll_token="job-1")]
        assert await host.poll_once() == 0
    assert waits == [1, 2, 4, 8]

"""The one consume path every service uses: parse, dead-letter poison, dedupe, handle, commit, ack.

A service gives its consumer a map of handlers, ``{DossierReceived: on_dossier_received, ...}``: the
consumer accepts the event types of the map and calls the one of each event with the event and a
small :class:`Context` (the service's own dependencies, and how the event was delivered). A handler
never sees the Kafka record: what it decides comes back as an :class:`Effect`.

For each record: the runtime parses it as an event (a record that does not parse, or is not an event
this consumer accepts, goes to the dead-letter topic with the reason and never reaches a handler);
an event already processed is skipped; the handler decides; its writes, the event id and what it
emits are committed atomically (the records of one poll share a transaction: see
:mod:`services.runtime.storage.store`); only then is the Kafka offset committed. A failure of the
infrastructure itself (the store, a bug) leaves the offset where it is, so the record comes again.

The same path serves FastStream subscribers (main topics) and the delayed-retry consumers
(:mod:`services.runtime.failures.retry_tiers`), which hand it records they read with aiokafka.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import weakref
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from itertools import chain
from typing import Any, Generic, Literal, TypeVar

from aiokafka import AIOKafkaConsumer, ConsumerRecord
from faststream import AckPolicy
from faststream.kafka import KafkaBroker
from faststream.kafka.annotations import KafkaMessage

from schemas.agencies import Agency
from schemas.envelope import Event
from schemas.errors import EventContractError, InvalidHeader, UnknownEventType
from schemas.events import parse_event
from schemas.topics import dlq_topic
from services.runtime.consume import headers
from services.runtime.consume.offsets import BackgroundCommitter
from services.runtime.consume.records import BatchParser, ReceivedRecord, raw_body
from services.runtime.failures.dead_letter_records import Failure, dead_letter
from services.runtime.failures.table import FailureClass, classify, describe
from services.runtime.observe.metrics import METRICS, Service
from services.runtime.observe.tracing import handling, tracing_enabled
from services.runtime.shell.settings import SigningSettings
from services.runtime.storage.outbox import OutboxRelay, OutgoingRecord
from services.runtime.storage.store import ProcessingStore, Write
from services.runtime.trust import header_signing, signing
from services.runtime.trust.signing import Verifier

log = logging.getLogger(__name__)

MAX_RECORD_BYTES = 1_000_000
MAX_BATCH_RECORDS = 500
BATCH_POLL_MS = 10  # FastStream's poll and its sleep after an empty one, if ours is not called
LISTEN_MS = 500  # how long one poll waits for a record (it returns the moment one arrives)
GATHER_BYTES = 64 * 1024
WATCH_S = 5.0  # how often keep_polling looks at the subscribers
BROKEN_AFTER_POLLS = 3  # failed polls in a row (FastStream waits 5 s after each) before a restart


class OversizedRecord(EventContractError):
    """A record larger than any event of ours can be."""


class KeyMismatch(EventContractError):
    """The record's key is not its dossier id: it would break per-dossier ordering."""


@dataclass
class Effect:
    """What handling one event does: records to emit and the service's own writes."""

    emitted: list[OutgoingRecord] = field(default_factory=list)
    write: Write | None = None


@dataclass(frozen=True)
class Delivery:
    """How an event arrived: what the connector host needs to know of a copy (the replay or the delay
    tier it came through), and the record itself, for the runtime's copies of it (its next delay
    tier, its dead letter); no handler reads the record's fields."""

    record: ReceivedRecord

    @property
    def replay_id(self) -> str | None:
        return self.record.headers.get(headers.REPLAY_ID)

    @property
    def retry_attempt(self) -> int:
        """0 on the request topic, 1 on the first delay tier, …"""
        return self.record.header_int(headers.RETRY_ATTEMPT)


D = TypeVar("D")


@dataclass(frozen=True)
class Context(Generic[D]):
    """What a handler gets beside its event: the service's dependencies and the delivery."""

    deps: D
    delivery: Delivery


Handler = Callable[[Any, Context[Any]], Awaitable[Effect]]
Handlers = Mapping[type[Event], Handler]
"""Event type → its handler: the events a consumer accepts are the keys."""


def dedupe_key(event: Event, record: ReceivedRecord) -> str:
    """What makes a delivery "the same" for deduplication: the event id, except that a pass through a
    delay tier and an operator's replay are deliberate new deliveries of the same event. A consumer
    that verifies reads these headers only once their signature is verified (:meth:`EventConsumer.parse`,
    :mod:`services.runtime.trust.header_signing`)."""
    key = str(event.event_id)
    if replay := record.headers.get(headers.REPLAY_ID):
        key += f"#replay:{replay}"
    if attempt := record.header_int(headers.RETRY_ATTEMPT):
        key += f"#retry:{attempt}"
    return key


_AGENCY_TOPIC = re.compile(r"handoff\.([a-z_]+)\.(?:requested|retry)")


def _count_dead_letter(topic: str, error_class: FailureClass) -> None:
    """Count a dead letter in ``lienthong_dead_letters_total``, under the agency whose topic it is."""
    match = _AGENCY_TOPIC.search(topic)
    if match is not None and match.group(1) in {a.value for a in Agency}:
        METRICS.agency(match.group(1)).dead_lettered(error_class)
    else:
        METRICS.dead_lettered_without_agency(error_class)


class EventConsumer:
    def __init__(
        self,
        *,
        store: ProcessingStore,
        relay: OutboxRelay,
        group_id: str,
        handlers: Handlers,
        deps: object = None,
        service: Service | str | None = None,
        failure_backoff_s: float = 1.0,
        observes: Sequence[str] = (),
        dlq_for: Callable[[str], str] = dlq_topic,
        on_poison: Callable[[str], None] | None = None,
        verifier: Verifier | Literal["env"] | None = "env",
        gather_ms: int = 0,
        lookup_before_handling: bool = True,
        retriers: Collection[str] | None = None,
        max_event_age: timedelta | Literal["env"] = "env",
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        """``handlers``: the event types this consumer accepts and the handler of each, called with the
        event and a :class:`Context` holding ``deps`` (the service's dependencies). ``observes``: topics
        this consumer only watches; their owner dead-letters their poison, so
        here it is logged and skipped, never dead-lettered a second time. ``dlq_for``: the dead-letter
        topic of a consumed topic. ``on_poison``: told the error class of each dead letter (metrics).
        ``verifier``: checks every event's signature (by default the process's, from
        ``LIENTHONG_TRUST_STORE``; None verifies nothing). ``gather_ms``: how long the broker may hold
        a fetch to gather more records — for a consumer off the dossiers' path (the tracker's read
        model), fewer and larger batches cost far less CPU than one fetch per record.
        ``lookup_before_handling``: look a record's id up before calling its handler, so that a
        redelivery never calls an agency twice; a consumer whose handlers only compute a write and
        its events (the tracker, the router) leaves it to the commit, which applies nothing for an
        id it stored before, and saves a query per record (a round trip on PostgreSQL). It looks
        the id up only for a record its handler refused, before dead-lettering it.
        ``retriers``: the producers whose signature may set a retry attempt header (by default this
        process's own, :func:`services.runtime.trust.signing.process_signer`); ``max_event_age``: the
        age window (``LIENTHONG_MAX_EVENT_AGE`` by default), measured on ``clock``. Both apply only
        when the consumer verifies (:mod:`services.runtime.trust.header_signing`)."""
        self.store = store
        self.relay = relay
        self.group_id = group_id
        self.handlers = dict(handlers)
        self.accepts = tuple(self.handlers)
        self.deps = deps
        self.failure_backoff_s = failure_backoff_s
        self.observes = frozenset(observes)
        self.dlq_for = dlq_for
        self.on_poison = on_poison
        self.verifier = signing.process_verifier() if verifier == "env" else verifier
        if self.verifier is None:
            log.warning("consumer group %s does not verify event signatures (no trust store)", group_id)
        self.gather_ms = gather_ms
        self.lookup_before_handling = lookup_before_handling
        if retriers is None:
            own = signing.process_signer() if self.verifier is not None else None
            retriers = [own.key.producer] if own is not None else []
        self.retriers = frozenset(retriers)
        self.max_event_age = SigningSettings().max_event_age if max_event_age == "env" else max_event_age
        self.clock = clock
        # A consumer group is named after its service: "<prefix>router", "<prefix>connector-land".
        self.service = str(service or group_id.rsplit(".", 1)[-1].split("-")[0])
        self.metrics = METRICS.service(self.service)
        self._committers: weakref.WeakKeyDictionary[Any, BackgroundCommitter] = weakref.WeakKeyDictionary()
        self.polls = 0  # of the broker, by the subscribers this consumer made
        self.restarts = 0  # of subscribers whose consumer broke (keep_polling)
        self._subscribers: list[Any] = []
        self._failed_polls: dict[Any, int] = {}

    def subscribe(self, broker: KafkaBroker, topics: Sequence[str], *, description: str) -> None:
        # Each poll's records come as one batch and are processed in order, each exactly as alone.
        # MANUAL: FastStream neither commits (its ack awaits a commit, a broker round trip) nor
        # auto-commits what was merely fetched: each stored record's offset is marked and committed in
        # the background (services.runtime.consume.offsets). On a failure the partitions seek back to the
        # batch's first records; those already stored are deduplicated.
        subscriber: Any = None
        subscriber = broker.subscriber(
            *topics,
            group_id=self.group_id,
            ack_policy=AckPolicy.MANUAL,
            auto_offset_reset="earliest",
            batch=True,
            max_records=MAX_BATCH_RECORDS,
            batch_timeout_ms=BATCH_POLL_MS,
            # aiokafka's defaults (1 byte, 500 ms) hand over each record as soon as it is written
            fetch_min_bytes=GATHER_BYTES if self.gather_ms else 1,
            fetch_max_wait_ms=self.gather_ms or 500,
            parser=BatchParser(lambda: getattr(subscriber, "consumer", None)),
            decoder=raw_body,
            description=description,
        )

        async def consume(body: Any, message: KafkaMessage) -> None:
            raw = message.raw_message
            mark = self._committer(message.consumer).mark
            try:
                # One transaction for the records handled until the consumer yields
                # (services.runtime.storage.store);
                # a record's offset is marked once its commit is durable, never before.
                with self.store.grouped() as group:
                    for record in raw if isinstance(raw, tuple) else (raw,):
                        received = ReceivedRecord.from_consumer_record(record, self.group_id)
                        await self.process(received)
                        group.when_durable(partial(self._stored, mark, record))
            except Exception:
                await message.nack()
                raise

        subscriber(consume)
        self._listen_without_pause(subscriber)

    def _listen_without_pause(self, subscriber: Any) -> None:
        """FastStream's batch subscriber polls for ``batch_timeout_ms``, then, when nothing came, sleeps
        as long again: a record arriving meanwhile waits. aiokafka's ``getmany`` already returns the
        moment a record arrives, so this subscriber only listens (what it saved: docs/performance.md).
        Should a FastStream release stop
        calling ``get_msg``, its own poll and its BATCH_POLL_MS sleep come back (an integration test
        checks that it still calls this one)."""

        async def get_msg(consumer: AIOKafkaConsumer) -> tuple[ConsumerRecord[bytes, bytes], ...]:
            self.polls += 1
            try:
                batches = await consumer.getmany(timeout_ms=LISTEN_MS, max_records=MAX_BATCH_RECORDS)
            except Exception:
                self._failed_polls[subscriber] = self._failed_polls.get(subscriber, 0) + 1
                raise
            self._failed_polls[subscriber] = 0
            return tuple(chain.from_iterable(batches.values()))

        subscriber.get_msg = get_msg
        self._subscribers.append(subscriber)

    async def keep_polling(self) -> None:
        """Restarts a subscriber whose consumer fails every poll. FastStream retries a failing poll every
        5 s for ever; an aiokafka consumer whose group coordination died (seen when the broker was
        SIGKILLed: "Unexpected error during coordination") fails every poll after, and its partitions
        would stand still unseen. Stopping and starting the subscriber gives it a new consumer, which
        rejoins the group and resumes from the committed offsets. Run by the service shell, which
        supervises it like every background loop."""
        while True:
            await asyncio.sleep(WATCH_S)
            for subscriber in self._subscribers:
                if self._failed_polls.get(subscriber, 0) < BROKEN_AFTER_POLLS:
                    continue
                log.error(
                    "the consumer of group %s failed %d polls in a row; starting it again",
                    self.group_id,
                    self._failed_polls[subscriber],
                )
                self._failed_polls[subscriber] = 0
                self.restarts += 1
                with contextlib.suppress(Exception):
                    async with asyncio.timeout(30):
                        await subscriber.stop()
                await subscriber.start()

    def _stored(self, mark: Callable[[str, int, int], None], record: Any) -> None:
        mark(record.topic, record.partition, record.offset)
        self.relay.wake()

    def _committer(self, consumer: Any) -> BackgroundCommitter:
        committer = self._committers.get(consumer)
        if committer is None:
            committer = self._committers[consumer] = BackgroundCommitter(consumer)
        return committer

    def parse(self, record: ReceivedRecord) -> Event:
        if record.undecodable:  # no producer of ours writes a header that is not text
            raise InvalidHeader(", ".join(sorted(record.undecodable)), "not UTF-8")
        if len(record.value) > MAX_RECORD_BYTES:
            raise OversizedRecord(f"record of {len(record.value)} bytes exceeds {MAX_RECORD_BYTES}")
        event = parse_event(record.value, record.headers)
        if not isinstance(event, self.accepts):
            raise UnknownEventType(f"{event.event_type} (not accepted on {record.topic})")
        if record.key != str(event.dossier_id).encode():
            raise KeyMismatch("the record key is not the event's dossier_id")
        if self.verifier is not None:  # after the contract checks: the signature covers a parsed event
            self.verifier.verify(event)
            # The replay id and retry attempt change the dedupe key: only signed by who may set them.
            header_signing.verify_headers(
                self.verifier, event.event_id, record.headers, retriers=self.retriers
            )
        return event

    def _too_old(self, event: Event, record: ReceivedRecord) -> header_signing.EventTooOld | None:
        """Why ``event`` is refused for its age, or None: older than the window and not a replay (whose
        signature :meth:`parse` verified). Only a consumer that verifies trusts ``occurred_at``."""
        if self.verifier is None or headers.REPLAY_ID in record.headers:
            return None
        age = self.clock() - event.occurred_at
        if age <= self.max_event_age:
            return None
        return header_signing.EventTooOld(
            f"{event.event_type} occurred {age.total_seconds() / 86400:.1f} days ago, beyond the"
            f" {self.max_event_age.total_seconds() / 86400:g}-day window (LIENTHONG_MAX_EVENT_AGE);"
            " only an operator's replay brings it back"
        )

    def _poison(self, record: ReceivedRecord, error: EventContractError) -> list[OutgoingRecord]:
        error_class = classify(error).failure_class  # signature or poison
        self.metrics.poison_records.inc()
        return self._dead_letter(record, error_class, error)

    def _dead_letter(
        self, record: ReceivedRecord, error_class: FailureClass, error: BaseException
    ) -> list[OutgoingRecord]:
        """The dead letter of a record this consumer cannot act on, counted and logged; nothing for a
        record of a topic it only observes (its owner dead-letters it)."""
        owned = record.topic not in self.observes
        what = {
            FailureClass.SIGNATURE: "badly signed",
            FailureClass.AUTHORIZATION: "unauthorised",
            FailureClass.POISON: "poison",
        }.get(error_class, "failed")
        log.warning(
            "%s record %s: %s",
            what,
            "dead-lettered" if owned else "skipped (its owner dead-letters it)",
            describe(error, 200),
            extra={"topic": record.topic, "partition": record.partition, "offset": record.offset},
        )
        if not owned:
            return []
        if self.on_poison is not None:
            self.on_poison(error_class.value)
        else:
            _count_dead_letter(record.topic, error_class)
        failure = Failure(error_class.value, error)
        return [dead_letter(record, failure, topic=self.dlq_for(record.topic))]

    async def process(self, record: ReceivedRecord) -> None:
        """Parse, dedupe, handle and store one record (inside its trace when tracing is on)."""
        if not tracing_enabled():
            return await self._process(record)
        with handling(record.topic, record.headers, self.group_id, self.service):
            return await self._process(record)

    async def _process(self, record: ReceivedRecord) -> None:
        try:
            event = self.parse(record)
        except EventContractError as error:
            letters = self._poison(record, error)
            if letters:
                self.store.commit(None, letters)
                self.relay.wake()
            return
        key = dedupe_key(event, record)
        if self.lookup_before_handling and self.store.was_processed(key):
            return
        if (too_old := self._too_old(event, record)) is not None:
            if self._redelivered(key):
                return  # a redelivery of what it processed in time
            self.store.commit(key, self._poison(record, too_old))
            self.relay.wake()
            return
        try:
            handler = self.handlers[type(event)]
            effect = await handler(event, Context(self.deps, Delivery(record)))
        except EventContractError as error:  # valid JSON, but nothing this service can act on
            if self._redelivered(key):
                return
            effect = Effect(emitted=self._poison(record, error))
        except Exception as error:
            # Only a failure of the service itself brings the record back; anything else the handler
            # raised is this record's (a bug, a state or catalog it no longer fits): redelivering it
            # would fail again for ever and stop its partition.
            if classify(error).redelivered:
                await self._back_off(event)
                raise
            if self._redelivered(key):
                return
            log.exception("handling %s raised; the record is dead-lettered", event.event_type)
            effect = Effect(emitted=self._dead_letter(record, classify(error).failure_class, error))
        try:
            applied = self.store.commit(key, effect.emitted, effect.write)
        except Exception:
            await self._back_off(event)
            raise
        if not applied:  # stored before: a redelivery
            return
        self.metrics.processed(event.event_type)
        self.relay.wake()

    def _redelivered(self, key: str) -> bool:
        """Whether a record about to be dead-lettered was stored before, for a consumer that did not
        look before handling it: handled again, it may fail only because its first handling changed
        the state it reads, and a redelivery is neither dead-lettered nor counted a second time."""
        return not self.lookup_before_handling and self.store.was_processed(key)

    async def _back_off(self, event: Event) -> None:
        log.exception("handling %s failed; the record will be redelivered", event.event_type)
        await asyncio.sleep(self.failure_backoff_s)  # no hot loop while the cause lasts

"""The one consume path every service uses: parse, dead-letter poison, dedupe, handle, commit, ack.

For each record: the runtime parses it as an event (a record that does not parse, or is not an event
this consumer accepts, goes to the dead-letter topic with the reason and never reaches the handler);
an event already processed is skipped; the handler decides; its writes, the event id and what it
emits are committed in one transaction; only then is the Kafka offset committed. A failure of the
infrastructure itself (the store, a bug) leaves the offset where it is, so the record comes again.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from faststream import AckPolicy
from faststream.kafka import KafkaBroker
from faststream.kafka.annotations import KafkaMessage

from schemas.envelope import Event
from schemas.errors import EventContractError, UnknownEventType
from schemas.events import parse_event
from services.runtime.deadletter import Failure, dead_letter
from services.runtime.outbox import OutboxRelay, OutgoingRecord
from services.runtime.records import ReceivedRecord, raw_body
from services.runtime.store import ProcessingStore, Write

log = logging.getLogger(__name__)

MAX_RECORD_BYTES = 1_000_000


class OversizedRecord(EventContractError):
    """A record larger than any event of ours can be."""


@dataclass
class Effect:
    """What handling one event does: records to emit and the service's own writes."""

    emitted: list[OutgoingRecord] = field(default_factory=list)
    write: Write | None = None


Handler = Callable[[Event, ReceivedRecord], Awaitable[Effect]]


class EventConsumer:
    def __init__(
        self,
        *,
        store: ProcessingStore,
        relay: OutboxRelay,
        group_id: str,
        accepts: Sequence[type[Event]],
        failure_backoff_s: float = 1.0,
        observes: Sequence[str] = (),
    ) -> None:
        """``observes``: topics this consumer only watches. Their owner dead-letters their poison,
        so here it is logged and skipped, never dead-lettered a second time."""
        self.store = store
        self.relay = relay
        self.group_id = group_id
        self.accepts = tuple(accepts)
        self.failure_backoff_s = failure_backoff_s
        self.observes = frozenset(observes)

    def subscribe(
        self, broker: KafkaBroker, topics: Sequence[str], handler: Handler, *, description: str
    ) -> None:
        # NACK_ON_ERROR: the offset is committed only after `process` returned (never FastStream's
        # auto-commit default), and an infrastructure failure seeks back to the same record.
        @broker.subscriber(
            *topics,
            group_id=self.group_id,
            ack_policy=AckPolicy.NACK_ON_ERROR,
            auto_offset_reset="earliest",
            decoder=raw_body,
            description=description,
        )
        async def consume(body: bytes, message: KafkaMessage) -> None:
            await self.process(body, message, handler)

    def parse(self, record: ReceivedRecord) -> Event:
        if len(record.value) > MAX_RECORD_BYTES:
            raise OversizedRecord(f"record of {len(record.value)} bytes exceeds {MAX_RECORD_BYTES}")
        event = parse_event(record.value, record.headers)
        if not isinstance(event, self.accepts):
            raise UnknownEventType(f"{event.event_type} (not accepted on {record.topic})")
        return event

    async def process(self, body: bytes, message: KafkaMessage, handler: Handler) -> None:
        record = ReceivedRecord.from_message(body, message, self.group_id)
        try:
            event = self.parse(record)
        except EventContractError as error:
            owned = record.topic not in self.observes
            log.warning(
                "poison record %s",
                "dead-lettered" if owned else "skipped (its owner dead-letters it)",
                extra={"topic": record.topic, "offset": record.offset, "error": str(error)[:200]},
            )
            if not owned:
                return
            self.store.commit(None, [dead_letter(record, Failure("poison", error))])
            self.relay.wake()
            return
        event_id = str(event.event_id)
        if self.store.was_processed(event_id):
            return
        try:
            effect = await handler(event, record)
        except EventContractError as error:  # valid JSON, but nothing this service can act on
            effect = Effect(emitted=[dead_letter(record, Failure("poison", error))])
        except Exception:
            await self._back_off(event)
            raise
        try:
            self.store.commit(event_id, effect.emitted, effect.write)
        except Exception:
            await self._back_off(event)
            raise
        self.relay.wake()

    async def _back_off(self, event: Event) -> None:
        log.exception("handling %s failed; the record will be redelivered", event.event_type)
        await asyncio.sleep(self.failure_backoff_s)  # no hot loop while the cause lasts

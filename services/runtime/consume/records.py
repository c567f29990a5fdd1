"""Events as Kafka records, and Kafka records as the runtime sees them."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Self

from aiokafka import ConsumerRecord
from faststream.kafka.message import FAKE_CONSUMER, KafkaAckableMessage
from faststream.message import StreamMessage

from schemas.envelope import Event, event_headers, event_key, event_value
from services.runtime.storage.outbox import OutgoingRecord
from services.runtime.trust import signing


def event_record(event: Event, topic: str) -> OutgoingRecord:
    """The record that carries ``event`` (CloudEvents binary content mode, see :mod:`schemas.envelope`):
    keyed by dossier id, the envelope in headers, the data as the value; signed with this process's key
    (every service emits through here: see :mod:`services.runtime.trust.signing`)."""
    event = signing.sign_if_configured(event)
    return OutgoingRecord(
        topic=topic, key=event_key(event), value=event_value(event), headers=event_headers(event)
    )


class BatchParser:
    """FastStream's batch parser, minus what makes a poll fail: FastStream's own decodes every header
    of every record of the poll strictly, so one non-UTF-8 value raised before any handler ran and the
    whole poll was dropped (offsets moved on, no dead letter). This one never raises: header text is
    decoded with replacement for FastStream's middlewares (telemetry reads ``traceparent``), and the
    consumer reads each record again from the raw record (:meth:`ReceivedRecord.from_consumer_record`),
    so a record that cannot be decoded is dead-lettered alone.

    ``consumer`` gives the subscriber's aiokafka consumer once it started (the message's ``nack`` seeks
    it back); FastStream's in-memory test broker has none."""

    def __init__(self, consumer: Callable[[], Any]) -> None:
        self.consumer = consumer

    async def __call__(self, records: tuple[ConsumerRecord[bytes, bytes], ...]) -> StreamMessage[Any]:
        batch = tuple(records) if isinstance(records, (tuple, list)) else (records,)
        batch_headers = [decode_headers(record.headers)[0] for record in batch]
        headers = batch_headers[0] if batch_headers else {}
        first, last = (batch[0], batch[-1]) if batch else (None, None)
        return KafkaAckableMessage(
            body=[record.value or b"" for record in batch],
            headers=headers,
            batch_headers=batch_headers,
            reply_to="",
            content_type=headers.get("content-type"),
            message_id=f"{first.offset}-{last.offset}-{first.timestamp}" if first and last else "",
            correlation_id=headers.get("ce_correlationid"),
            raw_message=batch,
            consumer=self.consumer() or FAKE_CONSUMER,
        )


async def raw_body(message: StreamMessage[object]) -> bytes:
    """A FastStream decoder that hands the handler the record's bytes: parsing is the runtime's job,
    so that a record that does not parse becomes a dead letter instead of an exception in FastStream."""
    return message.body


def decode_headers(headers: Sequence[tuple[str, bytes | None]]) -> tuple[dict[str, str], dict[str, bytes]]:
    """A record's headers as text, and the raw bytes of those that are not UTF-8 (their text holds
    replacement characters). A header without a value (Kafka allows it) reads as empty text."""
    try:
        return {name: value.decode() for name, value in headers}, {}  # type: ignore[union-attr]
    except (UnicodeDecodeError, AttributeError):  # rare; strict decoding of the common case is faster
        pass
    text: dict[str, str] = {}
    undecodable: dict[str, bytes] = {}
    for name, value in headers:
        raw = value or b""
        try:
            text[name] = raw.decode()
        except UnicodeDecodeError:
            text[name] = raw.decode(errors="replace")
            undecodable[name] = raw
    return text, undecodable


@dataclass(frozen=True)
class ReceivedRecord:
    """Where a record came from, for dead-letter context and logs."""

    topic: str
    partition: int
    offset: int
    timestamp: datetime
    key: bytes | None
    value: bytes
    headers: dict[str, str]
    group_id: str
    # Headers whose values are not UTF-8, as received: such a record is dead-lettered, bytes intact.
    undecodable: Mapping[str, bytes] = field(default_factory=dict)
    timestamp_type: int = 0  # Kafka's: 0 CreateTime, 1 LogAppendTime
    raw_headers: Sequence[tuple[str, bytes | None]] = ()  # every header as it came, in order

    @classmethod
    def from_consumer_record(
        cls, raw: ConsumerRecord[bytes, bytes], group_id: str, *, value: bytes | None = None
    ) -> Self:
        headers, undecodable = decode_headers(raw.headers)
        return cls(
            topic=raw.topic,
            partition=raw.partition,
            offset=raw.offset,
            timestamp=_timestamp(raw.timestamp),
            key=raw.key,
            value=value if value is not None else (raw.value or b""),
            headers=headers,
            group_id=group_id,
            undecodable=undecodable,
            timestamp_type=raw.timestamp_type or 0,
            raw_headers=raw.headers,
        )

    def header_int(self, name: str, default: int = 0) -> int:
        value = self.headers.get(name)
        return int(value) if value is not None and value.isdigit() else default


def _timestamp(epoch_ms: int | None) -> datetime:
    """The record's time; a record without one (-1, or none at all) reads as the epoch."""
    if epoch_ms is None or epoch_ms < 0:
        return datetime.fromtimestamp(0, UTC)
    return datetime.fromtimestamp(epoch_ms / 1000, UTC)

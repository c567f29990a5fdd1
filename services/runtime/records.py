"""Events as Kafka records, and Kafka records as the runtime sees them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Self

from aiokafka import ConsumerRecord
from faststream.message import StreamMessage

from schemas.envelope import Event, event_headers, event_key, event_value
from services.runtime import signing
from services.runtime.outbox import OutgoingRecord


def event_record(event: Event, topic: str) -> OutgoingRecord:
    """The record that carries ``event``: keyed by dossier id, CloudEvents headers, JSON value; signed
    with this process's key (every service emits through here: see :mod:`services.runtime.signing`)."""
    event = signing.sign_if_configured(event)
    headers = event_headers(event)
    if event.signature is not None and event.key_id is not None:
        headers[signing.CE_SIGNATURE] = event.signature
        headers[signing.CE_KEYID] = event.key_id
    return OutgoingRecord(topic=topic, key=event_key(event), value=event_value(event), headers=headers)


async def raw_body(message: StreamMessage[object]) -> bytes:
    """A FastStream decoder that hands the handler the record's bytes: parsing is the runtime's job,
    so that a record that does not parse becomes a dead letter instead of an exception in FastStream."""
    return message.body


def _decoded(headers: Sequence[tuple[str, bytes | None]]) -> dict[str, str]:
    try:
        return {name: value.decode() for name, value in headers}  # type: ignore[union-attr]
    except (UnicodeDecodeError, AttributeError):  # rare (not UTF-8, or a null value); strict is faster
        return {name: (value or b"").decode(errors="replace") for name, value in headers}


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

    @classmethod
    def from_consumer_record(
        cls, raw: ConsumerRecord[bytes, bytes], group_id: str, *, value: bytes | None = None
    ) -> Self:
        return cls(
            topic=raw.topic,
            partition=raw.partition,
            offset=raw.offset,
            timestamp=datetime.fromtimestamp(raw.timestamp / 1000, UTC),
            key=raw.key,
            value=value if value is not None else (raw.value or b""),
            headers=_decoded(raw.headers),
            group_id=group_id,
        )

    def header_int(self, name: str, default: int = 0) -> int:
        value = self.headers.get(name)
        return int(value) if value is not None and value.isdigit() else default

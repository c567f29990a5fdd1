"""Dead letters: the original record kept whole, its story told in headers.

Header names follow Spring Kafka's ``DeadLetterPublishingRecoverer`` (``kafka_dlt-*``) so that
existing tools read them; values are UTF-8 text (Spring writes partition, offset and timestamp as
big-endian binary numbers; text is what Kafka Connect and most UIs show, and what our CLI reads).
Our additions are ``kafka_dlt-lienthong-*``. Error messages never carry personal data: they come from
our own classified errors, whose texts name fields, not values.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

from schemas.topics import dlq_topic
from services.runtime.failures import describe
from services.runtime.outbox import OutgoingRecord
from services.runtime.records import ReceivedRecord

ORIGINAL_TOPIC: Final = "kafka_dlt-original-topic"
ORIGINAL_PARTITION: Final = "kafka_dlt-original-partition"
ORIGINAL_OFFSET: Final = "kafka_dlt-original-offset"
ORIGINAL_TIMESTAMP: Final = "kafka_dlt-original-timestamp"
ORIGINAL_CONSUMER_GROUP: Final = "kafka_dlt-original-consumer-group"
EXCEPTION_FQCN: Final = "kafka_dlt-exception-fqcn"
EXCEPTION_MESSAGE: Final = "kafka_dlt-exception-message"
ERROR_CLASS: Final = "kafka_dlt-lienthong-error-class"
ATTEMPTS: Final = "kafka_dlt-lienthong-attempts"
FIRST_FAILURE: Final = "kafka_dlt-lienthong-first-failure"
LAST_FAILURE: Final = "kafka_dlt-lienthong-last-failure"

_MAX_MESSAGE = 500


@dataclass(frozen=True)
class Failure:
    error_class: str  # an ErrorClass value: poison, transient, protocol, internal or signature
    exception: BaseException
    attempts: int = 1
    first_failure: datetime | None = None


def dead_letter(record: ReceivedRecord, failure: Failure, *, topic: str | None = None) -> OutgoingRecord:
    """The dead-letter record of ``record``: original key, value and headers, plus the context."""
    now = datetime.now(UTC)
    exc = failure.exception
    context = {
        ORIGINAL_TOPIC: record.topic,
        ORIGINAL_PARTITION: str(record.partition),
        ORIGINAL_OFFSET: str(record.offset),
        ORIGINAL_TIMESTAMP: str(int(record.timestamp.timestamp() * 1000)),
        ORIGINAL_CONSUMER_GROUP: record.group_id,
        EXCEPTION_FQCN: f"{type(exc).__module__}.{type(exc).__qualname__}",
        EXCEPTION_MESSAGE: describe(exc, _MAX_MESSAGE),
        ERROR_CLASS: failure.error_class,
        ATTEMPTS: str(failure.attempts),
        FIRST_FAILURE: (failure.first_failure or now).isoformat(),
        LAST_FAILURE: now.isoformat(),
    }
    # Context headers replace stale ones from an earlier dead-lettering of a replayed record; a header
    # that was not UTF-8 is kept as it came.
    kept = {
        k: v
        for k, v in record.headers.items()
        if not k.startswith("kafka_dlt-") and k not in record.undecodable
    }
    return OutgoingRecord(
        topic=topic or dlq_topic(record.topic),
        key=record.key or b"",
        value=record.value,
        headers=kept | context,
        binary_headers=dict(record.undecodable),
    )

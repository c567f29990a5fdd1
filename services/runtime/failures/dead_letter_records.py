"""Dead letters: the original record kept whole, its story told in headers.

The context headers are Spring Kafka's ``DeadLetterPublishingRecoverer``'s (``kafka_dlt-*``), in its
encoding, so that a Spring consumer (and the tools built on it) reads our dead letters: the original
partition as a 4-byte and the offset and timestamp as 8-byte big-endian integers, the rest UTF-8
text — topic, timestamp type (``CreateTime`` or ``LogAppendTime``), consumer group, the exception's
class, its cause's class, its message and a stack trace. Our additions are ``kafka_dlt-lienthong-*``
(text). Dead letters written before this encoding hold the three numbers as decimal text;
:func:`original_number` reads both.

Nothing personal reaches these headers: the message is :func:`~services.runtime.failures.table.describe`'s
(a validation error without its input), and the stack trace is the frames of our code and that
message, never an exception's own rendering.
"""

from __future__ import annotations

import struct
import traceback
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

from schemas.topics import dlq_topic
from services.runtime.consume.records import ReceivedRecord
from services.runtime.failures.table import describe
from services.runtime.storage.outbox import OutgoingRecord

ORIGINAL_TOPIC: Final = "kafka_dlt-original-topic"
ORIGINAL_PARTITION: Final = "kafka_dlt-original-partition"
ORIGINAL_OFFSET: Final = "kafka_dlt-original-offset"
ORIGINAL_TIMESTAMP: Final = "kafka_dlt-original-timestamp"
ORIGINAL_TIMESTAMP_TYPE: Final = "kafka_dlt-original-timestamp-type"
ORIGINAL_CONSUMER_GROUP: Final = "kafka_dlt-original-consumer-group"
EXCEPTION_FQCN: Final = "kafka_dlt-exception-fqcn"
EXCEPTION_CAUSE_FQCN: Final = "kafka_dlt-exception-cause-fqcn"
EXCEPTION_MESSAGE: Final = "kafka_dlt-exception-message"
EXCEPTION_STACKTRACE: Final = "kafka_dlt-exception-stacktrace"
ERROR_CLASS: Final = "kafka_dlt-lienthong-error-class"
ATTEMPTS: Final = "kafka_dlt-lienthong-attempts"
FIRST_FAILURE: Final = "kafka_dlt-lienthong-first-failure"
LAST_FAILURE: Final = "kafka_dlt-lienthong-last-failure"

_MAX_MESSAGE = 500
_MAX_STACKTRACE = 4000
TIMESTAMP_TYPES: Final = ("CreateTime", "LogAppendTime")  # Kafka's TimestampType, by its number
_BINARY: Final = {ORIGINAL_PARTITION: ">i", ORIGINAL_OFFSET: ">q", ORIGINAL_TIMESTAMP: ">q"}


@dataclass(frozen=True)
class Failure:
    error_class: str  # a FailureClass value, one of failures.table.DEAD_LETTER_CLASSES
    exception: BaseException
    attempts: int = 1
    first_failure: datetime | None = None


def dead_letter(record: ReceivedRecord, failure: Failure, *, topic: str | None = None) -> OutgoingRecord:
    """The dead-letter record of ``record``: original key, value and headers, plus the context."""
    now = datetime.now(UTC)
    exc = failure.exception
    cause = exc.__cause__ or exc.__context__ or exc
    message = describe(exc, _MAX_MESSAGE)
    context = {
        ORIGINAL_TOPIC: record.topic,
        ORIGINAL_TIMESTAMP_TYPE: TIMESTAMP_TYPES[record.timestamp_type == 1],
        ORIGINAL_CONSUMER_GROUP: record.group_id,
        EXCEPTION_FQCN: _fqcn(exc),
        EXCEPTION_CAUSE_FQCN: _fqcn(cause),
        EXCEPTION_MESSAGE: message,
        EXCEPTION_STACKTRACE: _stacktrace(exc, message),
        ERROR_CLASS: failure.error_class,
        ATTEMPTS: str(failure.attempts),
        FIRST_FAILURE: (failure.first_failure or now).isoformat(),
        LAST_FAILURE: now.isoformat(),
    }
    numbers = {
        ORIGINAL_PARTITION: struct.pack(">i", record.partition),
        ORIGINAL_OFFSET: struct.pack(">q", record.offset),
        ORIGINAL_TIMESTAMP: struct.pack(">q", int(record.timestamp.timestamp() * 1000)),
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
        binary_headers={**record.undecodable, **numbers},
    )


def original_number(raw_headers: Sequence[tuple[str, bytes | None]], name: str) -> int | None:
    """A numeric context header of a dead letter (partition, offset, timestamp): Spring's big-endian
    integer, or the decimal text of a dead letter written before; None when absent or unreadable."""
    value = _last(raw_headers, name)
    if value is None:
        return None
    if len(value) == struct.calcsize(_BINARY[name]):
        return int(struct.unpack(_BINARY[name], value)[0])
    text = value.decode(errors="replace")
    return int(text) if text.lstrip("-").isdigit() else None


def readable_context(raw_headers: Sequence[tuple[str, bytes | None]]) -> Mapping[str, str]:
    """Every header of a dead letter as text for a person to read: the numeric context decoded."""
    shown: dict[str, str] = {}
    for name, value in raw_headers:
        if name in _BINARY:
            number = original_number(raw_headers, name)
            shown[name] = str(number) if number is not None else repr(value)
        else:
            shown[name] = (value or b"").decode(errors="replace")
    return shown


def _last(raw_headers: Sequence[tuple[str, bytes | None]], name: str) -> bytes | None:
    found = [value for key, value in raw_headers if key == name]
    return found[-1] if found else None


def _fqcn(error: BaseException) -> str:
    return f"{type(error).__module__}.{type(error).__qualname__}"


def _stacktrace(error: BaseException, message: str) -> str:
    """Where it failed, in our code, and why (the described message, not the exception's own text)."""
    frames = "".join(traceback.format_tb(error.__traceback__)) if error.__traceback__ else ""
    text = f"{_fqcn(error)}: {message}\n" + (
        f"Traceback (most recent call last):\n{frames}" if frames else ""
    )
    return text[-_MAX_STACKTRACE:] if len(text) > _MAX_STACKTRACE else text

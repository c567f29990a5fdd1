"""The envelope every event carries, and how it maps onto a Kafka record.

A Kafka record for an event follows the CloudEvents Kafka protocol binding in *binary content mode*,
so a CloudEvents SDK reads our events and writes events we read:

- key: the dossier id (``str(dossier_id)`` in UTF-8), so one dossier's events stay in order;
- value: the event's ``data`` alone, as JSON (``content-type: application/json``);
- headers: the envelope, one ``ce_`` header per attribute — the spec's ``ce_specversion``, ``ce_id``,
  ``ce_source`` (the producer), ``ce_type``, ``ce_time``, ``ce_subject`` (the dossier id), and our
  extensions ``ce_schemaversion``, ``ce_correlationid``, ``ce_causationid``, ``ce_traceparent`` (the
  CloudEvents distributed-tracing extension), ``ce_signature`` and ``ce_keyid``.

Records written before (the whole event model as the value, the same headers beside it) are still
read, for as long as topics retain them: :func:`schemas.events.parse_event` tells the two apart and
checks, for the old form, that the headers agree with the value.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Annotated, Any, ClassVar, Final, Self
from uuid import UUID, uuid4

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    WithJsonSchema,
)

from schemas.errors import InvalidHeader, MissingHeader
from schemas.values import UtcDatetime

EVENT_TYPE_PREFIX: Final = "vn.lienthong."
_EVENT_TYPE_PATTERN: Final = r"^vn\.lienthong(\.[a-z][a-z0-9_]*)+$"
_TRACEPARENT_RE: Final = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")


def _check_traceparent(value: str) -> str:
    match = _TRACEPARENT_RE.fullmatch(value)
    if match is None:
        raise ValueError("traceparent must look like 00-<32 hex trace id>-<16 hex parent id>-<2 hex flags>")
    version, trace_id, parent_id, _ = match.groups()
    if version == "ff":
        raise ValueError("traceparent version ff is invalid")
    if set(trace_id) == {"0"} or set(parent_id) == {"0"}:
        raise ValueError("traceparent trace id and parent id must not be all zeros")
    return value


Traceparent = Annotated[
    str,
    AfterValidator(_check_traceparent),
    WithJsonSchema(
        {
            "type": "string",
            "pattern": r"^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$",
            "description": "W3C trace context (traceparent) of the span that produced the event.",
        }
    ),
]
"""A W3C ``traceparent`` value."""

ProducerName = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_.-]{0,63}$")]


class Event(BaseModel):
    """Base of every event: the envelope. Concrete events add ``data`` and fix their type and version.

    A concrete event declares ``event_type: Literal[...]`` and ``schema_version: Literal[n]`` with
    defaults; ``EVENT_TYPE`` and ``SCHEMA_VERSION`` are read from them.
    """

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    EVENT_TYPE: ClassVar[str] = ""
    SCHEMA_VERSION: ClassVar[int] = 0

    event_id: UUID = Field(description="Unique id of this event; consumers deduplicate on it.")
    event_type: Annotated[str, StringConstraints(pattern=_EVENT_TYPE_PATTERN)] = Field(
        description="Reverse-DNS event type, e.g. vn.lienthong.dossier.received."
    )
    schema_version: int = Field(ge=1, description="Major version of the event's schema.")
    occurred_at: UtcDatetime = Field(description="When the event happened (UTC, timezone required).")
    producer: ProducerName = Field(description="Service or connector that produced the event.")
    dossier_id: UUID = Field(description="The dossier the event is about; also the Kafka record key.")
    correlation_id: UUID = Field(description="Shared by every event of the dossier's whole journey.")
    causation_id: UUID | None = Field(default=None, description="event_id of the event that caused this one.")
    traceparent: Traceparent | None = Field(default=None, description="W3C trace context, when traced.")
    signature: str | None = Field(default=None, description="Reserved: detached signature of the event.")
    key_id: str | None = Field(default=None, description="Reserved: id of the key that made the signature.")

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        if "data" not in cls.model_fields:
            return
        event_type = cls.model_fields["event_type"].default
        version = cls.model_fields["schema_version"].default
        if not isinstance(event_type, str) or not isinstance(version, int):
            raise TypeError(f"{cls.__name__} must give event_type and schema_version Literal defaults")
        cls.EVENT_TYPE = event_type
        cls.SCHEMA_VERSION = version

    @classmethod
    def create(
        cls,
        *,
        data: BaseModel,
        producer: str,
        dossier_id: UUID | None = None,
        caused_by: Event | None = None,
        correlation_id: UUID | None = None,
        traceparent: str | None = None,
        occurred_at: datetime | None = None,
        event_id: UUID | None = None,
    ) -> Self:
        """A new event with a fresh id and the current time.

        When ``caused_by`` is given, the new event continues its journey: same dossier, same
        correlation id, its event id as causation id, and its trace context unless one is given.
        """
        if dossier_id is None:
            if caused_by is None:
                raise ValueError("dossier_id is required when the event has no cause")
            dossier_id = caused_by.dossier_id
        if correlation_id is None:
            correlation_id = caused_by.correlation_id if caused_by is not None else uuid4()
        if traceparent is None and caused_by is not None:
            traceparent = caused_by.traceparent
        return cls.model_validate(
            {
                "event_id": event_id or uuid4(),
                "occurred_at": occurred_at or datetime.now(UTC),
                "producer": producer,
                "dossier_id": dossier_id,
                "correlation_id": correlation_id,
                "causation_id": caused_by.event_id if caused_by is not None else None,
                "traceparent": traceparent,
                "data": data,
            }
        )


# --- Kafka mapping ----------------------------------------------------------------------------

CE_SPECVERSION: Final = "ce_specversion"
CE_ID: Final = "ce_id"
CE_SOURCE: Final = "ce_source"
CE_TYPE: Final = "ce_type"
CE_TIME: Final = "ce_time"
CE_SUBJECT: Final = "ce_subject"
CE_SCHEMAVERSION: Final = "ce_schemaversion"
CE_CORRELATIONID: Final = "ce_correlationid"
CE_CAUSATIONID: Final = "ce_causationid"
CE_TRACEPARENT: Final = "ce_traceparent"
CE_SIGNATURE: Final = "ce_signature"
CE_KEYID: Final = "ce_keyid"
CONTENT_TYPE: Final = "content-type"
SPECVERSION: Final = "1.0"
JSON_CONTENT_TYPE: Final = "application/json"


class EnvelopeHeaders(BaseModel):
    """The envelope as read back from Kafka headers (without the payload)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    event_id: UUID
    event_type: Annotated[str, StringConstraints(pattern=_EVENT_TYPE_PATTERN)]
    schema_version: int = Field(ge=1)
    occurred_at: UtcDatetime
    producer: ProducerName
    dossier_id: UUID
    correlation_id: UUID
    causation_id: UUID | None = None
    traceparent: Traceparent | None = None
    content_type: str = JSON_CONTENT_TYPE


# Header name for each EnvelopeHeaders field; required headers first.
_REQUIRED: Final[dict[str, str]] = {
    "event_id": CE_ID,
    "event_type": CE_TYPE,
    "schema_version": CE_SCHEMAVERSION,
    "occurred_at": CE_TIME,
    "producer": CE_SOURCE,
    "dossier_id": CE_SUBJECT,
    "correlation_id": CE_CORRELATIONID,
}
_OPTIONAL: Final[dict[str, str]] = {
    "causation_id": CE_CAUSATIONID,
    "traceparent": CE_TRACEPARENT,
    "content_type": CONTENT_TYPE,
}


def _format_time(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")


def event_key(event: Event) -> bytes:
    """The Kafka record key of an event: its dossier id."""
    return str(event.dossier_id).encode()


def event_value(event: Event) -> bytes:
    """The Kafka record value of an event: its ``data`` as JSON (binary content mode)."""
    data = getattr(event, "data", None)
    if not isinstance(data, BaseModel):
        raise TypeError(f"{type(event).__name__} has no data to send")
    return data.model_dump_json().encode()


def event_headers(event: Event) -> dict[str, str]:
    """CloudEvents binary-mode headers: the event's envelope, attribute by attribute."""
    headers = {
        CE_SPECVERSION: SPECVERSION,
        CE_ID: str(event.event_id),
        CE_SOURCE: event.producer,
        CE_TYPE: event.event_type,
        CE_TIME: _format_time(event.occurred_at),
        CE_SUBJECT: str(event.dossier_id),
        CE_SCHEMAVERSION: str(event.schema_version),
        CE_CORRELATIONID: str(event.correlation_id),
        CONTENT_TYPE: JSON_CONTENT_TYPE,
    }
    if event.causation_id is not None:
        headers[CE_CAUSATIONID] = str(event.causation_id)
    if event.traceparent is not None:
        headers[CE_TRACEPARENT] = event.traceparent
    if event.signature is not None and event.key_id is not None:
        headers[CE_SIGNATURE] = event.signature
        headers[CE_KEYID] = event.key_id
    return headers


# Header of each envelope field in binary content mode; required ones first.
BINARY_REQUIRED: Final[dict[str, str]] = {
    "event_id": CE_ID,
    "event_type": CE_TYPE,
    "schema_version": CE_SCHEMAVERSION,
    "occurred_at": CE_TIME,
    "producer": CE_SOURCE,
    "dossier_id": CE_SUBJECT,
    "correlation_id": CE_CORRELATIONID,
}
BINARY_OPTIONAL: Final[dict[str, str]] = {
    "causation_id": CE_CAUSATIONID,
    "traceparent": CE_TRACEPARENT,
    "signature": CE_SIGNATURE,
    "key_id": CE_KEYID,
}


def header_text(headers: Mapping[str, bytes | str], name: str) -> str | None:
    """A header's value as text (None when absent); InvalidHeader when it is not UTF-8."""
    value = headers.get(name)
    return None if value is None else _decode(name, value)


def kafka_headers(event: Event) -> list[tuple[str, bytes]]:
    """:func:`event_headers` in the shape aiokafka's ``send(headers=...)`` takes."""
    return [(name, value.encode()) for name, value in event_headers(event).items()]


def _decode(name: str, value: bytes | str) -> str:
    if isinstance(value, str):
        return value
    try:
        return value.decode()
    except UnicodeDecodeError:
        raise InvalidHeader(name, "not UTF-8") from None


def envelope_from_headers(headers: Mapping[str, bytes | str]) -> EnvelopeHeaders:
    """Read the envelope back from CloudEvents headers.

    Raises :class:`~schemas.errors.MissingHeader` when a required header is absent and
    :class:`~schemas.errors.InvalidHeader` when one holds a bad value.
    """
    specversion = headers.get(CE_SPECVERSION)
    if specversion is None:
        raise MissingHeader(CE_SPECVERSION)
    if _decode(CE_SPECVERSION, specversion) != SPECVERSION:
        raise InvalidHeader(CE_SPECVERSION, f"expected {SPECVERSION!r}")
    values: dict[str, str] = {}
    for field, name in _REQUIRED.items():
        raw = headers.get(name)
        if raw is None:
            raise MissingHeader(name)
        values[field] = _decode(name, raw)
    for field, name in _OPTIONAL.items():
        raw = headers.get(name)
        if raw is not None:
            values[field] = _decode(name, raw)
    content_type = values.get("content_type", JSON_CONTENT_TYPE)
    if content_type.split(";")[0].strip() != JSON_CONTENT_TYPE:
        raise InvalidHeader(CONTENT_TYPE, f"expected {JSON_CONTENT_TYPE!r}, got {content_type!r}")
    try:
        return EnvelopeHeaders.model_validate(values)
    except ValidationError as error:
        first = error.errors(include_url=False)[0]
        field = str(first["loc"][0]) if first["loc"] else ""
        name = _REQUIRED.get(field) or _OPTIONAL.get(field, field)
        raise InvalidHeader(name, first["msg"]) from error

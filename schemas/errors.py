"""Why a message could not be read as an event.

Every one of these is *poison*: retrying will not help, so a consumer sends the message straight to
its dead-letter topic. The tree::

    EventContractError
    ├── UnparseableEvent          the bytes are not a JSON object
    ├── UnknownEventType          event_type is missing or not in EVENT_TYPES
    ├── UnsupportedSchemaVersion  a major version this code does not read
    ├── SchemaViolation           the JSON does not match the event's model
    └── HeaderError               Kafka headers that do not describe an envelope
        ├── MissingHeader
        └── InvalidHeader
"""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import ValidationError


class EventContractError(Exception):
    """A message that does not honour the event contract (poison: never retried)."""


class UnparseableEvent(EventContractError):
    """The message value is not a JSON object."""


class UnknownEventType(EventContractError):
    """The event type is missing or unknown to this code."""

    def __init__(self, event_type: object) -> None:
        self.event_type = event_type
        super().__init__(f"unknown event type {event_type!r}")


class UnsupportedSchemaVersion(EventContractError):
    """The event's major schema version is not one this code reads."""

    def __init__(self, event_type: str, version: object, supported: Sequence[int]) -> None:
        self.event_type = event_type
        self.version = version
        self.supported = tuple(supported)
        super().__init__(
            f"{event_type} schema_version {version!r} is not supported (supported: "
            f"{', '.join(str(v) for v in self.supported)})"
        )


class SchemaViolation(EventContractError):
    """The event does not match its model; ``errors`` lists every bad field."""

    def __init__(self, event_type: str, errors: Sequence[str]) -> None:
        self.event_type = event_type
        self.errors = tuple(errors)
        super().__init__(f"{event_type} is invalid: {'; '.join(self.errors)}")

    @classmethod
    def from_validation_error(cls, event_type: str, error: ValidationError) -> SchemaViolation:
        """Build from pydantic's error, one entry per invalid field."""
        return cls(event_type, field_errors(error))


class HeaderError(EventContractError):
    """Kafka headers that do not describe a valid envelope."""


class MissingHeader(HeaderError):
    """A required CloudEvents header is absent."""

    def __init__(self, header: str) -> None:
        self.header = header
        super().__init__(f"required header {header!r} is missing")


class InvalidHeader(HeaderError):
    """A header is present but its value is not valid."""

    def __init__(self, header: str, reason: str) -> None:
        self.header = header
        self.reason = reason
        super().__init__(f"header {header!r} is invalid: {reason}")


class SignatureError(EventContractError):
    """An event whose signature is missing, made by a key we do not trust, or wrong (checked by the
    consumers' verifier, ``services.runtime.trust.signing``)."""


def field_errors(error: ValidationError) -> list[str]:
    """One ``path.to.field: message`` entry per invalid field of a pydantic error."""
    return [
        f"{'.'.join(str(p) for p in e['loc']) or '<root>'}: {e['msg']}"
        for e in error.errors(include_url=False)
    ]

"""The events on the bus, and how to read one from a Kafka record.

Events are past tense and carry their payload in ``data``. ``HandoffRequested`` is the one
command-like event: it asks one agency connector to do one step (a "leg") of a dossier's route.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from enum import StrEnum
from typing import Annotated, Any, Final, Literal, Self
from uuid import UUID

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    StringConstraints,
    ValidationError,
    model_validator,
)
from pydantic_core import from_json

from schemas.agencies import Agency, is_known_action
from schemas.envelope import (
    BINARY_OPTIONAL,
    BINARY_REQUIRED,
    CE_ID,
    CE_SCHEMAVERSION,
    CE_SPECVERSION,
    CE_SUBJECT,
    CE_TYPE,
    CONTENT_TYPE,
    JSON_CONTENT_TYPE,
    SPECVERSION,
    Event,
    envelope_from_headers,
    header_text,
)
from schemas.errors import (
    InvalidHeader,
    MissingHeader,
    SchemaViolation,
    UnknownEventType,
    UnparseableEvent,
    UnsupportedSchemaVersion,
    field_errors,
)
from schemas.examples import event_example
from schemas.forms import FormKind, validate_form
from schemas.status import CLOSING_STATUSES, ClockEffect, NationalStatus
from schemas.values import DocumentRef, DossierCode, Person, ProcedureCode, UtcDatetime

_PAYLOAD_CONFIG: Final = ConfigDict(strict=True, extra="forbid", frozen=True)

StepId = Annotated[
    str,
    StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,63}$"),
    Field(description="Id of the route step (leg) in the procedure catalog."),
]
ActionName = Annotated[
    str,
    StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,63}$"),
    Field(description="What the agency is asked to do; one of the agency's actions."),
]
Reason = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=2000)]
ClientId = Annotated[
    str,
    StringConstraints(pattern=r"^[\x21-\x7e]{1,255}$"),
    Field(description="An OAuth client id: a client system, never a person."),
]
JsonObject = dict[str, JsonValue]


class Channel(StrEnum):
    """How the dossier reached the center."""

    COUNTER = "counter"  # trực tiếp
    ONLINE = "online"  # trực tuyến
    POSTAL = "postal"  # bưu chính


class OutcomeKind(StrEnum):
    """How an agency leg ended (or paused)."""

    COMPLETED = "completed"
    REJECTED = "rejected"  # a business refusal: the dossier goes back to the citizen
    WAITING_ON_CITIZEN = "waiting_on_citizen"  # e.g. tax to pay; the clock pauses
    DEAD_LETTERED = "dead_lettered"  # technical failure after every retry; an operator must act


class ClosedResult(StrEnum):
    """How a dossier ended."""

    COMPLETED = "completed"
    RETURNED = "returned"  # returned to the citizen with a reason
    WITHDRAWN = "withdrawn"  # the citizen withdrew it


def _check_form(kind: FormKind, form: Mapping[str, Any]) -> None:
    try:
        validate_form(kind, form)
    except ValidationError as error:
        raise ValueError(
            f"form does not match form kind {kind.value!r}: {'; '.join(field_errors(error))}"
        ) from None


# --- payloads ---------------------------------------------------------------------------------


class DossierReceivedData(BaseModel):
    """A dossier accepted at the desk or online, with its statutory due date."""

    model_config = _PAYLOAD_CONFIG

    dossier_code: DossierCode
    procedure_code: ProcedureCode
    channel: Channel = Field(description="Intake channel.")
    applicant: Person = Field(description="Who submits the dossier.")
    form_kind: FormKind = Field(description="Kind of form in `form`.")
    form: JsonObject = Field(description="The form as filled in; validated against the form kind's model.")
    documents: list[DocumentRef] = Field(default_factory=list, description="Attached documents (references).")
    received_at: UtcDatetime = Field(description="When the center received the dossier.")
    clock_starts_at: UtcDatetime = Field(
        description="When the statutory clock starts (the next working day if received after 15:00)."
    )
    due_at: UtcDatetime = Field(description="Statutory due date printed on the appointment receipt.")
    submitted_by: ClientId | None = Field(
        default=None,
        exclude_if=lambda value: value is None,  # absent, not null, where intake does not authenticate
        description="The client system that submitted the dossier (its OAuth client id), where intake"
        " authenticates submissions; never a person.",
    )

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        _check_form(self.form_kind, self.form)
        if not self.received_at <= self.clock_starts_at <= self.due_at:
            raise ValueError("expected received_at <= clock_starts_at <= due_at")
        return self

    def parsed_form(self) -> BaseModel:
        """The form as its typed model."""
        return validate_form(self.form_kind, self.form)


class HandoffRequestedData(BaseModel):
    """Asks one agency to perform one step of the dossier's route."""

    model_config = _PAYLOAD_CONFIG

    handoff_id: UUID = Field(description="Id of this leg; the idempotency key of every call to the agency.")
    dossier_code: DossierCode
    procedure_code: ProcedureCode
    step_id: StepId
    agency: Agency = Field(description="The agency asked to act.")
    action: ActionName
    form_kind: FormKind
    form: JsonObject = Field(description="The citizen's form, validated against the form kind's model.")
    inputs: dict[str, JsonObject] = Field(
        default_factory=dict, description="Results of earlier legs, keyed by their step id."
    )
    leg_due_at: UtcDatetime = Field(description="Deadline of this agency's share.")
    dossier_due_at: UtcDatetime = Field(description="Deadline of the whole dossier.")

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if not is_known_action(self.agency, self.action):
            raise ValueError(f"agency {self.agency.value!r} has no action {self.action!r}")
        _check_form(self.form_kind, self.form)
        return self

    def parsed_form(self) -> BaseModel:
        """The form as its typed model."""
        return validate_form(self.form_kind, self.form)


class HandoffOutcomeData(BaseModel):
    """What came of one handoff: done, refused, waiting on the citizen, or dead-lettered."""

    model_config = _PAYLOAD_CONFIG

    handoff_id: UUID = Field(description="The handoff this answers.")
    step_id: StepId
    agency: Agency
    action: ActionName
    kind: OutcomeKind
    reason: Reason | None = Field(
        default=None, description="Why; required when rejected or dead-lettered (shown to staff or citizen)."
    )
    result: JsonObject = Field(default_factory=dict, description="What the agency returned, for later legs.")
    agency_reference: str | None = Field(
        default=None, max_length=200, description="The agency's own reference (notice or certificate number)."
    )
    error_class: str | None = Field(
        default=None, max_length=200, description="Failure class of a dead-lettered handoff."
    )

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if not is_known_action(self.agency, self.action):
            raise ValueError(f"agency {self.agency.value!r} has no action {self.action!r}")
        if self.kind in (OutcomeKind.REJECTED, OutcomeKind.DEAD_LETTERED) and self.reason is None:
            raise ValueError(f"reason is required when kind is {self.kind.value}")
        if self.kind is OutcomeKind.DEAD_LETTERED and self.error_class is None:
            raise ValueError("error_class is required when kind is dead_lettered")
        if self.kind is not OutcomeKind.DEAD_LETTERED and self.error_class is not None:
            raise ValueError("error_class is only for dead_lettered outcomes")
        return self


class DossierStatusChangedData(BaseModel):
    """The dossier moved to another national status."""

    model_config = _PAYLOAD_CONFIG

    dossier_code: DossierCode
    procedure_code: ProcedureCode
    status: NationalStatus = Field(description="National status code (1-10).")
    previous_status: NationalStatus | None = Field(description="Status before; null for the first one.")
    holder: Agency | None = Field(
        default=None, description="Agency holding the dossier now; null at the desk."
    )
    reason: Reason | None = None
    clock_paused: bool = Field(description="Whether the statutory clock is paused in this status.")

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.status.clock_effect is ClockEffect.RUNNING and self.clock_paused:
            raise ValueError(f"the clock runs in status {self.status.value}; clock_paused must be false")
        waiting = self.status in (NationalStatus.SUPPLEMENT_REQUESTED, NationalStatus.PAYMENT_REQUIRED)
        if waiting and not self.clock_paused:
            raise ValueError(f"the clock pauses in status {self.status.value}; clock_paused must be true")
        return self


class DossierClosedData(BaseModel):
    """The dossier is closed: completed, returned to the citizen, or withdrawn."""

    model_config = _PAYLOAD_CONFIG

    dossier_code: DossierCode
    procedure_code: ProcedureCode
    final_status: NationalStatus = Field(description="Status the dossier closed in (3, 7, 8, 9 or 10).")
    result: ClosedResult
    partial: bool = Field(
        default=False, description="Completed with some legs outstanding (e.g. the health card lags)."
    )
    reason: Reason | None = Field(default=None, description="Required unless fully completed.")
    closed_at: UtcDatetime
    on_time: bool = Field(description="Whether it closed within the statutory deadline.")

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.final_status not in CLOSING_STATUSES:
            raise ValueError(f"status {self.final_status.value} does not close a dossier")
        if (self.result is ClosedResult.WITHDRAWN) != (self.final_status is NationalStatus.WITHDRAWN):
            raise ValueError("result withdrawn goes with final_status 7 and only with it")
        if self.partial and self.result is not ClosedResult.COMPLETED:
            raise ValueError("only a completed dossier can be partial")
        if self.reason is None and (self.partial or self.result is not ClosedResult.COMPLETED):
            raise ValueError("reason is required when the dossier is returned, withdrawn or partial")
        return self


class OperatorActionKind(StrEnum):
    """What a person did through the supervision page or the CLI."""

    REPLAY = "replay"  # replayed dead letters
    UNMASK = "unmask"  # read a dead letter's personal data (``lienthong dlq show --unmask``)


class OperatorVia(StrEnum):
    """Where the person acted."""

    SUPERVISION_PAGE = "supervision-page"
    CLI = "cli"


ActionReason = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=500),
    Field(description="Why, as the person typed it (free text, 1 to 500 characters)."),
]


DossierUuid = Annotated[
    str, StringConstraints(pattern=r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
]


class OperatorActionData(BaseModel):
    """Who did what, why, and to which dead letters or events: a person's action, for the handoff log."""

    model_config = _PAYLOAD_CONFIG

    action: OperatorActionKind = Field(strict=False, description="What the person did.")  # "replay" too
    subject: Annotated[str, StringConstraints(min_length=1, max_length=255)] = Field(
        description="Who: the identity provider's subject (`sub`) of the person or service account."
    )
    reason: ActionReason
    via: OperatorVia = Field(strict=False, description="Where the person acted.")
    dossier_id: DossierUuid | None = Field(
        default=None, description="The dossier the action concerns (its id); null when it concerns none."
    )
    targets: list[Annotated[str, StringConstraints(min_length=1, max_length=300)]] = Field(
        default_factory=list,
        max_length=1000,
        description="The dead letters (topic/partition/offset) or events concerned.",
    )
    at: UtcDatetime = Field(description="When the person acted.")


# --- examples ---------------------------------------------------------------------------------


def _example(event_type: str, major: int = 1) -> ConfigDict:
    """The event's golden example (``schemas/examples``) as its JSON Schema example."""
    return ConfigDict(json_schema_extra={"examples": [event_example(event_type, major)]})


# --- events -----------------------------------------------------------------------------------


class DossierReceived(Event):
    """Intake accepted a dossier; the router starts its route."""

    model_config = _example("vn.lienthong.dossier.received")

    event_type: Literal["vn.lienthong.dossier.received"] = "vn.lienthong.dossier.received"
    schema_version: Literal[1] = 1
    data: DossierReceivedData


class HandoffRequested(Event):
    """The router asks one agency to perform one step of the dossier's route."""

    model_config = _example("vn.lienthong.handoff.requested")

    event_type: Literal["vn.lienthong.handoff.requested"] = "vn.lienthong.handoff.requested"
    schema_version: Literal[1] = 1
    data: HandoffRequestedData


class HandoffReported(Event):
    """A connector reports what came of a handoff."""

    model_config = _example("vn.lienthong.handoff.outcome")

    event_type: Literal["vn.lienthong.handoff.outcome"] = "vn.lienthong.handoff.outcome"
    schema_version: Literal[1] = 1
    data: HandoffOutcomeData


class DossierStatusChanged(Event):
    """The dossier's national status changed."""

    model_config = _example("vn.lienthong.dossier.status_changed")

    event_type: Literal["vn.lienthong.dossier.status_changed"] = "vn.lienthong.dossier.status_changed"
    schema_version: Literal[1] = 1
    data: DossierStatusChangedData


class DossierClosed(Event):
    """The dossier is closed; nothing more will happen to it."""

    model_config = _example("vn.lienthong.dossier.closed")

    event_type: Literal["vn.lienthong.dossier.closed"] = "vn.lienthong.dossier.closed"
    schema_version: Literal[1] = 1
    data: DossierClosedData


class OperatorActionRecorded(Event):
    """A person replayed dead letters or unmasked one; recorded by the tool they used (the tracker's
    supervision page or the dead-letter tool), and appended to the handoff log by the tracker. The
    envelope's ``dossier_id`` is the action's dossier, or the nil UUID for an action on none."""

    model_config = _example("vn.lienthong.operator.action.recorded")

    event_type: Literal["vn.lienthong.operator.action.recorded"] = "vn.lienthong.operator.action.recorded"
    schema_version: Literal[1] = 1
    data: OperatorActionData


# --- registry and parsing ---------------------------------------------------------------------

ALL_EVENTS: Final[tuple[type[Event], ...]] = (
    DossierReceived,
    HandoffRequested,
    HandoffReported,
    DossierStatusChanged,
    DossierClosed,
    OperatorActionRecorded,
)
"""Every event model this code reads, including older majors kept for a migration window."""

EVENT_VERSIONS: Final[dict[str, dict[int, type[Event]]]] = {}
for _model in ALL_EVENTS:
    EVENT_VERSIONS.setdefault(_model.EVENT_TYPE, {})[_model.SCHEMA_VERSION] = _model

EVENT_TYPES: Final[dict[str, type[Event]]] = {
    event_type: versions[max(versions)] for event_type, versions in EVENT_VERSIONS.items()
}
"""The current model of each event type; new events are written with these."""


def parse_event(raw: bytes | bytearray | str, headers: Mapping[str, bytes | str] | None = None) -> Event:
    """Read an event from a Kafka record: binary content mode (the value is ``data``, the envelope is
    in the ``ce_`` headers, see :mod:`schemas.envelope`), or the form written before (the value is the
    whole event; when headers are given, they must agree with it).

    Raises (all poison, see :mod:`schemas.errors`): :class:`UnparseableEvent`,
    :class:`UnknownEventType`, :class:`UnsupportedSchemaVersion`, :class:`SchemaViolation`,
    :class:`MissingHeader`, :class:`InvalidHeader`.
    """
    try:
        document = from_json(raw)
    except ValueError as error:
        _name_a_bad_envelope(headers)
        raise UnparseableEvent(f"event is not valid JSON: {error}") from None
    if not isinstance(document, dict):
        _name_a_bad_envelope(headers)
        raise UnparseableEvent(f"event must be a JSON object, got {type(document).__name__}")
    if "event_type" in document and "data" in document:  # the whole event: the form written before
        return _parse_whole(raw, document, headers)
    if headers is None:
        raise UnparseableEvent("a record value that is an event's data needs its CloudEvents headers")
    return _parse_binary(raw, headers)


def _name_a_bad_envelope(headers: Mapping[str, bytes | str] | None) -> None:
    """A record whose value cannot be read: its headers' own faults are named first (they say what
    the record claims to be, and are read without the value)."""
    if headers is not None and CE_SPECVERSION in headers:
        envelope_from_headers(headers)
    elif headers is not None:
        raise MissingHeader(CE_SPECVERSION)


def _model_of(event_type: object, version: object) -> type[Event]:
    if not isinstance(event_type, str) or event_type not in EVENT_VERSIONS:
        raise UnknownEventType(event_type)
    versions = EVENT_VERSIONS[event_type]
    model = versions.get(version) if isinstance(version, int) and not isinstance(version, bool) else None
    if model is None:
        raise UnsupportedSchemaVersion(event_type, version, sorted(versions))
    return model


def _parse_whole(raw: bytes | bytearray | str, document: dict[str, Any], headers: Any) -> Event:
    event_type = document.get("event_type")
    model = _model_of(event_type, document.get("schema_version"))
    try:
        event = model.model_validate_json(raw)
    except ValidationError as error:
        raise SchemaViolation.from_validation_error(str(event_type), error) from None
    if headers is not None:
        _check_headers_agree(event, headers)
    return event


def _parse_binary(raw: bytes | bytearray | str, headers: Mapping[str, bytes | str]) -> Event:
    specversion = header_text(headers, CE_SPECVERSION)
    if specversion is None:
        raise MissingHeader(CE_SPECVERSION)
    if specversion != SPECVERSION:
        raise InvalidHeader(CE_SPECVERSION, f"expected {SPECVERSION!r}")
    content_type = header_text(headers, CONTENT_TYPE) or JSON_CONTENT_TYPE
    if content_type.split(";")[0].strip() != JSON_CONTENT_TYPE:
        raise InvalidHeader(CONTENT_TYPE, f"expected {JSON_CONTENT_TYPE!r}, got {content_type!r}")
    envelope: dict[str, object] = {}
    for field, name in BINARY_REQUIRED.items():
        text = header_text(headers, name)
        if text is None:
            raise MissingHeader(name)
        envelope[field] = text
    for field, name in BINARY_OPTIONAL.items():
        text = header_text(headers, name)
        if text is not None:
            envelope[field] = text
    version = str(envelope["schema_version"])
    envelope["schema_version"] = int(version) if version.isdigit() else version
    event_type = envelope["event_type"]
    model = _model_of(event_type, envelope["schema_version"])
    # The data goes in as it came: spliced into the envelope's JSON, not parsed and written again.
    data = raw.encode() if isinstance(raw, str) else bytes(raw)
    whole = json.dumps(envelope, separators=(",", ":")).encode()[:-1] + b',"data":' + data + b"}"
    try:
        return model.model_validate_json(whole)
    except ValidationError as error:
        envelope_from_headers(headers)  # a header that holds a bad value is reported by its name
        raise SchemaViolation.from_validation_error(str(event_type), error) from None


def _check_headers_agree(event: Event, headers: Mapping[str, bytes | str]) -> None:
    expected = {
        CE_ID: str(event.event_id),
        CE_TYPE: event.event_type,
        CE_SUBJECT: str(event.dossier_id),
        CE_SCHEMAVERSION: str(event.schema_version),
    }
    for name, value in expected.items():
        given = headers.get(name)
        if given is None:
            continue
        text = given if isinstance(given, str) else given.decode(errors="replace")
        if text != value:
            raise InvalidHeader(name, f"{text!r} disagrees with the event body ({value!r})")

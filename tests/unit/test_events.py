"""Events: examples, JSON and header round trips, and the poison errors a consumer classifies."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any
from uuid import uuid4

import pytest
from pydantic import ValidationError

from schemas import (
    EVENT_TYPES,
    FORMS,
    DossierReceived,
    Event,
    HandoffOutcomeData,
    HandoffReported,
    HandoffRequested,
    HandoffRequestedData,
    InvalidHeader,
    MissingHeader,
    OutcomeKind,
    SchemaViolation,
    UnknownEventType,
    UnknownFormKind,
    UnparseableEvent,
    UnsupportedSchemaVersion,
    envelope_from_headers,
    event_headers,
    event_key,
    event_value,
    kafka_headers,
    parse_event,
    validate_form,
)
from schemas.agencies import Agency
from schemas.examples import event_example, form_example

ALL = sorted(EVENT_TYPES.items())


def example(model: type[Event]) -> dict[str, Any]:
    return event_example(model.EVENT_TYPE, model.SCHEMA_VERSION)


def raw(document: dict[str, Any]) -> bytes:
    return json.dumps(document, ensure_ascii=False).encode()


@pytest.mark.parametrize(("event_type", "model"), ALL)
def test_every_example_validates_and_round_trips(event_type: str, model: type[Event]) -> None:
    for document in model.model_json_schema()["examples"]:
        event = parse_event(raw(document))
        assert type(event) is model
        assert event.event_type == event_type == model.EVENT_TYPE
        assert parse_event(event_value(event), event_headers(event)) == event  # binary content mode
        assert parse_event(event.model_dump_json()) == event  # the whole event, as written before
        assert model.model_validate_json(event.model_dump_json()) == event


@pytest.mark.parametrize(("event_type", "model"), ALL)
def test_headers_mirror_the_envelope(event_type: str, model: type[Event]) -> None:
    event = parse_event(raw(example(model)))
    headers = event_headers(event)
    assert headers["ce_specversion"] == "1.0"
    assert headers["ce_type"] == event_type
    assert headers["ce_subject"] == str(event.dossier_id)
    assert headers["content-type"] == "application/json"
    assert headers["ce_time"].endswith("Z")
    back = envelope_from_headers(dict(kafka_headers(event)))  # bytes values, as aiokafka gives them
    assert back.event_id == event.event_id
    assert back.occurred_at == event.occurred_at
    assert back.schema_version == event.schema_version
    assert back.correlation_id == event.correlation_id
    assert back.causation_id == event.causation_id
    assert back.traceparent == event.traceparent
    assert event_key(event) == str(event.dossier_id).encode()


def test_missing_required_header_is_named() -> None:
    event = parse_event(raw(example(DossierReceived)))
    headers = event_headers(event)
    del headers["ce_correlationid"]
    with pytest.raises(MissingHeader, match="ce_correlationid") as caught:
        envelope_from_headers(headers)
    assert caught.value.header == "ce_correlationid"


@pytest.mark.parametrize(
    ("header", "value"),
    [
        ("ce_specversion", "0.3"),
        ("ce_time", "yesterday"),
        ("ce_id", "not-a-uuid"),
        ("content-type", "text/xml"),
    ],
)
def test_invalid_header_is_named(header: str, value: str) -> None:
    headers = event_headers(parse_event(raw(example(DossierReceived))))
    headers[header] = value
    with pytest.raises(InvalidHeader) as caught:
        envelope_from_headers(headers)
    assert caught.value.header == header


def test_headers_that_disagree_with_the_body_are_refused() -> None:
    event = parse_event(raw(example(DossierReceived)))
    headers = event_headers(event)
    headers["ce_id"] = str(uuid4())
    with pytest.raises(InvalidHeader, match="ce_id"):  # the whole event as the value: the form before
        parse_event(event.model_dump_json(), headers)


@pytest.mark.parametrize("value", [b"{not json", b"", b"\xff\xfe", b"[1, 2]", b'"text"'])
def test_unparseable_event(value: bytes) -> None:
    with pytest.raises(UnparseableEvent):
        parse_event(value)


@pytest.mark.parametrize("event_type", ["vn.lienthong.dossier.teleported", None, 42])
def test_unknown_event_type(event_type: Any) -> None:
    document = example(DossierReceived)
    document["event_type"] = event_type
    with pytest.raises(UnknownEventType):
        parse_event(raw(document))


@pytest.mark.parametrize("version", [2, 0, "1", True, None])
def test_unsupported_schema_version(version: Any) -> None:
    document = example(DossierReceived)
    document["schema_version"] = version
    with pytest.raises(UnsupportedSchemaVersion) as caught:
        parse_event(raw(document))
    assert caught.value.supported == (1,)


def test_schema_violation_names_every_bad_field() -> None:
    document = example(DossierReceived)
    document["occurred_at"] = "2024-09-16T02:15:00"  # naive
    document["data"]["applicant"]["citizen_id"] = "003085012345"
    document["data"]["documents"][0]["size_bytes"] = 0
    with pytest.raises(SchemaViolation) as caught:
        parse_event(raw(document))
    fields = " ".join(caught.value.errors)
    assert "occurred_at" in fields
    assert "data.applicant.citizen_id" in fields
    assert "data.documents.0.size_bytes" in fields


def test_form_is_validated_against_its_kind() -> None:
    document = example(DossierReceived)
    document["data"]["form"]["declared_value_vnd"] = 12.5
    del document["data"]["form"]["transferee"]
    with pytest.raises(SchemaViolation) as caught:
        parse_event(raw(document))
    message = str(caught.value)
    assert "land_transfer" in message
    assert "declared_value_vnd" in message
    assert "transferee" in message


def test_form_of_another_kind_is_refused() -> None:
    document = example(DossierReceived)
    document["data"]["form_kind"] = "marriage"
    with pytest.raises(SchemaViolation, match="husband"):
        parse_event(raw(document))


def test_receipt_times_must_be_in_order() -> None:
    document = example(DossierReceived)
    document["data"]["due_at"] = "2024-09-01T00:00:00Z"
    with pytest.raises(SchemaViolation, match="due_at"):
        parse_event(raw(document))


def test_handoff_action_must_belong_to_the_agency() -> None:
    document = example(HandoffRequested)
    document["data"]["agency"] = "tax"  # check_transfer is a land action
    with pytest.raises(SchemaViolation, match="no action 'check_transfer'"):
        parse_event(raw(document))


@pytest.mark.parametrize("kind", [OutcomeKind.REJECTED, OutcomeKind.DEAD_LETTERED])
def test_rejection_and_dead_letter_need_a_reason(kind: OutcomeKind) -> None:
    with pytest.raises(ValidationError, match="reason is required"):
        HandoffOutcomeData(
            handoff_id=uuid4(),
            step_id="check_dossier",
            agency=Agency.LAND,
            action="check_transfer",
            kind=kind,
            error_class="TimeoutError" if kind is OutcomeKind.DEAD_LETTERED else None,
        )


def test_dead_letter_names_its_error_class() -> None:
    common: dict[str, Any] = {
        "handoff_id": uuid4(),
        "step_id": "check_dossier",
        "agency": Agency.LAND,
        "action": "check_transfer",
        "reason": "agency down",
    }
    with pytest.raises(ValidationError, match="error_class is required"):
        HandoffOutcomeData(kind=OutcomeKind.DEAD_LETTERED, **common)
    with pytest.raises(ValidationError, match="only for dead_lettered"):
        HandoffOutcomeData(kind=OutcomeKind.REJECTED, error_class="X", **common)


def test_status_and_closed_consistency() -> None:
    status = example(EVENT_TYPES["vn.lienthong.dossier.status_changed"])
    status["data"]["clock_paused"] = False  # status 6 waits on the citizen
    with pytest.raises(SchemaViolation, match="clock_paused must be true"):
        parse_event(raw(status))
    closed = example(EVENT_TYPES["vn.lienthong.dossier.closed"])
    closed["data"]["final_status"] = 4
    with pytest.raises(SchemaViolation, match="does not close"):
        parse_event(raw(closed))
    closed = example(EVENT_TYPES["vn.lienthong.dossier.closed"])
    closed["data"]["result"] = "returned"
    with pytest.raises(SchemaViolation, match="reason is required"):
        parse_event(raw(closed))


def test_events_are_immutable_and_strict() -> None:
    event = parse_event(raw(example(DossierReceived)))
    with pytest.raises(ValidationError):
        event.producer = "someone-else"  # type: ignore[misc]
    document = example(DossierReceived)
    document["priority"] = "high"
    with pytest.raises(SchemaViolation, match="priority"):
        parse_event(raw(document))


def test_traceparent_is_validated() -> None:
    document = example(DossierReceived)
    document["traceparent"] = "00-00000000000000000000000000000000-00f067aa0ba902b7-01"
    with pytest.raises(SchemaViolation, match="traceparent"):
        parse_event(raw(document))


def test_create_continues_the_journey_of_its_cause() -> None:
    received = parse_event(raw(example(DossierReceived)))
    request = example(HandoffRequested)["data"]
    handoff = HandoffRequested.create(
        data=HandoffRequestedData.model_validate_json(json.dumps(request)),
        producer="router",
        caused_by=received,
    )
    assert handoff.dossier_id == received.dossier_id
    assert handoff.correlation_id == received.correlation_id
    assert handoff.causation_id == received.event_id
    assert handoff.traceparent == received.traceparent
    assert handoff.event_id != received.event_id
    assert handoff.occurred_at.tzinfo is not None
    assert isinstance(handoff.occurred_at, datetime)


def test_create_without_cause_needs_a_dossier() -> None:
    outcome = HandoffReported.model_validate_json(raw(example(HandoffReported)))
    with pytest.raises(ValueError, match="dossier_id"):
        HandoffReported.create(data=outcome.data, producer="connector.land")


@pytest.mark.parametrize(("kind", "model"), sorted(FORMS.items()))
def test_every_form_example_validates(kind: str, model: type[Any]) -> None:
    for document in model.model_json_schema()["examples"]:
        assert isinstance(validate_form(kind, document), model)


def test_unknown_form_kind_is_named() -> None:
    with pytest.raises(UnknownFormKind, match="'passport'"):
        validate_form("passport", {})


def test_birth_form_refuses_a_mother_born_after_the_child() -> None:
    form = form_example("birth")
    form["child_date_of_birth"] = "1980-01-01"
    with pytest.raises(ValidationError, match="mother must be born before"):
        validate_form("birth", form)


def test_public_api_is_exported() -> None:
    import schemas

    missing = [name for name in schemas.__all__ if not hasattr(schemas, name)]
    assert missing == []
    assert len(set(schemas.__all__)) == len(schemas.__all__)

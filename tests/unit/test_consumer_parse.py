"""What a consumer accepts as an event, and which error it names for a record it refuses: records in
CloudEvents binary content mode (as our producers write them now) and in the whole-event form written
before; headers are named before the body."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any, cast
from uuid import uuid4

import pytest
from aiokafka.structs import ConsumerRecord

from schemas.errors import InvalidHeader, MissingHeader, SchemaViolation, UnparseableEvent
from schemas.events import DossierReceived, parse_event
from services.runtime.consume.consumer import EventConsumer
from services.runtime.consume.records import ReceivedRecord, event_record
from tests.factories import dossier_received

TOPIC = "t.dossier.received"


async def refuse_to_handle(event: object, ctx: object) -> Any:
    raise AssertionError("these tests only parse")


@pytest.fixture
def consumer() -> EventConsumer:
    return EventConsumer(
        store=cast(Any, None),
        relay=cast(Any, None),
        group_id="t.router",
        handlers={DossierReceived: refuse_to_handle},
        verifier=None,
    )


def received(value: bytes, headers: dict[str, str], key: bytes) -> ReceivedRecord:
    return ReceivedRecord(TOPIC, 0, 0, datetime.now(UTC), key, value, headers, "t.router")


@pytest.fixture
def written() -> tuple[bytes, dict[str, str], bytes]:
    record = event_record(dossier_received("9.900005"), TOPIC)
    return record.value, dict(record.headers), record.key


def test_a_record_as_our_producers_write_it_is_accepted(
    consumer: EventConsumer, written: tuple[bytes, dict[str, str], bytes]
) -> None:
    value, headers, key = written
    event = consumer.parse(received(value, headers, key))
    assert isinstance(event, DossierReceived) and str(event.event_id) == headers["ce_id"]


def test_valid_headers_written_another_way_are_accepted(
    consumer: EventConsumer, written: tuple[bytes, dict[str, str], bytes]
) -> None:
    value, headers, key = written
    headers["ce_time"] = headers["ce_time"].replace("Z", "+00:00")
    headers["content-type"] = "application/json; charset=utf-8"
    assert isinstance(consumer.parse(received(value, headers, key)), DossierReceived)


def whole_event(written: tuple[bytes, dict[str, str], bytes]) -> bytes:
    """The record's event as records were written before binary content mode: the whole model."""
    value, headers, _ = written
    return parse_event(value, headers).model_dump_json().encode()


def test_a_record_in_the_form_written_before_is_accepted(
    consumer: EventConsumer, written: tuple[bytes, dict[str, str], bytes]
) -> None:
    _, headers, key = written
    event = consumer.parse(received(whole_event(written), headers, key))
    assert isinstance(event, DossierReceived) and str(event.event_id) == headers["ce_id"]


def test_a_header_that_disagrees_with_the_body_is_named(
    consumer: EventConsumer, written: tuple[bytes, dict[str, str], bytes]
) -> None:
    _, headers, key = written
    value = whole_event(written)
    headers["ce_id"] = str(uuid4())
    with pytest.raises(InvalidHeader) as caught:
        consumer.parse(received(value, headers, key))
    assert caught.value.header == "ce_id"


def test_a_bad_envelope_is_named_before_a_bad_body(
    consumer: EventConsumer, written: tuple[bytes, dict[str, str], bytes]
) -> None:
    _, headers, key = written
    del headers["ce_source"]
    with pytest.raises(MissingHeader) as caught:
        consumer.parse(received(b"{not json", headers, key))
    assert caught.value.header == "ce_source"


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (b"{not json", UnparseableEvent),
        (b'{"event_type": "vn.lienthong.dossier.received", "schema_version": 1}', SchemaViolation),
    ],
)
def test_a_bad_body_under_good_headers_is_named(
    consumer: EventConsumer,
    written: tuple[bytes, dict[str, str], bytes],
    body: bytes,
    error: type[Exception],
) -> None:
    _, headers, key = written
    with pytest.raises(error):
        consumer.parse(received(body, headers, key))


def test_a_body_changed_under_its_headers_is_refused(
    consumer: EventConsumer, written: tuple[bytes, dict[str, str], bytes]
) -> None:
    _, headers, key = written
    document = json.loads(whole_event(written))
    document["dossier_id"] = str(uuid4())
    with pytest.raises(InvalidHeader) as caught:
        consumer.parse(received(json.dumps(document).encode(), headers, key))
    assert caught.value.header == "ce_subject"


def test_a_record_with_a_null_or_undecodable_header_is_refused_not_fatal(
    consumer: EventConsumer, written: tuple[bytes, dict[str, str], bytes]
) -> None:
    value, headers, key = written
    raw_headers: list[tuple[str, bytes | None]] = [(k, v.encode()) for k, v in headers.items()]
    raw_headers[1] = ("ce_id", None)  # Kafka allows a header without a value
    raw_headers.append(("x-note", b"\xff\xfe"))
    raw = ConsumerRecord(
        TOPIC, 0, 7, 1_700_000_000_000, 0, key, value, None, len(key), len(value), raw_headers
    )
    record = ReceivedRecord.from_consumer_record(raw, "t.router")  # type: ignore[arg-type]
    assert record.headers["ce_id"] == "" and record.headers["x-note"] == "\ufffd\ufffd"
    with pytest.raises(InvalidHeader):  # a contract error: the consumer dead-letters it
        consumer.parse(record)

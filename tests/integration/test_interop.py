"""Conventions that existing tools read, on the real broker: a dead letter decoded as Spring Kafka decodes
its ``kafka_dlt-*`` headers, and our events read and written by the CloudEvents Python SDK."""

from __future__ import annotations

import asyncio
import struct
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from cloudevents.core.bindings.kafka import KafkaMessage, from_binary_event, to_binary_event
from cloudevents.core.v1.event import CloudEvent

from schemas.envelope import Event
from schemas.events import DossierReceived
from schemas.topics import DOSSIER_RECEIVED, all_topics, dlq_topic
from services.runtime.consume.consumer import Context, Effect, EventConsumer
from services.runtime.consume.records import event_record
from services.runtime.failures import dead_letter_records
from services.runtime.failures.dead_letter_replay import read_dead_letters
from services.runtime.observe.metrics import Service
from services.runtime.shell.kafka import make_broker, outbox_relay
from services.runtime.shell.settings import ServiceSettings
from services.runtime.shell.topics_admin import ensure_topics
from services.runtime.storage.store import SqlProcessingStore
from tests.factories import dossier_received
from tests.sandboxes.helpers import eventually

pytestmark = pytest.mark.kafka


async def read(bootstrap: str, topic: str, count: int) -> list[Any]:
    reader = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest")
    await reader.start()
    found: list[Any] = []
    try:
        async with asyncio.timeout(60):
            while len(found) < count:
                for batch in (await reader.getmany(timeout_ms=500)).values():
                    found += batch
    finally:
        await reader.stop()
    return found


class Router:
    """An in-process consumer of ``dossier.received`` with its relay, as the router runs them."""

    def __init__(self, bootstrap: str, prefix: str, tmp_path: Path) -> None:
        self.topic = prefix + DOSSIER_RECEIVED
        self.handled: list[Event] = []
        settings = ServiceSettings(bootstrap_servers=bootstrap, topic_prefix=prefix)
        self.store = SqlProcessingStore(tmp_path / "router.db")
        self.broker = make_broker(settings, client_id="interop")
        self.relay = outbox_relay(
            self.store.outbox, settings, client_id="interop", broker=self.broker, service=Service.ROUTER
        )
        consumer = EventConsumer(
            store=self.store,
            relay=self.relay,
            group_id=prefix + "router",
            handlers={DossierReceived: lambda event, ctx: self.handle(event, ctx)},
            verifier=None,
        )
        consumer.subscribe(self.broker, [self.topic], description="interop")

    async def handle(self, event: Event, ctx: Context[Any]) -> Effect:
        self.handled.append(event)
        return Effect()


@pytest.fixture
async def router(kafka_bootstrap: str, topic_prefix: str, tmp_path: Path) -> AsyncIterator[Router]:
    await ensure_topics(kafka_bootstrap, all_topics(topic_prefix))
    running = Router(kafka_bootstrap, topic_prefix, tmp_path)
    relay = asyncio.create_task(running.relay.run())
    async with running.broker:
        await running.broker.start()
        yield running
    relay.cancel()
    await asyncio.gather(relay, return_exceptions=True)
    running.store.close()


async def test_a_dead_letter_reads_as_spring_kafka_reads_its_headers(
    kafka_bootstrap: str, router: Router
) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    await producer.start()
    try:
        sent = await producer.send_and_wait(router.topic, b"{not json", key=b"d-1", partition=2)
    finally:
        await producer.stop()
    (letter,) = await read(kafka_bootstrap, dlq_topic(router.topic), 1)
    headers = dict(letter.headers)
    # What Spring's DeadLetterPublishingRecoverer writes and its readers decode: ByteBuffer.getInt and
    # getLong on big-endian bytes, UTF-8 text for the rest.
    assert headers["kafka_dlt-original-topic"].decode() == router.topic
    assert struct.unpack(">i", headers["kafka_dlt-original-partition"]) == (2,)
    assert struct.unpack(">q", headers["kafka_dlt-original-offset"]) == (sent.offset,)
    assert struct.unpack(">q", headers["kafka_dlt-original-timestamp"]) == (sent.timestamp,)
    assert headers["kafka_dlt-original-timestamp-type"] == b"CreateTime"
    assert headers["kafka_dlt-original-consumer-group"].decode().endswith("router")
    assert headers["kafka_dlt-exception-fqcn"] == b"schemas.errors.MissingHeader"  # no envelope at all
    assert headers["kafka_dlt-exception-cause-fqcn"]
    assert b"ce_specversion" in headers["kafka_dlt-exception-message"]
    assert headers["kafka_dlt-exception-stacktrace"].startswith(b"schemas.errors.MissingHeader:")
    assert letter.value == b"{not json"
    # Our own reader decodes the same numbers (and the decimal text of dead letters written before).
    (ours,) = await read_dead_letters(kafka_bootstrap, router.topic.removesuffix(DOSSIER_RECEIVED))
    assert (ours.original_partition, ours.original_offset) == (2, sent.offset)
    assert ours.context()["kafka_dlt-original-offset"] == str(sent.offset)
    legacy = [(dead_letter_records.ORIGINAL_OFFSET, b"41")]
    assert dead_letter_records.original_number(legacy, dead_letter_records.ORIGINAL_OFFSET) == 41


async def test_the_cloudevents_sdk_reads_the_events_we_write(kafka_bootstrap: str, topic_prefix: str) -> None:
    event = dossier_received("9.900005")
    record = event_record(event, topic_prefix + DOSSIER_RECEIVED)
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    await producer.start()
    try:
        await producer.send_and_wait(
            record.topic, record.value, key=record.key, headers=record.kafka_headers()
        )
    finally:
        await producer.stop()
    (written,) = await read(kafka_bootstrap, record.topic, 1)
    read_back = from_binary_event(
        KafkaMessage(headers=dict(written.headers), key=written.key, value=written.value)
    )
    attributes = read_back.get_attributes()
    assert read_back.get_id() == str(event.event_id)
    assert read_back.get_type() == "vn.lienthong.dossier.received"
    assert read_back.get_source() == "intake"
    assert read_back.get_subject() == str(event.dossier_id)
    assert read_back.get_time() == event.occurred_at
    assert read_back.get_datacontenttype() == "application/json"
    assert attributes["schemaversion"] == "1" and attributes["correlationid"] == str(event.correlation_id)
    assert read_back.get_data() == event.data.model_dump(mode="json")


async def test_an_event_written_by_the_cloudevents_sdk_is_handled(
    kafka_bootstrap: str, router: Router
) -> None:
    ours = dossier_received("9.900005")
    sdk_event = CloudEvent(
        attributes={
            "id": str(ours.event_id),
            "source": "intake",
            "type": "vn.lienthong.dossier.received",
            "subject": str(ours.dossier_id),
            "time": datetime(2026, 11, 23, 2, 0, tzinfo=UTC),
            "datacontenttype": "application/json",
            "schemaversion": "1",
            "correlationid": str(ours.correlation_id),
        },
        data=ours.data.model_dump(mode="json"),
    )
    message = to_binary_event(sdk_event, key_mapper=lambda _: str(ours.dossier_id).encode())
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    await producer.start()
    try:
        headers = list(message.headers.items())
        await producer.send_and_wait(router.topic, message.value, key=message.key, headers=headers)
    finally:
        await producer.stop()

    async def handled() -> bool:
        return bool(router.handled)

    await eventually(handled, within_s=60)
    (event,) = router.handled
    assert isinstance(event, DossierReceived)
    assert (event.event_id, event.dossier_id, event.data) == (ours.event_id, ours.dossier_id, ours.data)
    assert event.occurred_at == datetime(2026, 11, 23, 2, 0, tzinfo=UTC)

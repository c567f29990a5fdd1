"""The outbox relay's sender on the real broker: straight through the producer FastStream connected."""

from __future__ import annotations

import asyncio

from aiokafka import AIOKafkaConsumer
from faststream.kafka import TestKafkaBroker

from services.runtime.kafka import connected_producer, kafka_sender, make_broker
from services.runtime.outbox import OutgoingRecord
from services.runtime.settings import KafkaSettings


async def test_the_relay_sends_through_faststreams_producer_with_key_value_and_headers(
    kafka_bootstrap: str, topic_prefix: str
) -> None:
    topic = f"{topic_prefix}outbox.sent"
    broker = make_broker(KafkaSettings(bootstrap_servers=kafka_bootstrap), client_id="outbox-sender")
    reader = AIOKafkaConsumer(topic, bootstrap_servers=kafka_bootstrap, auto_offset_reset="earliest")
    async with broker:
        await broker.start()
        # None here would mean a FastStream upgrade moved its producer: the relay would still publish,
        # through broker.publish, at several times the CPU per record
        assert connected_producer(broker) is not None
        send = kafka_sender(broker)
        ack = await send(OutgoingRecord(topic, b"d-1", b'{"n": 1}', {"ce_id": "e-1", "ce_type": "x.y"}))
        await asyncio.wait_for(ack, timeout=30)
        await reader.start()
        try:
            record = await asyncio.wait_for(reader.getone(), timeout=30)
        finally:
            await reader.stop()
    assert (record.key, record.value) == (b"d-1", b'{"n": 1}')
    assert dict(record.headers) == {"ce_id": b"e-1", "ce_type": b"x.y"}


async def test_under_faststreams_test_broker_the_relay_publishes_through_the_broker() -> None:
    broker = make_broker(KafkaSettings(bootstrap_servers="localhost:9"), client_id="outbox-sender")
    received: list[bytes] = []

    @broker.subscriber("outbox.sent")
    async def collect(body: bytes) -> None:
        received.append(body)

    async with TestKafkaBroker(broker):
        assert connected_producer(broker) is None
        await kafka_sender(broker)(OutgoingRecord("outbox.sent", b"d-1", b"payload", {}))
    assert received == [b"payload"]

"""The outbox relay on the real broker: its own producer, re-created after a fatal error; a batch whose
acknowledgements never come is bounded; a row Kafka will never take is parked, not in the way."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.errors import OutOfOrderSequenceNumber
from faststream.kafka import TestKafkaBroker

from services.runtime.shell.kafka import RelaySender, make_broker
from services.runtime.shell.settings import KafkaSettings
from services.runtime.storage.outbox import Outbox, OutboxRelay, OutgoingRecord
from services.runtime.storage.store import SqlProcessingStore
from tests.sandboxes.helpers import eventually


async def read_all(bootstrap: str, topic: str, count: int) -> list[Any]:
    reader = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest")
    await reader.start()
    records: list[Any] = []
    try:
        async with asyncio.timeout(60):
            while len(records) < count:
                for batch in (await reader.getmany(timeout_ms=500)).values():
                    records += batch
    finally:
        await reader.stop()
    return records


@pytest.fixture
async def sender(kafka_bootstrap: str) -> AsyncIterator[RelaySender]:
    relay_sender = RelaySender(KafkaSettings(bootstrap_servers=kafka_bootstrap), "outbox-test")
    yield relay_sender
    await relay_sender.close()


def outbox(tmp_path: Path) -> Outbox:
    return SqlProcessingStore(tmp_path / "outbox.db").outbox


def committed(box: Outbox, records: list[OutgoingRecord]) -> None:
    box.conn.execute("BEGIN")
    box.add(records)
    box.conn.execute("COMMIT")


async def running(relay: OutboxRelay) -> asyncio.Task[None]:
    return asyncio.create_task(relay.run())


async def stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def test_the_relay_sends_key_value_text_and_binary_headers(
    kafka_bootstrap: str, topic_prefix: str, sender: RelaySender
) -> None:
    topic = f"{topic_prefix}outbox.sent"
    record = OutgoingRecord(
        topic, b"d-1", b'{"n": 1}', {"ce_id": "e-1", "ce_type": "x.y"}, binary_headers={"raw": b"\xff\x00"}
    )
    ack = await sender(record)
    await asyncio.wait_for(ack, timeout=30)
    (received,) = await read_all(kafka_bootstrap, topic, 1)
    assert (received.key, received.value) == (b"d-1", b'{"n": 1}')
    assert dict(received.headers) == {"ce_id": b"e-1", "ce_type": b"x.y", "raw": b"\xff\x00"}


async def test_under_faststreams_test_broker_the_relay_publishes_through_the_broker() -> None:
    broker = make_broker(KafkaSettings(bootstrap_servers="localhost:9"), client_id="outbox-sender")
    received: list[bytes] = []

    @broker.subscriber("outbox.sent")
    async def collect(body: bytes) -> None:
        received.append(body)

    async with TestKafkaBroker(broker):
        send = RelaySender(KafkaSettings(bootstrap_servers="localhost:9"), "outbox-sender", broker)
        await send(OutgoingRecord("outbox.sent", b"d-1", b"payload", {}))
    assert received == [b"payload"]


async def test_a_producer_dead_after_a_fatal_error_is_replaced_and_the_outbox_drains(
    kafka_bootstrap: str, topic_prefix: str, tmp_path: Path, sender: RelaySender
) -> None:
    """aiokafka's producer fails every later send after an OutOfOrderSequenceNumber; retrying it for
    ever (the relay before this test) never drains the outbox."""
    topic = f"{topic_prefix}outbox.fatal"
    await asyncio.wait_for(await sender(OutgoingRecord(topic, b"k", b"warm-up")), timeout=30)
    dead = sender._producer
    assert dead is not None

    async def fails_for_ever(*args: Any, **kwargs: Any) -> Any:
        raise OutOfOrderSequenceNumber()

    dead.send = fails_for_ever  # type: ignore[method-assign]
    box = outbox(tmp_path)
    committed(box, [OutgoingRecord(topic, f"k{i}".encode(), f"v{i}".encode()) for i in range(20)])
    task = await running(OutboxRelay(box, sender, ack_timeout_s=5))
    try:

        async def drained() -> bool:
            return box.is_empty()

        await eventually(drained, within_s=60)
    finally:
        await stop(task)
    assert sender.producers_started == 2, "the dead producer was replaced by a new one"
    values = {r.value for r in await read_all(kafka_bootstrap, topic, 21)}
    assert values >= {f"v{i}".encode() for i in range(20)}


async def test_acknowledgements_that_never_come_are_bounded_and_sent_again(
    kafka_bootstrap: str, topic_prefix: str, tmp_path: Path, sender: RelaySender
) -> None:
    topic = f"{topic_prefix}outbox.silent"
    await asyncio.wait_for(await sender(OutgoingRecord(topic, b"k", b"warm-up")), timeout=30)
    silent = sender._producer
    assert silent is not None

    async def never_acknowledged(*args: Any, **kwargs: Any) -> asyncio.Future[Any]:
        return asyncio.get_running_loop().create_future()

    silent.send = never_acknowledged  # type: ignore[method-assign]
    box = outbox(tmp_path)
    committed(box, [OutgoingRecord(topic, b"k1", b"v1"), OutgoingRecord(topic, b"k2", b"v2")])
    task = await running(OutboxRelay(box, sender, ack_timeout_s=1))
    try:

        async def drained() -> bool:
            return box.is_empty()

        await eventually(drained, within_s=60)
    finally:
        await stop(task)
    values = {r.value for r in await read_all(kafka_bootstrap, topic, 3)}
    assert {b"v1", b"v2"} <= values


async def test_a_row_kafka_will_never_take_is_parked_and_the_rows_behind_it_go_on(
    kafka_bootstrap: str, topic_prefix: str, tmp_path: Path, sender: RelaySender
) -> None:
    topic = f"{topic_prefix}outbox.oversized"
    box = outbox(tmp_path)
    too_large = OutgoingRecord(topic, b"big", b"x" * 2_000_000)  # above the producer's 1 MiB request limit
    committed(
        box, [too_large, OutgoingRecord(topic, b"k1", b"after-1"), OutgoingRecord(topic, b"k2", b"after-2")]
    )
    task = await running(OutboxRelay(box, sender))
    try:

        async def drained() -> bool:
            return box.is_empty()

        await eventually(drained, within_s=60)
    finally:
        await stop(task)
    assert [r.value for r in await read_all(kafka_bootstrap, topic, 2)] == [b"after-1", b"after-2"]
    ((_, parked_topic, error),) = box.parked()
    assert parked_topic == topic and "MessageSizeTooLarge" in error

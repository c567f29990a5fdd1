"""A consumer whose every poll fails (its group coordination died, as seen when the broker was
SIGKILLed) is started again, on the real broker, and the records behind it are handled. Before, FastStream
retried the dead consumer every 5 s for ever and its partitions stood still."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from schemas.envelope import Event
from schemas.events import DossierReceived
from services.runtime.consume import consumer as consumer_module
from services.runtime.consume.consumer import Context, Effect, EventConsumer
from services.runtime.consume.records import event_record
from services.runtime.shell.kafka import make_broker
from services.runtime.shell.settings import KafkaSettings
from services.runtime.storage.outbox import OutboxRelay, OutgoingRecord
from services.runtime.storage.store import SqlProcessingStore
from tests.factories import dossier_received
from tests.sandboxes.helpers import eventually


async def test_a_consumer_failing_every_poll_is_started_again(
    kafka_bootstrap: str, topic_prefix: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(consumer_module, "WATCH_S", 0.5)
    topic = f"{topic_prefix}dossier.received"
    store = SqlProcessingStore(tmp_path / "router.db")

    async def nothing(record: OutgoingRecord) -> Any:
        raise AssertionError("nothing is emitted")

    handled: list[Event] = []

    async def handle(event: Event, ctx: Context[Any]) -> Effect:
        handled.append(event)
        return Effect()

    consumer = EventConsumer(
        store=store,
        relay=OutboxRelay(store.outbox, nothing),
        group_id=f"{topic_prefix}router",
        handlers={DossierReceived: lambda event, ctx: handle(event, ctx)},
        verifier=None,
    )
    broker = make_broker(KafkaSettings(bootstrap_servers=kafka_bootstrap), client_id="broken-consumer")
    consumer.subscribe(broker, [topic], description="broken consumer")
    (subscriber,) = consumer._subscribers
    async with broker:
        await broker.start()

        async def joined() -> bool:
            return bool(subscriber.consumer and subscriber.consumer.assignment())

        await eventually(joined, within_s=60)
        broken = subscriber.consumer

        async def coordination_died(*args: Any, **kwargs: Any) -> Any:
            raise KafkaError("Unexpected error during coordination")

        broken.getmany = coordination_died
        watchdog = asyncio.create_task(consumer.keep_polling())
        try:
            record = event_record(dossier_received("9.900005"), topic)
            producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
            await producer.start()
            try:
                await producer.send_and_wait(
                    topic, record.value, key=record.key, headers=record.kafka_headers()
                )
            finally:
                await producer.stop()

            async def handled_once() -> bool:
                return len(handled) == 1

            await eventually(handled_once, within_s=90)
        finally:
            watchdog.cancel()
            await asyncio.gather(watchdog, return_exceptions=True)
    store.close()
    assert consumer.restarts == 1 and subscriber.consumer is not broken

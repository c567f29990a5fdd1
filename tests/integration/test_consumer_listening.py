"""The consumer's subscriber on the real broker: FastStream polls through the runtime's listening poll
(no pause after an empty poll), and a record written while the consumer is idle is handled."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaProducer

from schemas.envelope import Event
from schemas.events import DossierReceived
from services.runtime.consume.consumer import Context, Effect, EventConsumer
from services.runtime.consume.records import event_record
from services.runtime.shell.kafka import make_broker
from services.runtime.shell.settings import KafkaSettings
from services.runtime.storage.outbox import OutboxRelay
from services.runtime.storage.store import SqlProcessingStore
from tests.factories import dossier_received
from tests.sandboxes.helpers import eventually


async def test_faststream_polls_through_the_listening_poll_and_an_idle_consumer_gets_a_record(
    kafka_bootstrap: str, topic_prefix: str, tmp_path: Path
) -> None:
    topic = f"{topic_prefix}listening.dossiers"
    store = SqlProcessingStore(tmp_path / "listening.db")

    async def unused(record: Any) -> Any:
        raise AssertionError("nothing is emitted")

    consumer = EventConsumer(
        store=store,
        relay=OutboxRelay(store.outbox, unused),
        group_id=f"{topic_prefix}router",
        handlers={DossierReceived: lambda event, ctx: handle(event, ctx)},
        verifier=None,
    )
    handled: list[Event] = []

    async def handle(event: Event, ctx: Context[Any]) -> Effect:
        handled.append(event)
        return Effect()

    broker = make_broker(KafkaSettings(bootstrap_servers=kafka_bootstrap), client_id="listening")
    consumer.subscribe(broker, [topic], description="listening test")
    async with broker:
        await broker.start()

        # Zero polls here would mean FastStream no longer calls the subscriber's get_msg: its own poll,
        # with a pause after each empty one, would be back on every hop
        async def polled() -> bool:
            return consumer.polls >= 2

        await eventually(polled, within_s=60)
        record = event_record(dossier_received("9.900005"), topic)
        producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
        await producer.start()
        try:
            headers = [(name, value.encode()) for name, value in record.headers.items()]
            await producer.send_and_wait(topic, record.value, key=record.key, headers=headers)
        finally:
            await producer.stop()

        async def handled_once() -> bool:
            return len(handled) == 1

        await eventually(handled_once, within_s=60)
    store.close()
    assert str(handled[0].event_id) == record.headers["ce_id"]

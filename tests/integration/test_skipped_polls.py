"""A poll whose records are all skipped (each a duplicate: processed before) still has its offsets
committed on the real broker. Before, no transaction was opened for such a poll, so its marks never
ran: the records came back on every restart and the group's lag never fell."""

from __future__ import annotations

from collections.abc import Awaitable
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from schemas.envelope import Event
from schemas.events import DossierReceived
from services.runtime.consume.consumer import Context, Effect, EventConsumer
from services.runtime.consume.records import event_record
from services.runtime.shell.kafka import make_broker
from services.runtime.shell.settings import KafkaSettings
from services.runtime.storage.outbox import OutboxRelay, OutgoingRecord
from services.runtime.storage.store import SqlProcessingStore
from tests.factories import dossier_received
from tests.sandboxes.helpers import eventually

PARTITIONS = 3


async def test_a_poll_of_duplicates_only_commits_its_offsets(
    kafka_bootstrap: str, topic_prefix: str, tmp_path: Path
) -> None:
    topic = f"{topic_prefix}dossier.received"
    group = f"{topic_prefix}router"
    store = SqlProcessingStore(tmp_path / "router.db")
    records = [event_record(dossier_received("9.900005"), topic) for _ in range(5)]
    for record in records:  # processed before: a redelivery after a rebalance or a restart
        store.commit(record.headers["ce_id"], [])

    async def nothing(record: OutgoingRecord) -> Awaitable[object]:
        raise AssertionError("nothing is emitted")

    handled: list[Event] = []

    async def handle(event: Event, ctx: Context[Any]) -> Effect:
        handled.append(event)
        return Effect()

    consumer = EventConsumer(
        store=store,
        relay=OutboxRelay(store.outbox, nothing),
        group_id=group,
        handlers={DossierReceived: lambda event, ctx: handle(event, ctx)},
        verifier=None,
    )
    broker = make_broker(KafkaSettings(bootstrap_servers=kafka_bootstrap), client_id="skipped-polls")
    consumer.subscribe(broker, [topic], description="skipped polls")
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, num_partitions=PARTITIONS, replication_factor=1)])
    finally:
        await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    await producer.start()
    try:
        for record in records:
            headers = [(k, v.encode()) for k, v in record.headers.items()]
            await producer.send_and_wait(topic, record.value, key=record.key, headers=headers)
    finally:
        await producer.stop()
    reader = AIOKafkaConsumer(bootstrap_servers=kafka_bootstrap, group_id=group, enable_auto_commit=False)
    await reader.start()
    try:
        partitions = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        ends = await reader.end_offsets(partitions)
        async with broker:
            await broker.start()

            async def committed_to_the_end() -> bool:
                committed = {tp: (await reader.committed(tp)) or 0 for tp in partitions}
                return bool(committed == ends)

            await eventually(committed_to_the_end, within_s=60)
    finally:
        await reader.stop()
        store.close()
    assert handled == [], "every record was a duplicate: none was handled again"

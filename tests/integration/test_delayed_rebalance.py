"""A delay-tier consumer on the real broker keeps working when its partition is taken away while a
record is handled: a second instance of the connector joins the group meanwhile (a slow but healthy
agency holding a record is enough for the rebalance to land mid-record)."""

from __future__ import annotations

import asyncio
import time

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from services.runtime.consume import headers
from services.runtime.consume.records import ReceivedRecord
from services.runtime.failures.retry_tiers import DelayedRetryConsumer
from tests.sandboxes.helpers import eventually

SLOW_S = 6.0  # one record's handling: long enough for the group to rebalance meanwhile
FAST_GROUP = {"heartbeat_interval_ms": 300, "session_timeout_ms": 6_000}


async def test_a_partition_revoked_mid_record_does_not_kill_the_tier_consumer(
    kafka_bootstrap: str, topic_prefix: str
) -> None:
    topic = f"{topic_prefix}handoff.land.requested.retry.10s"
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, num_partitions=2, replication_factor=1)])
    finally:
        await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    await producer.start()
    try:
        now_ms = int(time.time() * 1000)
        for name, due_ms in (("slow", now_ms), ("later", now_ms + 10_000)):  # due after "slow" ends
            due = [(headers.RETRY_DUE_MS, str(due_ms).encode()), ("name", name.encode())]
            await producer.send_and_wait(topic, b"{}", key=b"d-1", partition=0, headers=due)
    finally:
        await producer.stop()

    handled: list[tuple[str, str]] = []
    slow_started = asyncio.Event()

    def processing(instance: str):  # type: ignore[no-untyped-def]
        async def process(record: ReceivedRecord) -> None:
            handled.append((instance, record.headers["name"]))
            if record.headers["name"] == "slow":
                slow_started.set()
                await asyncio.sleep(SLOW_S)  # the group gives partition 0 to the newcomer meanwhile

        return process

    group = f"{topic_prefix}connector-land-retry"

    def instance(name: str, client_id: str) -> DelayedRetryConsumer:
        # The range assignor gives partition 0 to the member whose id sorts first: the newcomer's.
        options = FAST_GROUP | {"client_id": client_id}
        return DelayedRetryConsumer(
            bootstrap_servers=kafka_bootstrap,
            topics=[topic],
            group_id=group,
            process=processing(name),
            client_options=options,
        )

    first = asyncio.create_task(instance("first", "z-first").run())
    second: asyncio.Task[None] | None = None
    try:
        await asyncio.wait_for(slow_started.wait(), timeout=60)
        second = asyncio.create_task(instance("second", "a-second").run())

        async def later_handled() -> bool:
            assert not first.done(), f"the first tier consumer died: {first.exception()!r}"
            return any(name == "later" for _, name in handled)

        await eventually(later_handled, within_s=60)
        await asyncio.sleep(1)  # the first instance goes on polling after its partition moved
        assert not first.done(), f"the first tier consumer died: {first.exception()!r}"
    finally:
        for task in (first, second):
            if task is not None:
                task.cancel()
        await asyncio.gather(first, *([second] if second else []), return_exceptions=True)
    assert handled[0] == ("first", "slow")

"""Dead-letter replay rate: N dead letters written as the runtime writes them, then replayed."""

from __future__ import annotations

from datetime import UTC, datetime

from aiokafka import AIOKafkaProducer

from connectors.errors import AgencyUnavailable
from schemas.topics import all_topics, dlq_topic
from services.runtime.consume.records import ReceivedRecord, event_record
from services.runtime.failures import dead_letter_replay
from services.runtime.failures.dead_letter_records import Failure, dead_letter
from services.runtime.shell.topics_admin import ensure_topics
from services.tools.bench.messages import handoff_request
from services.tools.bench.procstats import Stopwatch


async def run_replay(bootstrap: str, prefix: str, count: int) -> tuple[Stopwatch, int]:
    """Returns the time of reading and replaying ``count`` dead letters, and how many were replayed."""
    await ensure_topics(bootstrap, [t for t in all_topics(prefix) if "land" in t.name or "dlq" in t.name])
    source = prefix + "handoff.land.requested"
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, linger_ms=10
    )
    await producer.start()
    try:
        acks = []
        for number in range(count):
            record = event_record(handoff_request(number), source)
            received = _received(record.topic, number, record.key, record.value, record.headers)
            letter = dead_letter(received, Failure("transient", AgencyUnavailable("down", agency="land")))
            acks.append(
                await producer.send(
                    dlq_topic(source),
                    letter.value,
                    key=letter.key,
                    headers=letter.kafka_headers(),
                )
            )
        for ack in acks:
            await ack
    finally:
        await producer.stop()
    watch = Stopwatch()
    watch.start()
    letters = await dead_letter_replay.read_dead_letters(bootstrap, prefix)
    report = await dead_letter_replay.replay(
        bootstrap, letters, prefix=prefix, rate_per_s=1e6, operator="bench"
    )
    watch.stop()
    return watch, len(report.replayed)


def _received(topic: str, offset: int, key: bytes, value: bytes, headers: dict[str, str]) -> ReceivedRecord:
    return ReceivedRecord(
        topic=topic,
        partition=0,
        offset=offset,
        timestamp=datetime.now(UTC),
        key=key,
        value=value,
        headers=headers,
        group_id="bench",
    )

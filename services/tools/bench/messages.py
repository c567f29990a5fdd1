"""Realistic handoff requests for the benchmarks: land-transfer checks of about 1 KB, as the router sends."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from aiokafka import AIOKafkaProducer

from schemas.agencies import Agency
from schemas.envelope import kafka_headers
from schemas.events import HandoffRequested, HandoffRequestedData
from services.runtime.consume.records import event_record


def _example_data() -> dict[str, Any]:
    extra = HandoffRequested.model_config.get("json_schema_extra")
    assert isinstance(extra, dict)
    examples = extra["examples"]
    assert isinstance(examples, list) and isinstance(examples[0], dict)
    data = examples[0]["data"]
    assert isinstance(data, dict)
    return dict(data)


_TEMPLATE = _example_data()


def handoff_request(number: int, agency: Agency = Agency.LAND) -> HandoffRequested:
    """The ``number``-th request: its own dossier, handoff id and receipt code (every event distinct)."""
    now = datetime.now(UTC)
    data = HandoffRequestedData.model_validate(
        {
            **_TEMPLATE,
            "handoff_id": str(uuid.uuid4()),
            "dossier_code": f"LT-{now:%y%m%d}-{number % 1_000_000:06d}",
            "agency": agency.value,
            "leg_due_at": (now + timedelta(days=3)).isoformat(),
            "dossier_due_at": (now + timedelta(days=10)).isoformat(),
        },
        strict=False,  # JSON-shaped example (ISO dates, enum values)
    )
    return HandoffRequested.create(
        data=data,
        producer="router",
        dossier_id=uuid.uuid4(),
        traceparent=f"00-{uuid.uuid4().hex}-{uuid.uuid4().hex[:16]}-01",
    )


async def prefill(bootstrap: str, topic: str, count: int) -> int:
    """Writes ``count`` handoff requests to ``topic``; returns the mean record value size in bytes."""
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, linger_ms=20, max_batch_size=262144
    )
    await producer.start()
    total = 0
    try:
        futures = []
        for number in range(count):
            event = handoff_request(number)
            record = event_record(event, topic)
            total += len(record.value)
            futures.append(
                await producer.send(topic, record.value, key=record.key, headers=kafka_headers(event))
            )
        for future in futures:
            await future
    finally:
        await producer.stop()
    return total // max(count, 1)

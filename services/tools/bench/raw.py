"""The baseline: a hand-written aiokafka consume → validate → produce loop with our guarantees.

It reads and writes the records our services do (CloudEvents binary content mode, parsed and checked
by :func:`schemas.events.parse_event`).

acks=all and the idempotent producer; offsets committed by hand, only after every outcome of the batch
was acknowledged by Kafka. What a competent engineer would write without our runtime.
"""

from __future__ import annotations

import asyncio
import uuid

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from connectors.base import Completed
from schemas.envelope import event_value, kafka_headers
from schemas.events import HandoffOutcomeData, HandoffReported, HandoffRequested, OutcomeKind, parse_event
from services.tools.bench.procstats import Stopwatch

_NAMESPACE = uuid.UUID("7b0f3c1e-2d4a-4e6b-8c9d-0a1b2c3d4e5f")


def outcome_for(request: HandoffRequested, result: Completed) -> HandoffReported:
    data = HandoffOutcomeData(
        handoff_id=request.data.handoff_id,
        step_id=request.data.step_id,
        agency=request.data.agency,
        action=request.data.action,
        kind=OutcomeKind.COMPLETED,
        result=result.result,
        agency_reference=result.reference,
    )
    return HandoffReported.create(
        data=data,
        producer=f"connector.{request.data.agency.value}",
        caused_by=request,
        event_id=uuid.uuid5(_NAMESPACE, f"{request.data.handoff_id}/completed"),
    )


async def run_raw(
    bootstrap: str, source: str, sink: str, count: int, *, group_id: str, linger_ms: int
) -> Stopwatch:
    """Consumes ``count`` requests from ``source`` and writes an outcome of each to ``sink``."""
    consumer = AIOKafkaConsumer(
        source,
        bootstrap_servers=bootstrap,
        group_id=group_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, linger_ms=linger_ms
    )
    await producer.start()
    await consumer.start()
    watch = Stopwatch()
    done = 0
    try:
        while done < count:
            batches = await consumer.getmany(timeout_ms=1000, max_records=500)
            if not batches:
                continue
            if done == 0:
                watch.start()  # from the first record: the group join is not the loop's work
            acks: list[asyncio.Future[object]] = []
            for records in batches.values():
                for record in records:
                    request = parse_event(record.value, dict(record.headers))
                    assert isinstance(request, HandoffRequested)
                    outcome = outcome_for(request, Completed({"accepted": True}, reference="REF"))
                    acks.append(
                        await producer.send(
                            sink, event_value(outcome), key=record.key, headers=kafka_headers(outcome)
                        )
                    )
                    done += 1
            await asyncio.gather(*acks)
            await consumer.commit()
        watch.stop()
    finally:
        await consumer.stop()
        await producer.stop()
    return watch

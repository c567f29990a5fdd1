"""One place that builds the Kafka broker object every service and connector uses.

Producers are durable by default here (aiokafka's own defaults are ``acks=1`` and no idempotence):
``acks=all`` with the idempotent producer, so a retried send never writes a record twice.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Sequence
from typing import Any, cast

from aiokafka import AIOKafkaProducer
from faststream.kafka import KafkaBroker

from services.runtime.outbox import OutgoingRecord, SendRecord
from services.runtime.settings import KafkaSettings, faststream_security


def make_broker(
    settings: KafkaSettings,
    *,
    client_id: str,
    middlewares: Sequence[Any] = (),
    **overrides: Any,
) -> KafkaBroker:
    options: dict[str, Any] = {
        "client_id": client_id,
        "acks": "all",
        "enable_idempotence": True,
        "linger_ms": settings.linger_ms,
        "middlewares": tuple(middlewares),
        "security": faststream_security(settings),  # SASL/TLS for real clusters; None on the local broker
        # FastStream logs every message at `log_level`: DEBUG keeps them out of production logs while
        # its errors (a handler that raised, a decoder that failed) are still logged.
        "logger": logging.getLogger("faststream"),
        "log_level": logging.DEBUG,
    }
    options.update(overrides)
    return KafkaBroker(settings.bootstrap_servers, **options)


def kafka_sender(broker: KafkaBroker) -> SendRecord:
    """Sends an outbox record without waiting: returns the future of Kafka's acknowledgement."""

    async def send(record: OutgoingRecord) -> Awaitable[object]:
        producer = connected_producer(broker)
        if producer is not None:
            headers = [(name, value.encode()) for name, value in record.headers.items()]
            ack = await producer.send(record.topic, record.value, key=record.key, headers=headers)
            return cast("Awaitable[object]", ack)
        future = await broker.publish(
            record.value, record.topic, key=record.key, headers=record.headers, no_confirm=True
        )
        return cast("Awaitable[object]", future)

    return send


def connected_producer(broker: KafkaBroker) -> AIOKafkaProducer | None:
    """The aiokafka producer FastStream connected, or None (not connected, or FastStream's test broker).

    The outbox relay sends through it directly: its records are encoded and carry their own ids and
    headers already, and FastStream's publish path around the send (middlewares, a correlation id, a
    publish command per record) cost the relay more CPU than the send itself. FastStream keeps the
    producer in private attributes; ``tests/integration`` checks that they are still found.
    """
    state = getattr(broker.config.producer, "_producer", None)
    producer = getattr(state, "producer", None)
    return producer if isinstance(producer, AIOKafkaProducer) else None

"""One place that builds the Kafka broker object every service and connector uses.

Producers are durable by default here (aiokafka's own defaults are ``acks=1`` and no idempotence):
``acks=all`` with the idempotent producer, so a retried send never writes a record twice.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Sequence
from typing import Any, cast

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
        future = await broker.publish(
            record.value, record.topic, key=record.key, headers=record.headers, no_confirm=True
        )
        return cast("Awaitable[object]", future)

    return send

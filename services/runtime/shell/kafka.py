"""One place that builds the Kafka clients every service and connector uses: the FastStream broker
(subscribers, and the AsyncAPI document) and the outbox relay's producer.

Producers are durable by default here (aiokafka's own defaults are ``acks=1`` and no idempotence):
``acks=all`` with the idempotent producer, so a retried send never writes a record twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Sequence
from typing import Any, cast

from aiokafka import AIOKafkaProducer
from faststream.kafka import KafkaBroker

from services.runtime.observe.metrics import METRICS, Service
from services.runtime.observe.tracing import TracedSender
from services.runtime.shell.settings import (
    KafkaSettings,
    ServiceSettings,
    client_security_options,
    faststream_security,
)
from services.runtime.storage.outbox import Outbox, OutboxRelay, OutgoingRecord

log = logging.getLogger(__name__)


def producer_options(settings: KafkaSettings, client_id: str) -> dict[str, Any]:
    """Keyword arguments of a durable aiokafka producer for the cluster ``settings`` describe."""
    return {
        "bootstrap_servers": settings.bootstrap_servers,
        "client_id": client_id,
        "acks": "all",
        "enable_idempotence": True,
        "linger_ms": settings.linger_ms,
        **client_security_options(settings),
    }


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
    # A list, not the comma-separated string: FastStream hands a string to aiokafka as one host.
    servers = [server.strip() for server in settings.bootstrap_servers.split(",") if server.strip()]
    return KafkaBroker(servers, **options)


class RelaySender:
    """The outbox relay's own aiokafka producer: sends a record and returns the future of Kafka's
    acknowledgement; :meth:`reset` drops the producer and the next send starts a new one.

    The relay owns this producer (rather than sending through the one FastStream connected) so that
    it can replace it: aiokafka's producer fails every later send once it hit a fatal error (an
    ``OutOfOrderSequenceNumber`` after a leader change, a producer fenced), and a producer that is
    only ever retried never recovers. Under FastStream's in-memory test broker it publishes through
    the broker instead."""

    def __init__(self, settings: KafkaSettings, client_id: str, broker: KafkaBroker | None = None) -> None:
        self.settings = settings
        self.client_id = client_id
        self.broker = broker
        self.producers_started = 0
        self._producer: AIOKafkaProducer | None = None
        self._starting: asyncio.Lock | None = None

    async def __call__(self, record: OutgoingRecord) -> Awaitable[object]:
        producer = self._producer or await self._start()
        if producer is None:  # FastStream's test broker
            assert self.broker is not None
            await self.broker.publish(record.value, record.topic, key=record.key, headers=record.headers)
            done: asyncio.Future[object] = asyncio.get_running_loop().create_future()
            done.set_result(None)  # the test broker delivers as it publishes
            return done
        ack = await producer.send(record.topic, record.value, key=record.key, headers=record.kafka_headers())
        return cast("Awaitable[object]", ack)

    async def _start(self) -> AIOKafkaProducer | None:
        if self.broker is not None and _under_test_broker(self.broker):
            return None
        self._starting = self._starting or asyncio.Lock()
        async with self._starting:
            if self._producer is None:
                producer = AIOKafkaProducer(**producer_options(self.settings, f"{self.client_id}-outbox"))
                try:
                    await producer.start()
                except BaseException:
                    with contextlib.suppress(Exception):
                        await producer.stop()
                    raise
                self._producer = producer
                self.producers_started += 1
        return self._producer

    async def reset(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            try:
                async with asyncio.timeout(10):
                    await producer.stop()
            except Exception:  # a dead producer may not stop cleanly; it is dropped either way
                log.debug("the relay's old producer did not stop cleanly", exc_info=True)

    async def close(self) -> None:
        await self.reset()


def _under_test_broker(broker: KafkaBroker) -> bool:
    from faststream.kafka.testing import FakeProducer

    return isinstance(getattr(broker.config, "producer", None), FakeProducer)


def outbox_relay(
    outbox: Outbox, settings: ServiceSettings, *, client_id: str, broker: KafkaBroker, service: Service
) -> OutboxRelay:
    """The relay every service runs: its own producer, traced, reporting its backlog in metrics."""
    sender = TracedSender(RelaySender(settings, client_id, broker), client_id)
    return OutboxRelay(
        outbox, sender, ack_timeout_s=settings.outbox_ack_timeout_s, gauges=METRICS.service(service)
    )

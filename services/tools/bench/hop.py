"""One connector hop through the shared runtime, in process: the objects ``services/connector/app.py``
builds (EventConsumer, ConnectorHost, outbox relay, Prometheus middleware) around an agency that
answers at once. Timed from the first record handled until every outcome is acknowledged by Kafka."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import ClassVar

from connectors.base import Completed, Connector, HandoffRequest, HandoffResult
from schemas.agencies import AGENCY_ACTIONS, Agency
from schemas.events import HandoffRequested
from services.connector.host import ConnectorHost, on_handoff_requested
from services.connector.settings import HostSettings
from services.connector.store import ConnectorStore
from services.runtime.consume.consumer import Context, Effect, EventConsumer
from services.runtime.observe.metrics import METRICS, Service
from services.runtime.shell.kafka import make_broker, outbox_relay
from services.runtime.shell.service import instrument_broker
from services.runtime.shell.settings import ServiceSettings
from services.tools.bench.procstats import Stopwatch


class InstantLand(Connector):
    """A land registry that completes every request at once, in memory."""

    agency: ClassVar[Agency] = Agency.LAND
    actions: ClassVar[frozenset[str]] = AGENCY_ACTIONS[Agency.LAND]

    async def handle(self, request: HandoffRequest) -> HandoffResult:
        return Completed({"accepted": True}, reference="REF")


async def run_hop(
    bootstrap: str,
    prefix: str,
    count: int,
    work_dir: Path,
    *,
    linger_ms: int | None = None,
) -> Stopwatch:
    settings = ServiceSettings(bootstrap_servers=bootstrap, topic_prefix=prefix)
    if linger_ms is not None:
        settings.linger_ms = linger_ms
    connector = InstantLand()
    store = ConnectorStore(work_dir / f"hop-{prefix.strip('.')}.db")
    broker = make_broker(settings, client_id="bench-hop")
    relay = outbox_relay(
        store.outbox, settings, client_id="bench-hop", broker=broker, service=Service.CONNECTOR
    )
    host = ConnectorHost(connector, store, relay, HostSettings(), topic_prefix=prefix)
    watch = Stopwatch()
    handled = 0

    async def counting(event: HandoffRequested, ctx: Context[ConnectorHost]) -> Effect:
        nonlocal handled
        if handled == 0:
            watch.start()
        handled += 1
        return await on_handoff_requested(event, ctx)

    consumer = EventConsumer(
        store=store,
        relay=relay,
        group_id=f"{prefix}connector-land",
        handlers={HandoffRequested: counting},
        deps=host,
        service="connector",
        dlq_for=host.dlq_for,
    )
    consumer.subscribe(broker, [host.requests_topic], description="bench hop")
    instrument_broker(broker, "connector-land")
    METRICS.prime(service=Service.CONNECTOR, agencies=[Agency.LAND])
    await connector.start()
    await broker.start()
    relay_task = asyncio.create_task(relay.run())
    try:
        deadline = time.monotonic() + 600
        while not (handled >= count and store.outbox.is_empty()):
            if time.monotonic() > deadline:
                raise TimeoutError(f"hop: {handled}/{count} handled, {store.outbox.size()} unpublished")
            await asyncio.sleep(0.01)
        watch.stop()
    finally:
        relay_task.cancel()
        await asyncio.gather(relay_task, return_exceptions=True)
        await broker.stop()
        await connector.stop()
        store.close()
    return watch

"""One connector process: the shared connector host around the connector of one agency."""

from __future__ import annotations

from fastapi import FastAPI

from connectors.registry import connector_class
from schemas.events import HandoffReported
from schemas.topics import HANDOFF_OUTCOME
from services.connector.host import HANDLERS, ConnectorHost
from services.connector.settings import ConnectorSettings
from services.connector.store import ConnectorStore
from services.runtime.consume.consumer import EventConsumer
from services.runtime.failures.retry_tiers import DelayedRetryConsumer
from services.runtime.observe.metrics import Service
from services.runtime.shell.kafka import make_broker, outbox_relay
from services.runtime.shell.service import build_service_app
from services.runtime.shell.settings import client_security_options
from services.runtime.storage.database import store_location


def build_app(settings: ConnectorSettings | None = None) -> FastAPI:
    settings = settings or ConnectorSettings()
    agency = settings.agency
    connector = connector_class(agency)()
    store = ConnectorStore(store_location(settings.data_dir, f"connector-{agency.value}"))
    broker = make_broker(settings, client_id=f"connector-{agency.value}")
    relay = outbox_relay(
        store.outbox,
        settings,
        client_id=f"connector-{agency.value}",
        broker=broker,
        service=Service.CONNECTOR,
    )
    host = ConnectorHost(connector, store, relay, settings.connector_host, topic_prefix=settings.topic_prefix)
    group = f"{settings.topic_prefix}connector-{agency.value}"
    consumer = EventConsumer(
        store=store,
        relay=relay,
        group_id=group,
        handlers=HANDLERS,
        deps=host,
        service="connector",
        dlq_for=host.dlq_for,
    )
    consumer.subscribe(
        broker,
        [host.requests_topic],
        description=f"Handoff requests for the {agency.value} agency system.",
    )
    delayed = DelayedRetryConsumer(
        bootstrap_servers=settings.bootstrap_servers,
        topics=host.retry_topics,
        group_id=f"{group}-retry",
        client_options=client_security_options(settings),
        process=consumer.process,
    )
    broker.publisher(
        settings.topic_prefix + HANDOFF_OUTCOME,
        description=f"Outcomes from {agency.value}.",
        schema=HandoffReported,
    )
    app = build_service_app(
        f"connector-{agency.value}",
        broker,
        description=f"Carries handoffs to and from the {agency.value} agency system.",
        kind=Service.CONNECTOR,
        agencies=[agency],
        loops=[relay.run, host.poll_loop, delayed.run, consumer.keep_polling],
        on_startup=[connector.start],
        on_shutdown=[connector.stop],
        kafka=settings,
    )
    app.state.store = store
    delayed.watch = app.state.lag.watch  # the delay tiers' lag is measured like the main topic's
    delayed.unwatch = app.state.lag.unwatch
    return app

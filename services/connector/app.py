"""One connector process: the shared connector host around the connector of one agency."""

from __future__ import annotations

from fastapi import FastAPI
from pydantic import Field

from connectors.registry import connector_class
from schemas.agencies import Agency
from schemas.events import HandoffReported
from schemas.topics import HANDOFF_OUTCOME, RETRY_TIERS
from services.runtime.connector_host import (
    HANDLERS,
    ConnectorHost,
    ConnectorStore,
    HostSettings,
    tiers_with_delays,
)
from services.runtime.consumer import EventConsumer
from services.runtime.delayed import DelayedRetryConsumer
from services.runtime.kafka import make_broker, outbox_relay
from services.runtime.metrics import Service
from services.runtime.retry import BlipRetry
from services.runtime.service import build_service_app
from services.runtime.settings import ServiceSettings, client_security_options


class ConnectorSettings(ServiceSettings):
    agency: Agency = Field(default=Agency.LAND)
    port: int = Field(default=8100)
    poll_interval_s: float = Field(
        default=0.5,
        description="The longest wait between two polls of a pending job: the first poll comes after"
        " an eighth of it, and each wait doubles up to it.",
    )
    call_timeout_s: float = Field(default=10.0, description="Longest wait for one agency call.")
    retry_attempts: int = Field(default=3, description="In-process attempts for a blip, the first included.")
    retry_within_s: float = Field(default=3.0, description="In-process retries never take longer than this.")
    retry_delays_s: tuple[float, ...] = Field(
        default=tuple(t.delay.total_seconds() for t in RETRY_TIERS),
        description="Delay of each retry tier (the 10s, 1m and 10m topics), e.g. [10, 60, 600].",
    )
    circuit_threshold: int = Field(
        default=5, description="Transient failures in a row that open the circuit."
    )
    circuit_cooldown_s: float = Field(default=10.0, description="How long an open circuit stays open.")
    poll_failure_budget: int = Field(
        default=10,
        ge=1,
        description="Failed polls in a row after which a pending job's handoff is dead-lettered (stuck).",
    )
    poll_retry_s: float = Field(
        default=5.0, gt=0, description="Wait after a failed poll; it doubles with each failure in a row."
    )
    poll_retry_max_s: float = Field(default=300.0, gt=0, description="Longest wait after a failed poll.")


def build_app(settings: ConnectorSettings | None = None) -> FastAPI:
    settings = settings or ConnectorSettings()
    agency = settings.agency
    connector = connector_class(agency)()
    store = ConnectorStore(settings.data_dir / f"connector-{agency.value}.db")
    broker = make_broker(settings, client_id=f"connector-{agency.value}")
    relay = outbox_relay(
        store.outbox,
        settings,
        client_id=f"connector-{agency.value}",
        broker=broker,
        service=Service.CONNECTOR,
    )
    host = ConnectorHost(
        connector,
        store,
        relay,
        HostSettings(
            topic_prefix=settings.topic_prefix,
            blip_retry=BlipRetry(
                attempts=settings.retry_attempts,
                within_s=settings.retry_within_s,
                call_timeout_s=settings.call_timeout_s,
            ),
            poll_interval_s=settings.poll_interval_s,
            retry_tiers=tiers_with_delays(settings.retry_delays_s),
            circuit_threshold=settings.circuit_threshold,
            circuit_cooldown_s=settings.circuit_cooldown_s,
            poll_failure_budget=settings.poll_failure_budget,
            poll_retry_s=settings.poll_retry_s,
            poll_retry_max_s=settings.poll_retry_max_s,
        ),
    )
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

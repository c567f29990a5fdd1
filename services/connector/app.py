"""One connector process: the shared connector host around the connector of one agency."""

from __future__ import annotations

from fastapi import FastAPI
from pydantic import Field

from connectors.registry import connector_class
from schemas.agencies import Agency
from schemas.events import HandoffRequested
from schemas.topics import HANDOFF_OUTCOME, requests_topic
from services.runtime.connector_host import ConnectorHost, HandoffStore, HostSettings
from services.runtime.consumer import EventConsumer
from services.runtime.kafka import kafka_sender, make_broker
from services.runtime.outbox import OutboxRelay
from services.runtime.retry import BlipRetry
from services.runtime.service import build_service_app
from services.runtime.settings import ServiceSettings


class ConnectorSettings(ServiceSettings):
    agency: Agency = Field(default=Agency.LAND)
    port: int = Field(default=8100)
    poll_interval_s: float = Field(default=0.5, description="How often pending work is polled.")
    call_timeout_s: float = Field(default=10.0, description="Longest wait for one agency call.")
    retry_attempts: int = Field(default=3, description="In-process attempts for a blip, the first included.")


def build_app(settings: ConnectorSettings | None = None) -> FastAPI:
    settings = settings or ConnectorSettings()
    agency = settings.agency
    connector = connector_class(agency)()
    store = HandoffStore(settings.data_dir / f"connector-{agency.value}.db")
    broker = make_broker(settings, client_id=f"connector-{agency.value}")
    relay = OutboxRelay(store.outbox, kafka_sender(broker))
    host = ConnectorHost(
        connector,
        store,
        relay,
        HostSettings(
            topic_prefix=settings.topic_prefix,
            blip_retry=BlipRetry(attempts=settings.retry_attempts, call_timeout_s=settings.call_timeout_s),
            poll_interval_s=settings.poll_interval_s,
        ),
    )
    consumer = EventConsumer(
        store=store,
        relay=relay,
        group_id=f"{settings.topic_prefix}connector-{agency.value}",
        accepts=(HandoffRequested,),
    )
    consumer.subscribe(
        broker,
        [requests_topic(agency, settings.topic_prefix)],
        host.on_request,
        description=f"Handoff requests for the {agency.value} agency system.",
    )
    broker.publisher(settings.topic_prefix + HANDOFF_OUTCOME, description=f"Outcomes from {agency.value}.")
    return build_service_app(
        f"connector-{agency.value}",
        broker,
        description=f"Carries handoffs to and from the {agency.value} agency system.",
        loops=[relay.run, host.poll_loop],
        on_startup=[connector.start],
        on_shutdown=[connector.stop],
    )

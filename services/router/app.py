"""The router service: walks each dossier through its procedure's route."""

from __future__ import annotations

from fastapi import FastAPI
from pydantic import Field

from schemas.catalog import load_catalog
from schemas.events import DossierReceived, HandoffOutcome
from schemas.topics import DOSSIER_RECEIVED, HANDOFF_OUTCOME
from schemas.workdays import default_calendar
from services.router.handlers import RouterHandlers
from services.router.store import SqliteRouterStore
from services.runtime.consumer import EventConsumer
from services.runtime.kafka import kafka_sender, make_broker
from services.runtime.outbox import OutboxRelay
from services.runtime.service import build_service_app
from services.runtime.settings import ServiceSettings


class RouterSettings(ServiceSettings):
    port: int = Field(default=8001)


def build_app(settings: RouterSettings | None = None) -> FastAPI:
    settings = settings or RouterSettings()
    store = SqliteRouterStore(settings.data_dir / "router.db")
    broker = make_broker(settings, client_id="router")
    relay = OutboxRelay(store.outbox, kafka_sender(broker))
    handlers = RouterHandlers(
        store, load_catalog(settings.catalog_path), default_calendar(), settings.topic_prefix
    )
    consumer = EventConsumer(
        store=store,
        relay=relay,
        group_id=f"{settings.topic_prefix}router",
        accepts=(DossierReceived, HandoffOutcome),
    )
    consumer.subscribe(
        broker,
        [settings.topic_prefix + DOSSIER_RECEIVED, settings.topic_prefix + HANDOFF_OUTCOME],
        handlers.on_event,
        description="Dossiers to route and agencies' outcomes; emits handoff requests and status changes.",
    )
    return build_service_app(
        "router",
        broker,
        description="Walks every dossier through its procedure's route.",
        loops=[relay.run],
    )

"""The router service: walks each dossier through its procedure's route."""

from __future__ import annotations

from fastapi import FastAPI
from pydantic import Field

from schemas.agencies import Agency
from schemas.catalog import load_catalog
from schemas.events import (
    DossierClosed,
    DossierStatusChanged,
    HandoffRequested,
)
from schemas.topics import DOSSIER_CLOSED, DOSSIER_RECEIVED, DOSSIER_STATUS, HANDOFF_OUTCOME, requests_topic
from schemas.workdays import default_calendar
from services.router.handlers import HANDLERS, Router
from services.router.store import RouterStore
from services.runtime.consume.consumer import EventConsumer
from services.runtime.observe.metrics import Service
from services.runtime.shell.kafka import make_broker, outbox_relay
from services.runtime.shell.service import build_service_app
from services.runtime.shell.settings import ServiceSettings
from services.runtime.storage.database import store_location


class RouterSettings(ServiceSettings):
    port: int = Field(default=8001)


def build_app(settings: RouterSettings | None = None) -> FastAPI:
    settings = settings or RouterSettings()
    store = RouterStore(store_location(settings.data_dir, "router"))
    broker = make_broker(settings, client_id="router")
    relay = outbox_relay(store.outbox, settings, client_id="router", broker=broker, service=Service.ROUTER)
    catalog = load_catalog(settings.catalog_path)
    consumer = EventConsumer(
        store=store,
        relay=relay,
        group_id=f"{settings.topic_prefix}router",
        handlers=HANDLERS,
        deps=Router(store, catalog, default_calendar(), settings.topic_prefix),
        lookup_before_handling=False,  # its handlers only compute a write and events: the commit dedupes
    )
    consumer.subscribe(
        broker,
        [settings.topic_prefix + DOSSIER_RECEIVED, settings.topic_prefix + HANDOFF_OUTCOME],
        description="Dossiers to route and agencies' outcomes; emits handoff requests and status changes.",
    )
    # What the router emits (through its outbox), declared for the AsyncAPI document.
    prefix = settings.topic_prefix
    for agency in Agency:
        broker.publisher(
            requests_topic(agency, prefix),
            description=f"Steps of dossiers' routes handed to the {agency.value} agency system.",
            schema=HandoffRequested,
        )
    broker.publisher(
        prefix + DOSSIER_STATUS,
        description="National status changes of dossiers (holder, clock paused or running).",
        schema=DossierStatusChanged,
    )
    broker.publisher(
        prefix + DOSSIER_CLOSED,
        description="Dossiers finished: completed, returned to the citizen or withdrawn.",
        schema=DossierClosed,
    )
    app = build_service_app(
        "router",
        broker,
        description="Walks every dossier through its procedure's route.",
        kind=Service.ROUTER,
        loops=[relay.run, consumer.keep_polling],
        kafka=settings,
    )
    app.state.store = store
    return app

"""The intake service's bootstrap: its store, broker, relay and catalog wired into the service shell,
with the API (:mod:`services.intake.api`) over the intake itself (:mod:`services.intake.intake`)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from fastapi import FastAPI
from pydantic import Field

from schemas.catalog import load_catalog
from schemas.events import DossierReceived
from schemas.topics import DOSSIER_RECEIVED
from schemas.workdays import default_calendar
from services.intake.api import add_routes, utc_now
from services.intake.intake import Intake
from services.intake.store import IntakeStore
from services.runtime.observe.metrics import Service
from services.runtime.shell.kafka import make_broker, outbox_relay
from services.runtime.shell.service import build_service_app
from services.runtime.shell.settings import ServiceSettings
from services.runtime.storage.database import store_location


class IntakeSettings(ServiceSettings):
    port: int = Field(default=8000)


def build_app(settings: IntakeSettings | None = None, *, now: Callable[[], datetime] = utc_now) -> FastAPI:
    settings = settings or IntakeSettings()
    store = IntakeStore(store_location(settings.data_dir, "intake"))
    broker = make_broker(settings, client_id="intake")
    relay = outbox_relay(store.outbox, settings, client_id="intake", broker=broker, service=Service.INTAKE)
    catalog = load_catalog(settings.catalog_path)
    intake = Intake(store, catalog, default_calendar(), settings.topic_prefix)
    # Publishes DossierReceived (documented in the AsyncAPI document; sent through the outbox relay).
    broker.publisher(
        settings.topic_prefix + DOSSIER_RECEIVED,
        description="Dossiers accepted at the desk or online.",
        schema=DossierReceived,
    )
    app = build_service_app(
        "intake",
        broker,
        description="Receives dossiers from the counter and the online portal.",
        kind=Service.INTAKE,
        procedures=[p.code for p in catalog.procedures],
        loops=[relay.run],
        kafka=settings,
    )
    app.state.store = store
    add_routes(app, intake, relay, now=now)
    return app

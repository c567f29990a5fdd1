"""The intake service's bootstrap: its store, broker, relay and catalog wired into the service shell,
with the API (:mod:`services.intake.api`) over the intake itself (:mod:`services.intake.intake`)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from fastapi import FastAPI
from pydantic import Field

from schemas.catalog import load_catalog
from schemas.events import DossierReceived
from schemas.topics import DOSSIER_RECEIVED
from schemas.workdays import default_calendar
from services.intake.api import add_routes, utc_now
from services.intake.auth import AUDIENCE, submission_auth
from services.intake.intake import Intake
from services.intake.store import IntakeStore
from services.runtime.observe.metrics import Service
from services.runtime.shell.kafka import make_broker, outbox_relay
from services.runtime.shell.service import build_service_app
from services.runtime.shell.settings import ServiceSettings
from services.runtime.storage.database import store_location


class IntakeSettings(ServiceSettings):
    port: int = Field(default=8000)
    oidc_issuer: str | None = Field(
        default=None,
        description="The OpenID Connect issuer whose client-credentials tokens intake requires on POST"
        " /dossiers; unset: submissions are not authenticated (a warning at start says so).",
    )
    oidc_audience: str = Field(default=AUDIENCE, description="The `aud` a token for intake must carry.")
    oidc_clients_file: Path | None = Field(
        default=None,
        description="The client map (YAML, e.g. deploy/oidc/clients.yaml): the channels and procedures"
        " each client system may submit. Required with oidc_issuer.",
    )


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
    auth = submission_auth(
        settings.oidc_issuer, settings.oidc_audience, settings.oidc_clients_file, catalog, now
    )
    add_routes(app, intake, relay, now=now, auth=auth)
    return app

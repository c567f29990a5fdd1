"""The tracker service: projects every topic of the bus and serves the supervision API."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Literal

from fastapi import Depends, FastAPI
from fastapi.staticfiles import StaticFiles
from pydantic import Field

from schemas.agencies import Agency
from schemas.catalog import load_catalog
from schemas.topics import (
    DOSSIER_CLOSED,
    DOSSIER_RECEIVED,
    DOSSIER_STATUS,
    HANDOFF_OUTCOME,
    OPERATOR_ACTIONS,
    requests_topic,
)
from schemas.workdays import default_calendar
from services.runtime.auth.signin import StaffAccess, resolve
from services.runtime.auth.staff import Role
from services.runtime.consume.consumer import EventConsumer
from services.runtime.observe.metrics import Service
from services.runtime.shell.kafka import make_broker, outbox_relay
from services.runtime.shell.service import build_service_app
from services.runtime.shell.settings import ServiceSettings, client_security_options
from services.runtime.storage.database import store_location
from services.tracker import projection
from services.tracker.anchor import anchor_loops
from services.tracker.api import build_api
from services.tracker.gauges import counting_closures, refresh_loop
from services.tracker.page import PAGE, STATIC, build_page
from services.tracker.store import TrackerStore
from services.tracker.views import Clock, TrackerViews, utc_now


class TrackerSettings(ServiceSettings):
    port: int = Field(default=8002)
    gauges_interval_s: float = Field(default=5.0, description="How often the dossier gauges are refreshed.")
    waiting_alert_days: float = Field(
        default=30.0,
        gt=0,
        description="Days a dossier may wait on the citizen (a fee to pay, clock paused) before it is"
        " listed as waiting too long and lienthong_dossiers_waiting_too_long counts it.",
    )
    # Staff sign-in on the supervision page and the read API (services.runtime.auth.signin).
    staff_sign_in: Literal["on", "off"] = Field(
        default="on",
        description="Staff sign in (OpenID Connect) to read the page and the API and to replay; 'off' is"
        " for development only: the page then says so on every view.",
    )
    oidc_issuer: str | None = Field(
        default=None,
        description="The OpenID Connect provider staff sign in with (its issuer URL). Without it the"
        " tracker refuses to start, unless sign-in is off or LIENTHONG_INSECURE_DEV=1.",
    )
    oidc_client_id: str = Field(default="supervision-page", description="The page's client at the provider.")
    public_url: str | None = Field(
        default=None,
        description="The page's address as browsers reach it (the provider sends people back to"
        " <it>/auth/callback); http://127.0.0.1:<port> if unset.",
    )
    session_secret_file: Path | None = Field(
        default=None,
        description="File holding the secret the session cookies are signed with. Unset: a random secret"
        " per process, so sessions do not survive a restart and replicas do not share them.",
    )
    insecure_dev: bool = Field(
        default=False,
        description="Development only: without LIENTHONG_OIDC_ISSUER, start with staff sign-in off.",
    )


def tracker_topics(prefix: str = "") -> list[str]:
    """Every topic the tracker reads: the dossier topics, the outcomes, every agency's requests, and
    the operator actions (for the handoff log)."""
    own = (DOSSIER_RECEIVED, DOSSIER_STATUS, DOSSIER_CLOSED, HANDOFF_OUTCOME, OPERATOR_ACTIONS)
    topics = [prefix + t for t in own]
    return topics + [requests_topic(agency, prefix) for agency in Agency]


def staff_access(settings: TrackerSettings) -> StaffAccess:
    """Who may read the page and the API and replay (raises SignInNotConfigured when sign-in is on and
    cannot work)."""
    config = resolve(
        "tracker",
        sign_in=settings.staff_sign_in,
        issuer=settings.oidc_issuer,
        client_id=settings.oidc_client_id,
        public_url=settings.public_url or f"http://127.0.0.1:{settings.port}",
        secret_file=settings.session_secret_file,
        insecure_dev=settings.insecure_dev,
    )
    return StaffAccess(config, home=PAGE)


def build_app(
    settings: TrackerSettings | None = None, *, now: Clock = utc_now, access: StaffAccess | None = None
) -> FastAPI:
    settings = settings or TrackerSettings()
    access = access or staff_access(settings)  # first: a tracker that may not start builds nothing
    store = TrackerStore(store_location(settings.data_dir, "tracker"))
    catalog = load_catalog(settings.catalog_path)
    broker = make_broker(settings, client_id="tracker")
    # The tracker emits nothing of its own; the relay carries the runtime's dead letters of poison.
    relay = outbox_relay(store.outbox, settings, client_id="tracker", broker=broker, service=Service.TRACKER)
    consumer = EventConsumer(
        store=store,
        relay=relay,
        group_id=f"{settings.topic_prefix}tracker",
        handlers=counting_closures(projection.HANDLERS, store),
        deps=store,
        gather_ms=250,  # the supervision views may lag the dossiers by a quarter of a second
        lookup_before_handling=False,  # its handlers only compute a write: the commit dedupes
        # The router and the connectors own these topics and dead-letter their poison.
        observes=[settings.topic_prefix + t for t in (DOSSIER_RECEIVED, HANDOFF_OUTCOME)]
        + [requests_topic(agency, settings.topic_prefix) for agency in Agency],
    )
    consumer.subscribe(
        broker,
        tracker_topics(settings.topic_prefix),
        description="Every dossier event, handoff request and outcome, projected for supervision.",
    )
    calendar = default_calendar()
    waiting_alert = timedelta(days=settings.waiting_alert_days)
    views = TrackerViews(store.conn, catalog, calendar=calendar, now=now, waiting_alert=waiting_alert)

    async def refresh_gauges() -> None:
        await refresh_loop(views, settings.gauges_interval_s)

    app = build_service_app(
        "tracker",
        broker,
        description="The supervision view: timelines, holders, deadlines, stuck legs and statistics.",
        kind=Service.TRACKER,
        agencies=list(Agency),
        procedures=[p.code for p in catalog.procedures],
        loops=[relay.run, refresh_gauges, consumer.keep_polling, *anchor_loops(store, settings)],
        kafka=settings,
    )
    app.state.store = store
    # The read API: a viewer's session or bearer token (open when sign-in is off).
    app.include_router(
        build_api(store, catalog, now, calendar=calendar, waiting_alert=waiting_alert),
        dependencies=[Depends(access.api(Role.VIEWER))],
    )
    # The supervision page for the center's staff (HTML), with its replay action.
    page = build_page(
        store, catalog, bootstrap_servers=settings.bootstrap_servers, topic_prefix=settings.topic_prefix,
        now=now, calendar=calendar, waiting_alert=waiting_alert,
        kafka_options=client_security_options(settings),  # the replay reads and writes as the tracker
        access=access,
    )  # fmt: skip
    app.include_router(page)
    access.install(app)  # the session cookie and /auth/login, /auth/callback, /auth/logout
    app.mount(PAGE + "/static", StaticFiles(directory=STATIC), name="supervision-static")
    return app

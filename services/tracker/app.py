"""The tracker service: projects every topic of the bus and serves the supervision API."""

from __future__ import annotations

from datetime import timedelta

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles
from pydantic import Field

from schemas.agencies import Agency
from schemas.catalog import load_catalog
from schemas.topics import DOSSIER_CLOSED, DOSSIER_RECEIVED, DOSSIER_STATUS, HANDOFF_OUTCOME, requests_topic
from schemas.workdays import default_calendar
from services.runtime.consume.consumer import EventConsumer
from services.runtime.observe.metrics import Service
from services.runtime.shell.kafka import make_broker, outbox_relay
from services.runtime.shell.service import build_service_app
from services.runtime.shell.settings import ServiceSettings, client_security_options
from services.runtime.storage.database import store_location
from services.tracker import projection
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


def tracker_topics(prefix: str = "") -> list[str]:
    """Every topic the tracker reads: the dossier topics, the outcomes and every agency's requests."""
    topics = [prefix + t for t in (DOSSIER_RECEIVED, DOSSIER_STATUS, DOSSIER_CLOSED, HANDOFF_OUTCOME)]
    return topics + [requests_topic(agency, prefix) for agency in Agency]


def build_app(settings: TrackerSettings | None = None, *, now: Clock = utc_now) -> FastAPI:
    settings = settings or TrackerSettings()
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
        loops=[relay.run, refresh_gauges, consumer.keep_polling],
        kafka=settings,
    )
    app.state.store = store
    app.include_router(build_api(store, catalog, now, calendar=calendar, waiting_alert=waiting_alert))
    # The supervision page for the center's staff (HTML), with its replay action.
    page = build_page(
        store, catalog, bootstrap_servers=settings.bootstrap_servers, topic_prefix=settings.topic_prefix,
        now=now, calendar=calendar, waiting_alert=waiting_alert,
        kafka_options=client_security_options(settings),  # the replay reads and writes as the tracker
    )  # fmt: skip
    app.include_router(page)
    app.mount(PAGE + "/static", StaticFiles(directory=STATIC), name="supervision-static")
    return app

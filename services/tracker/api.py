"""The tracker's HTTP API, as a router that mounts on any FastAPI app (no Kafka needed to serve it)."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query

from schemas.agencies import Agency
from schemas.catalog import Catalog
from schemas.workdays import WorkingCalendar
from services.tracker.store import TrackerStore
from services.tracker.views import (
    DEFAULT_WAITING_ALERT,
    Clock,
    DossierDetail,
    DossierPage,
    Stats,
    TrackerViews,
    utc_now,
)

MAX_PAGE = 500


def build_api(
    store: TrackerStore,
    catalog: Catalog,
    now: Clock = utc_now,
    *,
    calendar: WorkingCalendar | None = None,
    waiting_alert: timedelta = DEFAULT_WAITING_ALERT,
) -> APIRouter:
    views = TrackerViews(store.conn, catalog, calendar=calendar, now=now, waiting_alert=waiting_alert)
    api = APIRouter(tags=["supervision"])

    # Handlers are async on purpose: they run on the event loop, like the consumer's writes, so the
    # one SQLite connection is never used from two threads at once.
    @api.get("/dossiers/{dossier}", response_model=DossierDetail)
    async def get_dossier(dossier: str) -> DossierDetail:
        """One dossier by id or receipt code: status, holder, deadline, legs and timeline."""
        found = views.dossier(dossier)
        if found is None:
            raise HTTPException(
                status_code=404,
                detail=f"no dossier {dossier!r} is known to the tracker (no event about it was received)",
            )
        return found

    @api.get("/dossiers", response_model=DossierPage)
    async def list_dossiers(
        status: Annotated[int | None, Query(ge=1, le=10, description="National status code.")] = None,
        agency: Annotated[Agency | None, Query(description="A leg of this agency is open.")] = None,
        procedure: Annotated[str | None, Query(description="Procedure code.")] = None,
        overdue: Annotated[bool | None, Query(description="Past the statutory due date.")] = None,
        stuck: Annotated[bool | None, Query(description="A leg is dead-lettered.")] = None,
        waiting_too_long: Annotated[
            bool | None, Query(description="Paused on the citizen for longer than the alert threshold.")
        ] = None,
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
        offset: Annotated[int, Query(ge=0)] = 0,
    ) -> DossierPage:
        """Dossiers matching every filter given, open ones first, the most urgent first."""
        return views.dossiers(
            status=status,
            agency=agency.value if agency is not None else None,
            procedure=procedure,
            overdue=overdue,
            stuck=stuck,
            waiting_too_long=waiting_too_long,
            limit=limit,
            offset=offset,
        )

    @api.get("/stats", response_model=Stats)
    async def stats() -> Stats:
        """Counts by status, by agency and by procedure, and overall totals."""
        return views.stats()

    return api

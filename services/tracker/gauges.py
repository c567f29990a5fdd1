"""The tracker's domain metrics: what operations see of dossiers and deadlines in Prometheus.

- A loop refreshes the gauges from the supervision views every few seconds, as of now (overdue and
  the apology slip depend on the clock, not only on events): ``lienthong_dossiers{procedure,state}``,
  ``lienthong_legs_open{agency,state}``, ``lienthong_apology_slips_due{procedure}`` and
  ``lienthong_on_time_ratio{scope,subject}``. Every catalog procedure and every agency is set on each
  refresh (0 included), so a count that drops to zero is seen as zero.
- ``lienthong_dossiers_closed_total`` counts a closing once: when the projection's transaction that
  first marks the dossier closed commits (a redelivered or repeated ``DossierClosed`` changes nothing).

Labels carry only catalog codes, agencies and the metric module's enums: never a dossier id.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from schemas.agencies import Agency
from schemas.envelope import Event
from schemas.events import DossierClosed
from services.runtime.consumer import Effect, Handler
from services.runtime.metrics import METRICS, DossierState, LegState, Metrics, RatioScope
from services.runtime.records import ReceivedRecord
from services.tracker.store import SqliteTrackerStore
from services.tracker.views import TrackerViews

log = logging.getLogger(__name__)

DEFAULT_INTERVAL_S = 5.0


@dataclass
class Snapshot:
    """The gauges' values at one instant."""

    dossiers: dict[tuple[str, DossierState], int] = field(default_factory=lambda: defaultdict(int))
    legs: dict[tuple[str, LegState], int] = field(default_factory=lambda: defaultdict(int))
    apology_due: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    on_time_ratio: dict[tuple[RatioScope, str], float] = field(default_factory=dict)


def snapshot(views: TrackerViews) -> Snapshot:
    """Counts of the open dossiers and legs and the on-time ratios (same definitions as ``/stats``)."""
    procedures = [p.code for p in views.catalog.procedures]
    shot = Snapshot()
    for known in procedures:
        for each in DossierState:
            shot.dossiers[(known, each)] = 0
        shot.apology_due[known] = 0
    for agency in Agency:
        for leg_state in LegState:
            shot.legs[(agency.value, leg_state)] = 0
    closed: dict[str, int] = defaultdict(int)
    closed_on_time: dict[str, int] = defaultdict(int)
    completed: dict[str, int] = defaultdict(int)
    completed_late: dict[str, int] = defaultdict(int)
    for detail, legs in views.evaluated():
        code = detail.procedure.code if detail.procedure is not None else None
        if code is not None and not detail.closed:
            state: DossierState
            if detail.overdue:
                state = DossierState.OVERDUE
            elif detail.paused:
                state = DossierState.PAUSED
            else:
                state = DossierState.IN_PROGRESS
            shot.dossiers[(code, state)] += 1
            shot.apology_due[code] += detail.apology_due
        if code is not None and detail.closed:
            closed[code] += 1
            closed_on_time[code] += bool(detail.on_time)
        for leg, is_open in legs:
            if leg.stuck:
                shot.legs[(leg.agency, LegState.STUCK)] += 1
            if is_open and leg.state == "requested":
                shot.legs[(leg.agency, LegState.REQUESTED)] += 1
            if is_open and leg.state == "waiting_on_citizen":
                shot.legs[(leg.agency, LegState.WAITING_ON_CITIZEN)] += 1
            if is_open and leg.overdue:
                shot.legs[(leg.agency, LegState.OVERDUE)] += 1
            if leg.state == "completed":
                completed[leg.agency] += 1
                completed_late[leg.agency] += leg.overdue
    for code, count in closed.items():
        shot.on_time_ratio[(RatioScope.PROCEDURE, code)] = closed_on_time[code] / count
    for agency_name, count in completed.items():
        shot.on_time_ratio[(RatioScope.AGENCY, agency_name)] = (count - completed_late[agency_name]) / count
    return shot


def publish(shot: Snapshot, metrics: Metrics = METRICS) -> None:
    """Sets the gauges; a value whose label is not valid (a procedure code outside the catalog's
    format, an unknown agency) is skipped, never exported."""
    for (code, state), count in shot.dossiers.items():
        _set(metrics.set_dossiers, code, state, count)
    for (agency, leg_state), count in shot.legs.items():
        _set(metrics.set_legs_open, agency, leg_state, count)
    for code, count in shot.apology_due.items():
        _set(metrics.set_apology_slips_due, code, count)
    for (scope, subject), ratio in shot.on_time_ratio.items():
        _set(metrics.set_on_time_ratio, scope, subject, ratio)


def _set(update: Callable[..., None], *args: Any) -> None:
    try:
        update(*args)
    except ValueError as error:
        log.debug("metric not exported: %s", error)


async def refresh_loop(views: TrackerViews, interval_s: float = DEFAULT_INTERVAL_S) -> None:
    while True:
        try:
            publish(snapshot(views))
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("refreshing the dossier gauges failed; trying again")
        await asyncio.sleep(interval_s)


def counting_closures(handler: Handler, store: SqliteTrackerStore, metrics: Metrics = METRICS) -> Handler:
    """Wraps the projection's handler: a ``DossierClosed`` that closes a dossier for the first time
    counts in ``lienthong_dossiers_closed_total`` once its transaction committed."""

    async def handle(event: Event, record: ReceivedRecord) -> Effect:
        effect = await handler(event, record)
        inner = effect.write
        if not isinstance(event, DossierClosed) or inner is None:
            return effect
        data = event.data

        def write(conn: sqlite3.Connection) -> None:
            row = conn.execute(
                "SELECT closed FROM dossiers WHERE dossier_id = ?", (str(event.dossier_id),)
            ).fetchone()
            first_time = row is None or not row["closed"]
            inner(conn)
            if first_time:
                store.after_commit(
                    lambda: _set(
                        lambda: metrics.dossier_closed(data.procedure_code, data.result, data.on_time)
                    )
                )

        return Effect(emitted=effect.emitted, write=write)

    return handle

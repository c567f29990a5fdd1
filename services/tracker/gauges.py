"""The tracker's domain metrics: what operations see of dossiers and deadlines in Prometheus.

- A loop refreshes the gauges from the supervision views every few seconds, as of now (overdue and
  the apology slip depend on the clock, not only on events): ``lienthong_dossiers{procedure,state}``,
  ``lienthong_legs_open{agency,state}``, ``lienthong_apology_slips_due{procedure}``,
  ``lienthong_dossiers_waiting_too_long{procedure}`` and ``lienthong_on_time_ratio{scope,subject}``.
  Every catalog procedure and every agency is set on each refresh (0 included), so a count that
  drops to zero is seen as zero. A refresh evaluates the live dossiers and those written to since the
  last one (closed dossiers count from their kept tallies, see :mod:`services.tracker.tally`), a
  batch at a time, so the consumer is not held up.
- ``lienthong_dossiers_closed_total`` counts a closing once: when the projection's transaction that
  first marks the dossier closed commits (a redelivered or repeated ``DossierClosed`` changes nothing).

Labels carry only catalog codes, agencies and the metric module's enums: never a dossier id.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from schemas.agencies import Agency
from schemas.events import DossierClosed
from services.runtime.consume.consumer import Context, Effect, Handlers
from services.runtime.observe.metrics import METRICS, LegState, Metrics, OpenDossierState, RatioScope
from services.runtime.storage.database import Connection
from services.tracker.store import TrackerStore
from services.tracker.tally import Tally
from services.tracker.views import TrackerViews

log = logging.getLogger(__name__)

DEFAULT_INTERVAL_S = 5.0
# Dossiers evaluated between two yields to the event loop (a few tens of milliseconds).
BATCH = 200

S = TypeVar("S", OpenDossierState, LegState)


@dataclass
class Snapshot:
    """The gauges' values at one instant."""

    dossiers: dict[tuple[str, OpenDossierState], int] = field(default_factory=lambda: defaultdict(int))
    legs: dict[tuple[str, LegState], int] = field(default_factory=lambda: defaultdict(int))
    apology_due: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    waiting_too_long: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    on_time_ratio: dict[tuple[RatioScope, str], float] = field(default_factory=dict)


def snapshot(views: TrackerViews) -> Snapshot:
    """Counts of the open dossiers and legs and the on-time ratios (same definitions as ``/stats``)."""
    count = views.start_count()
    count.step()
    return snapshot_of(views, count.totals)


async def refresh(views: TrackerViews, batch: int = BATCH) -> Snapshot:
    """:func:`snapshot`, a batch of dossiers at a time: the consumer and the API run in between."""
    while not views.catch_up(batch):
        await _let_others_run()
    count = views.start_count()
    while not count.step(batch):
        await _let_others_run()
    return snapshot_of(views, count.totals)


async def _let_others_run() -> None:
    await asyncio.sleep(0)


def zeroed_snapshot(views: TrackerViews) -> Snapshot:
    """Every series of every catalog procedure and agency at zero: a state nobody is in still shows."""
    shot = Snapshot()
    for known in (p.code for p in views.catalog.procedures):
        for each in OpenDossierState:
            shot.dossiers[(known, each)] = 0
        shot.apology_due[known] = 0
        shot.waiting_too_long[known] = 0
    for agency in Agency:
        for leg_state in LegState:
            shot.legs[(agency.value, leg_state)] = 0
    return shot


def snapshot_of(views: TrackerViews, counts: Tally) -> Snapshot:
    """The gauges' values from the dossiers' tallies summed (the measures of ``_Dossier.tally``)."""
    shot = zeroed_snapshot(views)
    procedures: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    agencies: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for (measure, subject), n in counts.items():
        scope, _, name = measure.partition(".")
        if scope == "procedure":
            procedures[subject][name] = n
        elif scope == "agency":
            agencies[subject][name] = n
    for code, c in procedures.items():
        overdue, paused = c["overdue"], c["paused_not_overdue"]
        states = {
            OpenDossierState.OVERDUE: overdue,
            OpenDossierState.PAUSED: paused,
            OpenDossierState.IN_PROGRESS: c["in_progress"] - overdue - paused,
        }
        _count(shot.dossiers, code, states)
        if c["in_progress"]:
            shot.apology_due[code] = c["apology_due"]
            shot.waiting_too_long[code] = c["waiting_too_long"]
        if c["closed"]:
            shot.on_time_ratio[(RatioScope.PROCEDURE, code)] = c["on_time"] / c["closed"]
    for agency_name, c in agencies.items():
        legs = {
            LegState.STUCK: c["stuck"],
            LegState.REQUESTED: c["requested"],
            LegState.WAITING_ON_CITIZEN: c["waiting_on_citizen"],
            LegState.OVERDUE: c["overdue"],
        }
        _count(shot.legs, agency_name, legs)
        if c["completed"]:
            ratio = (c["completed"] - c["completed_late"]) / c["completed"]
            shot.on_time_ratio[(RatioScope.AGENCY, agency_name)] = ratio
    return shot


def _count(gauge: dict[tuple[str, S], int], subject: str, values: dict[S, int]) -> None:
    # A label set outside the catalog's or the agencies' is set only when something counts in it.
    for state, n in values.items():
        if n or (subject, state) in gauge:
            gauge[(subject, state)] = n


def publish(shot: Snapshot, metrics: Metrics = METRICS) -> None:
    """Sets the gauges; a value whose label is not valid (a procedure code outside the catalog's
    format, an unknown agency) is skipped, never exported."""
    for (code, state), count in shot.dossiers.items():
        _set(metrics.set_dossiers, code, state, count)
    for (agency, leg_state), count in shot.legs.items():
        _set(metrics.set_legs_open, agency, leg_state, count)
    for code, count in shot.apology_due.items():
        _set(metrics.set_apology_slips_due, code, count)
    for code, count in shot.waiting_too_long.items():
        _set(metrics.set_waiting_too_long, code, count)
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
            publish(await refresh(views))
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("refreshing the dossier gauges failed; trying again")
        await asyncio.sleep(interval_s)


def counting_closures(handlers: Handlers, store: TrackerStore, metrics: Metrics = METRICS) -> Handlers:
    """The tracker's handlers, the one of ``DossierClosed`` wrapped: a closing that closes a dossier for
    the first time counts in ``lienthong_dossiers_closed_total`` once its transaction committed."""
    on_closed = handlers[DossierClosed]

    async def handle(event: DossierClosed, ctx: Context[Any]) -> Effect:
        effect = await on_closed(event, ctx)
        inner = effect.write
        if inner is None:
            return effect
        data = event.data

        def write(conn: Connection) -> None:
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

    return {**handlers, DossierClosed: handle}

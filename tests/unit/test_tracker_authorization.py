"""The supervision view believes an outcome only from the connector of the leg's agency: a land-signed
"completed" for a tax leg is neither projected (the page must not show the tax paid) nor written to
the hash-chained handoff log. The router, which owns the outcome topic, dead-letters it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from schemas.agencies import AGENCY_ACTIONS, Agency
from schemas.events import HandoffReported, HandoffRequested
from services.tracker import audit
from tests.factories import outcome_for
from tests.unit.test_tracker import Tracker, after, land_transfer_story, local


@pytest.fixture
async def tracker(tmp_path: Path) -> AsyncIterator[Tracker]:
    tracker = Tracker(tmp_path / "tracker.db")
    await tracker.start()
    yield tracker
    await tracker.stop()


def reported_by(outcome: HandoffReported, producer: str, agency: Agency | None = None) -> HandoffReported:
    """``outcome`` as ``producer`` would sign it; when ``agency`` is given, the outcome claims the leg
    is that agency's (with one of its actions, so that it stays a valid event)."""
    data = outcome.data
    if agency is not None:
        data = data.model_copy(update={"agency": agency, "action": min(AGENCY_ACTIONS[agency])})
    return outcome.model_copy(update={"producer": producer, "data": data})


def tax_leg(detail: dict[str, Any]) -> dict[str, Any]:
    return next(leg for leg in detail["legs"] if leg["step_id"] == "assess_obligations")


@pytest.mark.parametrize(
    ("producer", "claimed"),
    [("connector.land", None), ("connector.land", Agency.LAND), ("connector.tax", Agency.LAND)],
)
async def test_an_outcome_not_from_the_legs_agency_is_neither_projected_nor_logged(
    tracker: Tracker, producer: str, claimed: Agency | None
) -> None:
    received, events = land_transfer_story()
    tax = events[4]
    assert isinstance(tax, HandoffRequested)
    await tracker.feed(*events[:8])  # up to the tax notice: the leg waits on the citizen's payment
    logged_before = audit.entries(tracker.store.conn, str(received.dossier_id))

    forged = reported_by(outcome_for(tax, "completed", after=after(tax, local(12, 2, 11))), producer, claimed)
    await tracker.feed(forged)

    detail = await tracker.dossier(received)
    leg = tax_leg(detail)
    assert (leg["agency"], leg["state"]) == ("tax", "waiting_on_citizen"), leg
    assert leg["settled_at"] is None
    assert str(forged.event_id) not in {entry["event_id"] for entry in detail["timeline"]}
    assert str(forged.event_id) not in {e.event_id for e in audit.entries(tracker.store.conn)}
    assert audit.entries(tracker.store.conn, str(received.dossier_id)) == logged_before
    assert audit.verify(tracker.store.conn).ok

    # The tax authority's own payment confirmation still settles the leg.
    paid = events[8]
    await tracker.feed(paid)
    leg = tax_leg(await tracker.dossier(received))
    assert leg["state"] == "completed" and leg["settled_at"] == "2026-12-04T03:00:00Z"
    assert str(paid.event_id) in {e.event_id for e in audit.entries(tracker.store.conn)}


async def test_an_outcome_arriving_before_its_request_cannot_claim_the_leg_for_another_agency(
    tracker: Tracker,
) -> None:
    """An outcome first creates its leg from what it says; the router's request, when it comes, is
    what names the leg's agency, and a foreign claim made before it does not stand."""
    received, events = land_transfer_story()
    tax, paid = events[4], events[8]
    assert isinstance(tax, HandoffRequested)
    # Consistent with itself (land's connector about land), and first: nothing names the leg's agency yet.
    forged = reported_by(
        outcome_for(tax, "completed", after=after(tax, local(12, 1, 11))), "connector.land", Agency.LAND
    )
    await tracker.feed(received, forged, tax)
    leg = tax_leg(await tracker.dossier(received))
    assert (leg["agency"], leg["state"], leg["settled_at"]) == ("tax", "requested", None), leg

    await tracker.feed(paid)
    leg = tax_leg(await tracker.dossier(received))
    assert (leg["agency"], leg["state"]) == ("tax", "completed"), leg

"""Agencies speak only for themselves: the router applies an outcome only when the connector of the
leg's agency reported it about that agency. The land connector sees land-transfer dossiers and can
derive the tax leg's handoff id; a "completed" tax outcome it signs must not skip the payment."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from uuid import UUID

import pytest

from schemas.agencies import AGENCY_ACTIONS, Agency
from schemas.events import HandoffReported, HandoffRequested, OutcomeKind
from schemas.topics import HANDOFF_OUTCOME
from services.router.routing import handoff_id_for
from services.router.state import DossierState, LegStatus
from services.runtime.failures import dead_letter_records
from tests.factories import dossier_received, outcome_for
from tests.unit.test_router import RouterHarness, requests

LAND_TRANSFER = "9.900001"


@pytest.fixture
async def router(tmp_path: Path) -> AsyncIterator[RouterHarness]:
    harness = RouterHarness(tmp_path / "router.db")
    await harness.service.start()
    yield harness
    await harness.service.stop()


def reported_by(outcome: HandoffReported, producer: str, agency: Agency | None = None) -> HandoffReported:
    """``outcome`` as ``producer`` would sign it; when ``agency`` is given, the outcome claims the leg
    is that agency's (with one of its actions, so that it stays a valid event)."""
    data = outcome.data
    if agency is not None:
        data = data.model_copy(update={"agency": agency, "action": min(AGENCY_ACTIONS[agency])})
    return outcome.model_copy(update={"producer": producer, "data": data})


async def waiting_for_tax(router: RouterHarness) -> tuple[str, HandoffRequested]:
    """A land transfer whose tax leg is waiting on the citizen's payment: its id and the tax request."""
    received = dossier_received(LAND_TRANSFER)
    check = requests(await router.feed(received))["check_dossier"]
    tax = requests(await router.feed(outcome_for(check, "completed")))["assess_obligations"]
    await router.feed(outcome_for(tax, "waiting_on_citizen", result={"notice_no": "TB-9"}))
    return str(received.dossier_id), tax


def state_of(router: RouterHarness, dossier_id: str) -> DossierState:
    state = router.store.load(dossier_id)
    assert state is not None
    return state


@pytest.mark.parametrize(
    ("producer", "claimed"),
    [
        ("connector.land", None),  # the land connector's key, the tax agency named in the outcome
        ("connector.land", Agency.LAND),  # the land connector's key, and it says the leg is land's
        ("connector.tax", Agency.LAND),  # the tax connector naming another agency than its own
    ],
)
async def test_an_outcome_not_from_the_legs_agency_is_dead_lettered_and_changes_nothing(
    router: RouterHarness, producer: str, claimed: Agency | None
) -> None:
    dossier_id, tax = await waiting_for_tax(router)
    before = state_of(router, dossier_id)

    forged = reported_by(outcome_for(tax, "completed", result={"paid": True}), producer, claimed)
    published = await router.service.feed(forged)
    (letter,) = published
    assert letter.topic == HANDOFF_OUTCOME + ".dlq"
    assert letter.headers[dead_letter_records.ERROR_CLASS] == "authorization"
    assert "tax" in letter.headers[dead_letter_records.EXCEPTION_MESSAGE]
    after = state_of(router, dossier_id)
    assert after == before, "the dossier is unaffected"
    assert after.legs["assess_obligations"].status is LegStatus.WAITING_ON_CITIZEN

    # The tax authority's own outcome still completes the leg and moves the dossier on.
    paid = requests(await router.feed(outcome_for(tax, OutcomeKind.COMPLETED)))
    assert list(paid) == ["register_transfer"]
    assert state_of(router, dossier_id).legs["assess_obligations"].status is LegStatus.COMPLETED


async def test_an_outcome_for_a_leg_not_requested_yet_is_checked_against_its_step(
    router: RouterHarness,
) -> None:
    """The tax leg's handoff id is derivable before the router requests it: a land-signed outcome for
    it is refused then too, and the route goes on as if it had never come."""
    received = dossier_received(LAND_TRANSFER)
    check = requests(await router.feed(received))["check_dossier"]
    early = outcome_for(check, "completed")
    early_data = early.data.model_copy(
        update={
            "handoff_id": UUID(handoff_id_for(str(received.dossier_id), "assess_obligations")),
            "step_id": "assess_obligations",
            "agency": Agency.TAX,
            "action": "assess_transfer_obligations",
        }
    )
    (letter,) = await router.letters(early.model_copy(update={"data": early_data}))
    assert letter.headers[dead_letter_records.ERROR_CLASS] == "authorization"
    assert "assess_obligations" not in state_of(router, str(received.dossier_id)).legs

    tax = requests(await router.feed(outcome_for(check, "completed")))["assess_obligations"]
    assert tax.data.agency == "tax"

"""The router walks routes: sequential legs, parallel branches that join, rejections, payment pauses,
duplicates and a restart in the middle of a route — its real wiring, on FastStream's in-memory broker."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from uuid import uuid4

import pytest
import yaml
from fastapi import FastAPI

from schemas.agencies import Agency
from schemas.catalog import Catalog, load_catalog
from schemas.envelope import Event
from schemas.events import DossierClosed, DossierStatusChanged, HandoffRequested
from schemas.status import NationalStatus
from schemas.topics import DOSSIER_CLOSED, DOSSIER_RECEIVED, DOSSIER_STATUS, HANDOFF_OUTCOME, requests_topic
from services.router.app import RouterSettings, build_app
from services.router.store import RouterStore
from services.runtime.failures import dead_letter_records
from services.runtime.storage.outbox import OutgoingRecord
from tests.factories import dossier_received, of_type, outcome_for
from tests.in_memory import InMemoryService, events_of

LAND_TRANSFER, BIRTH, MARRIAGE = "9.900001", "9.900003", "9.900005"


OUTPUTS = [requests_topic(agency) for agency in Agency] + [
    DOSSIER_STATUS,
    DOSSIER_CLOSED,
    DOSSIER_RECEIVED + ".dlq",
    HANDOFF_OUTCOME + ".dlq",
]


class RouterHarness:
    """The router's app in memory (its consumer, handlers, store and relay on FastStream's test broker);
    what it emits is read back from what it published."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.catalog_path: Path | None = None
        self.service = InMemoryService(self._build, OUTPUTS)

    def _build(self) -> FastAPI:  # anew at each restart, with the catalog of the moment
        settings = RouterSettings(
            data_dir=self.path.parent, bootstrap_servers="127.0.0.1:1", catalog_path=self.catalog_path
        )
        return build_app(settings)

    @property
    def store(self) -> RouterStore:
        store: RouterStore = self.service.store
        return store

    async def restart(self, catalog: Catalog | None = None) -> None:
        """A new process on the same store (with another catalog, when given)."""
        if catalog is not None:
            self.catalog_path = self.path.with_name("procedures.yaml")
            self.catalog_path.write_text(yaml.safe_dump(catalog.model_dump(mode="json")), encoding="utf-8")
        await self.service.restart()

    async def feed(self, event: Event) -> list[Event]:
        return events_of(await self.service.feed(event))

    async def letters(self, event: Event) -> list[OutgoingRecord]:
        """The dead letters ``event`` made."""
        return [r for r in await self.service.feed(event) if r.topic.endswith(".dlq")]


@pytest.fixture
async def router(tmp_path: Path) -> AsyncIterator[RouterHarness]:
    harness = RouterHarness(tmp_path / "router.db")
    await harness.service.start()
    yield harness
    await harness.service.stop()


def requests(events: list[Event]) -> dict[str, HandoffRequested]:
    return {e.data.step_id: e for e in of_type(events, HandoffRequested)}


async def test_land_transfer_walks_land_then_tax_with_payment_pause_then_land(router: RouterHarness) -> None:
    received = dossier_received(LAND_TRANSFER)
    emitted = await router.feed(received)
    first = requests(emitted)
    assert list(first) == ["check_dossier"] and first["check_dossier"].data.agency == "land"
    assert of_type(emitted, DossierStatusChanged)[0].data.status is NationalStatus.IN_PROGRESS

    slip = {"cadastral_slip_no": "PCT-1", "assessed_value_vnd": 3_500_000_000}
    emitted = await router.feed(outcome_for(first["check_dossier"], "completed", result=slip))
    tax = requests(emitted)["assess_obligations"]
    assert tax.data.agency == "tax" and tax.data.inputs == {"check_dossier": slip}

    notice = {"notice_no": "TB-9", "total_vnd": 87_500_000}
    emitted = await router.feed(outcome_for(tax, "waiting_on_citizen", reason="thuế chưa nộp", result=notice))
    paused = of_type(emitted, DossierStatusChanged)[0]
    assert paused.data.status is NationalStatus.PAYMENT_REQUIRED and paused.data.clock_paused

    emitted = await router.feed(outcome_for(tax, "completed", after=timedelta(days=2), result=notice))
    register = requests(emitted)["register_transfer"]
    assert register.data.agency == "land" and set(register.data.inputs) == {
        "check_dossier",
        "assess_obligations",
    }
    assert of_type(emitted, DossierStatusChanged)[-1].data.status is NationalStatus.IN_PROGRESS

    emitted = await router.feed(outcome_for(register, "completed", result={"certificate_no": "GCN-1"}))
    closed = of_type(emitted, DossierClosed)[0]
    assert closed.data.result == "completed" and not closed.data.partial and closed.data.on_time
    state = router.store.load(str(received.dossier_id))
    assert state is not None and len(state.pauses) == 1 and state.pauses[0].end is not None


async def test_parallel_branches_start_together_and_join(router: RouterHarness) -> None:
    emitted = await router.feed(dossier_received(BIRTH))
    birth = requests(emitted)["register_birth"]
    emitted = await router.feed(outcome_for(birth, "completed", result={"so_dang_ky": "KS-1"}))
    branches = requests(emitted)
    assert set(branches) == {"register_residence", "issue_health_card"}
    assert {r.data.agency for r in branches.values()} == {"residence", "social_insurance"}

    emitted = await router.feed(outcome_for(branches["register_residence"], "completed"))
    assert of_type(emitted, DossierClosed) == [], "the join waits for the other branch"
    emitted = await router.feed(
        outcome_for(branches["issue_health_card"], "completed", after=timedelta(hours=1))
    )
    closed = of_type(emitted, DossierClosed)
    assert len(closed) == 1 and not closed[0].data.partial


async def test_optional_branch_failing_completes_the_dossier_partially(router: RouterHarness) -> None:
    birth = requests(await router.feed(dossier_received(BIRTH)))["register_birth"]
    branches = requests(await router.feed(outcome_for(birth, "completed")))
    await router.feed(
        outcome_for(
            branches["issue_health_card"],
            "dead_lettered",
            reason="social_insurance down",
            error_class="transient",
        )
    )
    emitted = await router.feed(outcome_for(branches["register_residence"], "completed"))
    closed = of_type(emitted, DossierClosed)[0]
    assert closed.data.result == "completed" and closed.data.partial
    assert "issue_health_card" in (closed.data.reason or "")


async def test_rejection_returns_the_dossier_with_the_agency_reason(router: RouterHarness) -> None:
    first = requests(await router.feed(dossier_received(LAND_TRANSFER)))["check_dossier"]
    emitted = await router.feed(outcome_for(first, "rejected", reason="Thửa đất TD-99-999 không tồn tại"))
    closed = of_type(emitted, DossierClosed)[0]
    assert closed.data.result == "returned" and closed.data.final_status is NationalStatus.STOPPED
    assert "TD-99-999 không tồn tại" in (closed.data.reason or "")
    assert of_type(emitted, HandoffRequested) == []


async def test_duplicate_and_stale_outcomes_change_nothing(router: RouterHarness) -> None:
    first = requests(await router.feed(dossier_received(MARRIAGE)))["register_marriage"]
    done = outcome_for(first, "completed")
    assert of_type(await router.feed(done), DossierClosed)
    assert await router.feed(done) == []  # the same event again
    late_copy = outcome_for(first, "completed", after=timedelta(hours=3))  # a redelivered agency answer
    assert await router.feed(late_copy) == []


async def test_restart_in_the_middle_of_a_route_resumes_where_it_stopped(router: RouterHarness) -> None:
    received = dossier_received(LAND_TRANSFER)
    first = requests(await router.feed(received))["check_dossier"]
    tax = requests(await router.feed(outcome_for(first, "completed")))["assess_obligations"]

    await router.restart()  # a new process on the same store

    assert await router.feed(received) == [], "a redelivered DossierReceived does not start the route again"
    emitted = await router.feed(outcome_for(tax, "completed"))
    assert list(requests(emitted)) == ["register_transfer"]
    state = router.store.load(str(received.dossier_id))
    assert state is not None and set(state.legs) == {
        "check_dossier",
        "assess_obligations",
        "register_transfer",
    }


async def test_outcome_for_unknown_dossier_is_dead_lettered_with_its_reason(router: RouterHarness) -> None:
    """Before, the router answered nothing and the outcome vanished."""
    register = requests(await router.feed(dossier_received(MARRIAGE)))["register_marriage"]
    orphan = outcome_for(register, "completed").model_copy(update={"dossier_id": uuid4()})
    (letter,) = await router.letters(orphan)
    assert letter.topic == HANDOFF_OUTCOME + ".dlq"
    assert letter.headers[dead_letter_records.ERROR_CLASS] == "poison"
    assert "is being routed" in letter.headers[dead_letter_records.EXCEPTION_MESSAGE]


async def test_outcome_of_a_step_the_catalog_no_longer_has_is_dead_lettered(router: RouterHarness) -> None:
    received = dossier_received(MARRIAGE)
    register = requests(await router.feed(received))["register_marriage"]
    catalog = load_catalog()
    marriage = catalog.procedure(MARRIAGE)
    renamed = marriage.model_copy(
        update={"route": [marriage.route[0].model_copy(update={"id": "register_union"})]}
    )
    changed = catalog.model_copy(
        update={"procedures": [renamed if p.code == MARRIAGE else p for p in catalog.procedures]}
    )
    await router.restart(catalog=changed)
    (letter,) = await router.letters(outcome_for(register, "completed"))
    assert letter.headers[dead_letter_records.ERROR_CLASS] == "internal"
    assert "no step 'register_marriage'" in letter.headers[dead_letter_records.EXCEPTION_MESSAGE]


async def test_stored_state_that_no_longer_validates_is_dead_lettered_with_its_reason(
    router: RouterHarness,
) -> None:
    received = dossier_received(MARRIAGE)
    register = requests(await router.feed(received))["register_marriage"]
    router.store.conn.execute(
        "UPDATE dossiers SET state = json_set(state, '$.status', 99) WHERE dossier_id = ?",
        (str(received.dossier_id),),
    )
    (letter,) = await router.letters(outcome_for(register, "completed"))
    assert letter.headers[dead_letter_records.ERROR_CLASS] == "internal"
    assert re.search(
        r"stored state of dossier .* is invalid: .*status",
        letter.headers[dead_letter_records.EXCEPTION_MESSAGE],
    )

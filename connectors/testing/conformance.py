"""The conformance kit: the scenarios every connector must pass, adopted with one subclass.

A connector package proves itself by binding the suite to its connector and its sandbox::

    class TestLandConformance(ConnectorConformance):
        cases = {"check_transfer": ConformanceCase(request=check_request, effects={"jobs": 1}), ...}
        rejections = {"transferor_is_not_the_owner": RejectionCase(request=..., code="NOT_OWNER")}

        def connector_factory(self, env: KitEnvironment) -> Connector:
            settings = LandSettings(url=env.base_url, timeout_s=env.timeout_s)
            return LandConnector(settings, transport=env.transport)

        def sandbox_factory(self) -> FastAPI:
            return create_app(":memory:")

Every test gets a fresh sandbox app, called in process through :class:`DeadlineASGITransport` (which
enforces the connector's HTTP timeout as a socket would), and a started connector. The scenarios:

==========================================  =====================================================
scenario                                    what must hold
==========================================  =====================================================
declares its agency and actions             every action has a case; a known agency serves them
happy path, per action                      the result settles to ``Completed`` (polling a
                                            ``Pending`` or ``WaitingOnCitizen`` one, the citizen
                                            acting when asked); the sandbox recorded ``effects``;
                                            no name or citizen id of the form is in the result
redelivery, per action                      the same request twice → one effect, the same result
concurrent duplicates, per action           two deliveries at once → one effect
business rejection, per ``rejections``      ``AgencyRejected`` raised or ``Rejected`` returned
                                            (from ``handle`` or a later ``poll``) with a reason
5xx, 429, down, per action                  ``AgencyUnavailable``; once the agency is back the
                                            same request acts exactly once
timeout, per action                         an agency slower than the timeout → ``AgencyUnavailable``
                                            within ``timeout_s`` + a margin (a slow agency never
                                            holds the connector longer than configured)
slow but in time, per action                an agency slower than usual but within the timeout
                                            still completes
malformed reply, per action                 ``AgencyProtocolError`` naming the agency, never
                                            another exception
unknown action; a form that does not fit    ``AgencyProtocolError``, no effect
pending, per ``answers_later`` case         polling before completion → the same pending result;
                                            polling through an outage → ``AgencyUnavailable`` then
                                            completion; polling twice after completion → the same
                                            final result, no second effect
==========================================  =====================================================
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import json
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar
from uuid import uuid4

import httpx
import pytest
import pytest_asyncio
from fastapi import FastAPI

from connectors.base import (
    FINAL_RESULTS,
    Completed,
    Connector,
    HandoffRequest,
    HandoffResult,
    Pending,
    Rejected,
    WaitingOnCitizen,
)
from connectors.errors import AgencyProtocolError, AgencyRejected, AgencyUnavailable
from connectors.sandbox_kit.admin import ADMIN_TOKEN_ENV, admin_headers
from connectors.testing.samples import SampleForms
from connectors.testing.transport import DeadlineASGITransport
from schemas.agencies import AGENCY_ACTIONS, Agency
from schemas.workdays import vn_today

RequestFactory = Callable[["Kit"], Awaitable[HandoffRequest]]
CitizenStep = Callable[["Kit", WaitingOnCitizen], Awaitable[None]]

# Faults the sandbox kit injects that a connector must classify as transient (AgencyUnavailable).
TRANSIENT_FAULTS: Mapping[str, Mapping[str, Any]] = {
    "503": {"failure_rate": 1.0, "error_status": 503},
    "500": {"failure_rate": 1.0, "error_status": 500},
    "429": {"failure_rate": 1.0, "error_status": 429},
    "down_for_maintenance": {"down_for_s": 60},
}
_dossier_numbers = itertools.count(1)


@dataclass(frozen=True)
class ConformanceCase:
    """How to exercise one action.

    ``request`` builds a fresh, valid request (new people, a new handoff id) each time it is called;
    it may prepare the sandbox first (e.g. register the parcel a transfer needs). ``effects`` is how
    many rows one handling adds to each sandbox table (``GET /_sandbox/records``). ``answers_later``
    says ``handle`` answers ``Pending`` or ``WaitingOnCitizen`` first (then the sandbox must keep
    the work unfinished for at least ~0.2 s); ``citizen_acts`` does what the citizen does when the
    agency waits for them (pay the notice).
    """

    request: RequestFactory
    effects: Mapping[str, int]
    result_keys: frozenset[str] | None = None
    answers_later: bool = False
    citizen_acts: CitizenStep | None = None


@dataclass(frozen=True)
class RejectionCase:
    """A request the agency refuses for a business reason, named after the edge it tests."""

    request: RequestFactory
    code: str | None = None  # checked when the connector raises AgencyRejected with a code
    reason_contains: str | None = None


@dataclass(frozen=True)
class KitEnvironment:
    """What a connector factory must honour: where the sandbox answers, and the HTTP timeout."""

    base_url: str
    transport: httpx.AsyncBaseTransport
    timeout_s: float


@dataclass
class Kit:
    """One test's connector and sandbox, with the helpers the cases and scenarios use."""

    connector: Connector
    env: KitEnvironment
    app: FastAPI
    admin: httpx.AsyncClient  # the sandbox's own endpoints (records, faults; admin token), never faulted
    samples: SampleForms = field(default_factory=lambda: SampleForms(seed=2026))  # the golden forms, made new
    settle_within_s: float = 10.0
    poll_interval_s: float = 0.05

    @property
    def agency(self) -> str:
        return agency_id(self.connector)

    def handoff(
        self,
        action: str,
        form_kind: str,
        form: Mapping[str, Any],
        *,
        inputs: Mapping[str, Mapping[str, Any]] | None = None,
        procedure_code: str = "9.999999",
    ) -> HandoffRequest:
        """A request as the connector host builds it from a ``HandoffRequested`` event."""
        number = next(_dossier_numbers)
        return HandoffRequest(
            handoff_id=str(uuid4()),
            dossier_id=str(uuid4()),
            dossier_code=f"LT-{vn_today():%y%m%d}-{number % 1_000_000:06d}",
            procedure_code=procedure_code,
            step_id=f"step_{action}",
            action=action,
            form_kind=form_kind,
            form=json.loads(json.dumps(dict(form), default=str)),
            inputs={k: dict(v) for k, v in (inputs or {}).items()},
        )

    async def counts(self) -> dict[str, int]:
        answer = await self.admin.get("/_sandbox/records")
        assert answer.status_code == 200, answer.text
        counts: dict[str, int] = answer.json()["counts"]
        return counts

    async def records(self, table: str) -> list[dict[str, Any]]:
        answer = await self.admin.get(f"/_sandbox/records/{table}")
        assert answer.status_code == 200, answer.text
        rows: list[dict[str, Any]] = answer.json()["records"]
        return rows

    async def faults(self, **change: Any) -> None:
        answer = await self.admin.put("/_sandbox/faults", json=change)
        assert answer.status_code == 200, answer.text

    async def clear_faults(self) -> None:
        answer = await self.admin.delete("/_sandbox/faults")
        assert answer.status_code == 200, answer.text

    async def settle(self, result: HandoffResult, citizen_acts: CitizenStep | None = None) -> HandoffResult:
        """Poll a Pending or WaitingOnCitizen result until it is final, within ``settle_within_s``."""
        deadline = time.monotonic() + self.settle_within_s
        acted = False
        while not isinstance(result, FINAL_RESULTS):
            if isinstance(result, WaitingOnCitizen) and not acted:
                if citizen_acts is None:
                    pytest.fail(f"{self.agency} answered WaitingOnCitizen but the case has no citizen_acts")
                await citizen_acts(self, result)
                acted = True
            if time.monotonic() >= deadline:
                pytest.fail(f"{self.agency}: {result!r} did not settle within {self.settle_within_s} s")
            await asyncio.sleep(self.poll_interval_s)
            result = await self.connector.poll(result.poll_token)
        return result


def agency_id(connector: Connector | type[Connector]) -> str:
    """The agency id, whether a ``schemas.agencies.Agency`` or (for a new agency) a plain string."""
    agency: Any = connector.agency
    return str(getattr(agency, "value", agency))


def people_in(form: Any) -> list[tuple[str, str]]:
    """(citizen id, full name) of every person in a form."""
    found: list[tuple[str, str]] = []
    if isinstance(form, Mapping):
        if isinstance(form.get("citizen_id"), str) and isinstance(form.get("full_name"), str):
            found.append((form["citizen_id"], form["full_name"]))
        for value in form.values():
            found += people_in(value)
    elif isinstance(form, list):
        for value in form:
            found += people_in(value)
    return found


def _diff(before: Mapping[str, int], after: Mapping[str, int], tables: Mapping[str, int]) -> dict[str, int]:
    return {table: after.get(table, 0) - before.get(table, 0) for table in tables}


class ConnectorConformance:
    """The suite; subclass it as ``Test<Agency>Conformance`` and set the four things it needs."""

    cases: ClassVar[Mapping[str, ConformanceCase]] = {}
    rejections: ClassVar[Mapping[str, RejectionCase]] = {}
    timeout_s: ClassVar[float] = 0.5
    settle_within_s: ClassVar[float] = 10.0
    base_url: ClassVar[str] = "http://sandbox.test"

    def connector_factory(self, env: KitEnvironment) -> Connector:
        """The connector under test, calling ``env.base_url`` through ``env.transport``."""
        raise NotImplementedError("set connector_factory on the conformance subclass")

    def sandbox_factory(self) -> FastAPI:
        """A fresh sandbox app of the agency (in-memory storage)."""
        raise NotImplementedError("set sandbox_factory on the conformance subclass")

    def pytest_generate_tests(self, metafunc: pytest.Metafunc) -> None:
        later = sorted(a for a, c in self.cases.items() if c.answers_later)
        for name, values in (
            ("action", sorted(self.cases)),
            ("rejection", sorted(self.rejections)),
            ("later_action", later),
            ("fault", sorted(TRANSIENT_FAULTS)),
        ):
            if name in metafunc.fixturenames:
                metafunc.parametrize(name, values)

    @pytest_asyncio.fixture
    async def kit(self, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Kit]:
        # The sandbox's fault endpoints answer only its admin token: one drawn for this test.
        admin_token = secrets.token_urlsafe(16)
        monkeypatch.setenv(ADMIN_TOKEN_ENV, admin_token)
        app = self.sandbox_factory()
        env = KitEnvironment(self.base_url, DeadlineASGITransport(app=app), self.timeout_s)
        connector = self.connector_factory(env)
        await connector.start()
        try:
            async with httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app),
                base_url=self.base_url,
                headers=admin_headers(admin_token),
            ) as admin:
                yield Kit(connector, env, app, admin, settle_within_s=self.settle_within_s)
        finally:
            await connector.stop()

    # --- helpers ---------------------------------------------------------------------------

    async def _complete(self, kit: Kit, action: str, request: HandoffRequest) -> Completed:
        case = self.cases[action]
        result = await kit.settle(await kit.connector.handle(request), case.citizen_acts)
        assert isinstance(result, Completed), f"{action} settled as {result!r}, not Completed"
        return result

    async def _assert_effects_once(self, kit: Kit, action: str, before: Mapping[str, int]) -> None:
        effects = self.cases[action].effects
        assert _diff(before, await kit.counts(), effects) == dict(effects), (
            f"{action}: the sandbox should have recorded {dict(effects)} exactly once"
        )

    # --- the scenarios ---------------------------------------------------------------------

    def test_declares_its_agency_and_actions(self) -> None:
        connector = type(self.connector_factory(KitEnvironment(self.base_url, httpx.MockTransport(_no), 1.0)))
        agency = agency_id(connector)
        assert agency and agency == agency.lower(), f"agency id {agency!r} must be a lower-case name"
        assert connector.actions, "a connector serves at least one action"
        missing, unknown = set(connector.actions) - set(self.cases), set(self.cases) - set(connector.actions)
        assert not missing and not unknown, (
            f"every action needs a ConformanceCase: missing {sorted(missing)}, unknown {sorted(unknown)}"
        )
        if agency in Agency._value2member_map_:
            served = AGENCY_ACTIONS[Agency(agency)]
            assert connector.actions <= served, (
                f"actions {sorted(connector.actions - served)} are not in schemas.agencies.AGENCY_ACTIONS"
            )

    async def test_happy_path(self, kit: Kit, action: str) -> None:
        case = self.cases[action]
        request = await case.request(kit)
        before = await kit.counts()
        first = await kit.connector.handle(request)
        if case.answers_later:
            assert isinstance(first, Pending | WaitingOnCitizen), f"{action} should answer later: {first!r}"
        else:
            assert isinstance(first, FINAL_RESULTS), f"{action} should answer at once: {first!r}"
        done = await kit.settle(first, case.citizen_acts)
        assert isinstance(done, Completed), f"{action} settled as {done!r}, not Completed"
        if case.result_keys is not None:
            assert set(done.result) == set(case.result_keys)
        shown = json.dumps([done.result, done.reference], ensure_ascii=False, default=str)
        for citizen_id, name in people_in(request.form):
            assert citizen_id not in shown and name not in shown, f"{action}: personal data in the result"
        await self._assert_effects_once(kit, action, before)

    async def test_redelivery_acts_once(self, kit: Kit, action: str) -> None:
        case = self.cases[action]
        request = await case.request(kit)
        before = await kit.counts()
        first = await kit.connector.handle(request)
        again = await kit.connector.handle(request)
        if not isinstance(first, FINAL_RESULTS) and not isinstance(again, FINAL_RESULTS):
            assert again.poll_token == first.poll_token, "a redelivery must find the same pending work"
        first_done = await kit.settle(first, case.citizen_acts)
        again_done = await kit.settle(again, case.citizen_acts)
        assert first_done == again_done
        await self._assert_effects_once(kit, action, before)

    async def test_concurrent_duplicates_act_once(self, kit: Kit, action: str) -> None:
        case = self.cases[action]
        request = await case.request(kit)
        before = await kit.counts()
        answers = await asyncio.gather(kit.connector.handle(request), kit.connector.handle(request))
        settled = [await kit.settle(answer, case.citizen_acts) for answer in answers]
        assert settled[0] == settled[1]
        await self._assert_effects_once(kit, action, before)

    async def test_business_rejection(self, kit: Kit, rejection: str) -> None:
        case = self.rejections[rejection]
        request = await case.request(kit)
        code: str | None = None
        try:
            result = await kit.settle(await kit.connector.handle(request))
        except AgencyRejected as refused:
            reason, code = refused.reason, refused.code
        else:
            assert isinstance(result, Rejected), f"{rejection}: expected a rejection, got {result!r}"
            reason = result.reason
        assert reason.strip(), "a rejection carries the agency's reason"
        if case.code is not None and code is not None:
            assert code == case.code
        if case.reason_contains is not None:
            assert case.reason_contains in reason

    async def test_transient_failures_are_agency_unavailable(self, kit: Kit, action: str, fault: str) -> None:
        request = await self.cases[action].request(kit)
        before = await kit.counts()
        await kit.faults(**TRANSIENT_FAULTS[fault])
        with pytest.raises(AgencyUnavailable):
            await kit.connector.handle(request)
        await kit.clear_faults()
        await self._complete(kit, action, request)  # the runtime's retry then acts exactly once
        await self._assert_effects_once(kit, action, before)

    async def test_a_slow_agency_times_out_within_the_timeout(self, kit: Kit, action: str) -> None:
        request = await self.cases[action].request(kit)
        before = await kit.counts()
        await kit.faults(latency_ms=int(self.timeout_s * 3000))
        started = time.monotonic()
        with pytest.raises(AgencyUnavailable):
            await kit.connector.handle(request)
        elapsed = time.monotonic() - started
        margin = max(0.5, self.timeout_s)
        assert elapsed <= self.timeout_s + margin, (
            f"gave up after {elapsed:.2f} s; the configured timeout is {self.timeout_s} s"
        )
        await kit.clear_faults()
        await self._complete(kit, action, request)
        await self._assert_effects_once(kit, action, before)

    async def test_a_slow_agency_within_the_timeout_still_answers(self, kit: Kit, action: str) -> None:
        request = await self.cases[action].request(kit)
        await kit.faults(latency_ms=int(self.timeout_s * 250))
        await self._complete(kit, action, request)

    async def test_a_malformed_reply_is_a_protocol_error(self, kit: Kit, action: str) -> None:
        request = await self.cases[action].request(kit)
        await kit.faults(malformed_rate=1.0)
        try:
            await kit.connector.handle(request)
        except AgencyProtocolError as error:
            assert error.message.strip(), "the error says what was wrong with the reply"
            assert error.agency == kit.agency, f"the error names the agency: {error.agency!r}"
        except Exception as error:  # the point of the scenario: nothing but the classified error
            pytest.fail(f"a malformed reply raised {type(error).__name__}: {error}, not AgencyProtocolError")
        else:
            pytest.fail("a malformed reply was accepted")

    async def test_an_unknown_action_is_a_protocol_error(self, kit: Kit) -> None:
        request = await self.cases[sorted(self.cases)[0]].request(kit)
        with pytest.raises(AgencyProtocolError):
            await kit.connector.handle(dataclasses.replace(request, action="no_such_action"))

    async def test_a_form_that_does_not_fit_is_a_protocol_error(self, kit: Kit, action: str) -> None:
        request = await self.cases[action].request(kit)
        before = await kit.counts()
        with pytest.raises(AgencyProtocolError):
            await kit.connector.handle(dataclasses.replace(request, form={}))
        assert await kit.counts() == before

    async def test_polling_before_completion_is_still_pending(self, kit: Kit, later_action: str) -> None:
        case = self.cases[later_action]
        first = await kit.connector.handle(await case.request(kit))
        assert not isinstance(first, FINAL_RESULTS), f"{later_action} should answer later: {first!r}"
        assert await kit.connector.poll(first.poll_token) == first, "unfinished work polls unchanged"

    async def test_polling_survives_an_outage(self, kit: Kit, later_action: str) -> None:
        case = self.cases[later_action]
        first = await kit.connector.handle(await case.request(kit))
        assert not isinstance(first, FINAL_RESULTS)
        await kit.faults(failure_rate=1.0)
        with pytest.raises(AgencyUnavailable):
            await kit.connector.poll(first.poll_token)
        await kit.clear_faults()
        assert isinstance(await kit.settle(first, case.citizen_acts), Completed)

    async def test_polling_after_completion_repeats_the_result(self, kit: Kit, later_action: str) -> None:
        case = self.cases[later_action]
        request = await case.request(kit)
        before = await kit.counts()
        first = await kit.connector.handle(request)
        assert not isinstance(first, FINAL_RESULTS)
        done = await kit.settle(first, case.citizen_acts)
        assert isinstance(done, Completed)
        assert await kit.connector.poll(first.poll_token) == done
        assert await kit.connector.poll(first.poll_token) == done
        await self._assert_effects_once(kit, later_action, before)


def _no(request: httpx.Request) -> httpx.Response:
    raise AssertionError("the declaration test makes no calls")

"""The connector host: runs any connector against its agency's request topic, the same way for all.

It owns everything a connector must not: consuming ``HandoffRequested``, classifying failures
(:mod:`services.runtime.failures.table`), retrying blips in process, sending longer outages through the
delayed retry tiers, tripping the agency's circuit breaker, dead-lettering, publishing
``HandoffReported`` through the outbox, and polling pending work (a job still running, a tax notice not
yet paid) until it ends — each job by one instance at a time, under a lease in the shared store, so
that any number of instances can run and a job left by one that died is polled by another. A
connector only adapts an API.

Where each handoff is in its life is kept in the host's store (:mod:`services.connector.store`); how the
host treats an agency is set in :class:`services.connector.settings.HostSettings`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import orjson

from connectors.base import Completed, Connector, HandoffRequest, HandoffResult, Rejected, WaitingOnCitizen
from connectors.errors import AgencyProtocolError, AgencyRejected, AgencyUnavailable
from schemas.authority import connector_producer
from schemas.envelope import Event, event_headers, event_key
from schemas.errors import EventContractError
from schemas.events import HandoffOutcomeData, HandoffReported, HandoffRequested, OutcomeKind
from schemas.topics import HANDOFF_OUTCOME, dlq_topic, requests_topic, retry_topic
from services.connector.settings import HostSettings
from services.connector.store import (
    DEAD_LETTERED,
    PENDING,
    RETRYING,
    SETTLED,
    ConnectorStore,
    DuePoll,
    LeaseLost,
)
from services.runtime.consume import headers
from services.runtime.consume.consumer import Context, Effect, Handlers
from services.runtime.consume.ids import name_based_id
from services.runtime.consume.records import ReceivedRecord, event_record
from services.runtime.failures.blip_retry import call_with_blip_retries
from services.runtime.failures.circuit import CircuitBreaker, CircuitState
from services.runtime.failures.dead_letter_records import Failure, dead_letter
from services.runtime.failures.table import (
    CallResult,
    CircuitEffect,
    FailureClass,
    classify_agency_call,
    describe,
)
from services.runtime.observe.metrics import METRICS
from services.runtime.storage.database import Connection
from services.runtime.storage.outbox import OutboxRelay, OutgoingRecord
from services.runtime.trust import header_signing, signing

log = logging.getLogger(__name__)

_OUTCOME_NAMESPACE = uuid.UUID("a3e1c7d2-5b4f-4c8e-9f0a-7d6b2e1c3f55")
_REASON_LIMIT = 1000
_MIN_POLL_GAP_S = 0.005  # between polling rounds when more is already due (no hot loop)
_POLL_LEASE_MARGIN_S = 5.0  # a poll's lease beyond the poll call's timeout
# With nothing pending, how often the store is looked at again anyway: another instance's jobs (on
# PostgreSQL) appear without waking this one. An idle connector polling at its pending-job interval
# cost a claim transaction each time (on PostgreSQL 3 round trips; 20 a second at a 50 ms interval).
_IDLE_RECHECK_S = 1.0


class WrongAgency(EventContractError):
    """A handoff request for another agency arrived on this connector's topic."""


class CircuitOpen(AgencyUnavailable):
    """Not called: the agency's circuit is open after repeated failures."""


def poll_wait(interval_s: float, polls: int) -> float:
    """How long a pending job waits for its next poll: an eighth of the interval before the first, then
    twice as long each time, up to the interval. Many jobs finish in moments (a card issued at once),
    and a job that runs long still costs its agency one poll per interval."""
    return interval_s / (8 >> min(polls, 3))


def as_request(event: HandoffRequested) -> HandoffRequest:
    data = event.data
    return HandoffRequest(
        handoff_id=str(data.handoff_id),
        dossier_id=str(event.dossier_id),
        dossier_code=data.dossier_code,
        procedure_code=data.procedure_code,
        step_id=data.step_id,
        action=data.action,
        form_kind=data.form_kind.value,
        form=orjson.loads(orjson.dumps(data.form, default=str)),  # a copy, JSON types only
        inputs={k: dict(v) for k, v in data.inputs.items()},
    )


class ConnectorHost:
    def __init__(
        self,
        connector: Connector,
        store: ConnectorStore,
        relay: OutboxRelay,
        settings: HostSettings,
        *,
        topic_prefix: str = "",
    ) -> None:
        self.connector = connector
        self.store = store
        self.relay = relay
        self.settings = settings
        self.topic_prefix = topic_prefix
        self.agency = connector.agency
        self.producer = connector_producer(self.agency)
        self.outcome_topic = topic_prefix + HANDOFF_OUTCOME
        self.requests_topic = requests_topic(self.agency, topic_prefix)
        self.dlq = dlq_topic(self.requests_topic)
        self.metrics = METRICS.agency(self.agency)
        blip = settings.blip_retry
        self.breaker = CircuitBreaker(
            threshold=settings.circuit_threshold,
            cooldown_s=settings.circuit_cooldown_s,
            on_change=self._circuit_changed,
            # longer than a probe can take: every attempt timing out, and the waits between them
            probe_timeout_s=blip.attempts * blip.call_timeout_s + blip.within_s + 5.0,
        )
        self._newly_pending = asyncio.Event()
        # A poll is not retried in process: a failed one waits for its next turn (poll_retry_s).
        self._poll_policy = settings.blip_retry.model_copy(update={"attempts": 1})

    @property
    def retry_topics(self) -> list[str]:
        return [retry_topic(self.agency, tier, self.topic_prefix) for tier in self.settings.retry_tiers]

    def dlq_for(self, topic: str) -> str:
        """Every topic of this connector (requests and retry tiers) dead-letters into the agency's DLQ."""
        return self.dlq

    def _circuit_changed(self, state: CircuitState) -> None:
        log.warning("circuit of %s is now %s", self.agency.value, state.name.lower())
        self.metrics.circuit(state)

    def _should_handle(self, event: HandoffRequested, record: ReceivedRecord) -> bool:
        row = self.store.handoff(str(event.data.handoff_id))
        if row is None:
            return True
        if row.state == RETRYING:  # only the copy on the tier it was sent to; not a stale redelivery
            return record.header_int(headers.RETRY_ATTEMPT) == row.attempt
        if row.state == DEAD_LETTERED:  # only an operator's replay revives it
            return headers.REPLAY_ID in record.headers
        return False  # pending (being polled) or settled

    async def on_request(self, event: Event, record: ReceivedRecord) -> Effect:
        """One handoff request, as it was delivered (the record's headers tell a replay and a delay
        tier's copy; the record is what a delay tier or a dead letter copies)."""
        if not isinstance(event, HandoffRequested) or event.data.agency is not self.agency:
            raise WrongAgency(f"{event.event_type} for another agency on the {self.agency.value} topic")
        if not self._should_handle(event, record):
            return Effect()
        if event.data.action not in self.connector.actions:
            error = EventContractError(
                f"the {self.agency.value} connector serves no action {event.data.action!r}"
            )
            return self._dead_letter(event, record, FailureClass.PROTOCOL, error)
        if not self.breaker.allows_call():
            return self._delay(event, record, CircuitOpen(f"circuit of {self.agency.value} is open"))
        request = as_request(event)
        try:
            result, _ = await call_with_blip_retries(
                lambda: self.connector.handle(request),
                self.settings.blip_retry,
                agency=self.agency.value,
                on_retry=self._retried_in_process,
            )
        except Exception as error:
            return self._failed(event, record, error)
        self.metrics.called(CallResult.OK)
        self.breaker.record_success()
        return self._settle_answer(event, result, record)

    def _failed(self, request: HandoffRequested, record: ReceivedRecord, error: Exception) -> Effect:
        """What a failed agency call means for the handoff: its row of the failure table."""
        failure = classify_agency_call(error)
        self.metrics.called(failure.call_result)
        self._tell_breaker(failure.circuit)
        if failure.failure_class is FailureClass.BUSINESS:
            assert isinstance(error, AgencyRejected)
            return self._settle_answer(request, Rejected(reason=error.reason), record)
        if failure.delayed:
            return self._delay(request, record, error)
        log.warning(
            "connector %s failed on %s (%s): %s",
            self.agency.value, request.data.action, failure.error_class, describe(error, 300),
            exc_info=failure.failure_class is FailureClass.INTERNAL,
        )  # fmt: skip
        return self._dead_letter(request, record, failure.failure_class, error)

    def _tell_breaker(self, effect: CircuitEffect) -> None:
        if effect is CircuitEffect.FAILURE:
            self.breaker.record_failure()
        elif effect is CircuitEffect.SUCCESS:
            self.breaker.record_success()
        elif effect is CircuitEffect.INCONCLUSIVE:
            self.breaker.record_inconclusive()

    def _settle_answer(
        self, request: HandoffRequested, result: HandoffResult, record: ReceivedRecord
    ) -> Effect:
        """:meth:`_settle`, or a dead letter when the agency's answer does not fit the outcome contract
        (a blank reason, an over-long reference, a result that is not JSON): raising here would bring
        the record back and call the agency again, for ever."""
        try:
            return self._settle(request, result, record)
        except (ValueError, TypeError) as error:  # pydantic's ValidationError is a ValueError
            unfit = AgencyProtocolError(
                f"the answer to {request.data.action} does not fit the outcome contract: "
                f"{describe(error, 300)}",
                agency=self.agency.value,
            )
            return self._dead_letter(request, record, FailureClass.PROTOCOL, unfit)

    def _retried_in_process(self) -> None:
        self.metrics.called(CallResult.TRANSIENT)
        self.metrics.retried_in_process()

    def _settle(self, request: HandoffRequested, result: HandoffResult, record: ReceivedRecord) -> Effect:
        """Records what ``result`` means for the handoff and the outcome to publish, if any."""
        replay_id = record.headers.get(headers.REPLAY_ID)
        if isinstance(result, (Completed, Rejected)):
            outcome = self._outcome(request, result, replay_id)
            return Effect([outcome], self.store.recording(request, SETTLED, replay_id=replay_id))
        emitted = [self._outcome(request, result, replay_id)] if isinstance(result, WaitingOnCitizen) else []
        next_poll = time.time() + poll_wait(self.settings.poll_interval_s, 0)
        recording = self.store.recording(
            request,
            PENDING,
            poll_token=result.poll_token,
            next_poll_at=next_poll,
            replay_id=replay_id,
        )

        def pending(conn: Connection) -> None:
            recording(conn)
            self.store.after_commit(self._newly_pending.set)  # the poll loop times its first poll

        return Effect(emitted, pending)

    def _delay(self, request: HandoffRequested, record: ReceivedRecord, error: Exception) -> Effect:
        """Sends the request to its next delay tier, or to the dead letters after the last one."""
        attempt = record.header_int(headers.RETRY_ATTEMPT) + 1
        if attempt > len(self.settings.retry_tiers):
            return self._dead_letter(request, record, FailureClass.TRANSIENT, error, attempts=attempt)
        tier = self.settings.retry_tiers[attempt - 1]
        now = datetime.now(UTC)
        # A replay's id stays on its tier copies: they belong to the replay (their dedupe key and their
        # outcomes), not to the first pass, whose copies were processed already.
        carried = {
            k: v
            for k, v in record.headers.items()
            if k not in headers.RUNTIME_HEADERS or k == headers.REPLAY_ID
        }
        retry_headers = carried | {
            headers.RETRY_ATTEMPT: str(attempt),
            headers.RETRY_DUE_MS: str(int((now + tier.delay).timestamp() * 1000)),
            headers.FAILING_SINCE: record.headers.get(headers.FAILING_SINCE, now.isoformat()),
            headers.LAST_ERROR: describe(error, 300),
        }
        # The attempt (and a replay id carried) changes the copy's dedupe key: signed, or refused.
        retry_headers = header_signing.signed_if_possible(
            signing.process_signer(), request.event_id, retry_headers
        )
        self.metrics.sent_to_tier(tier.name)
        log.info(
            "handoff %s to %s delayed %s (attempt %d): %s",
            request.data.action, self.agency.value, tier.name, attempt, describe(error, 200),
            extra={"dossier_id": str(request.dossier_id), "agency": self.agency.value, "outcome": "delayed"},
        )  # fmt: skip
        topic = retry_topic(self.agency, tier, self.topic_prefix)
        delayed = OutgoingRecord(topic, record.key or b"", record.value, retry_headers)
        recording = self.store.recording(
            request, RETRYING, attempt=attempt, replay_id=record.headers.get(headers.REPLAY_ID)
        )
        return Effect([delayed], recording)

    def _outcome(
        self,
        request: HandoffRequested,
        result: Completed | Rejected | WaitingOnCitizen,
        replay_id: str | None,
    ) -> OutgoingRecord:
        if isinstance(result, Completed):
            kind, reason, payload = OutcomeKind.COMPLETED, None, result.result
        elif isinstance(result, Rejected):
            kind, reason, payload = OutcomeKind.REJECTED, result.reason[:_REASON_LIMIT], {}
        else:
            kind, reason, payload = (
                OutcomeKind.WAITING_ON_CITIZEN,
                result.reason[:_REASON_LIMIT],
                result.result,
            )
        return self._outcome_record(
            request, kind, replay_id, reason=reason, result=payload, reference=result.reference
        )

    def _outcome_record(
        self,
        request: HandoffRequested,
        kind: OutcomeKind,
        replay_id: str | None,
        *,
        reason: str | None = None,
        result: dict[str, Any] | None = None,
        reference: str | None = None,
        error_class: str | None = None,
    ) -> OutgoingRecord:
        data = HandoffOutcomeData(
            handoff_id=request.data.handoff_id,
            step_id=request.data.step_id,
            agency=self.agency,
            action=request.data.action,
            kind=kind,
            reason=reason,
            result=result or {},
            agency_reference=reference,
            error_class=error_class,
        )
        # One id per handoff and kind: publishing the same outcome twice is deduplicated downstream.
        # A replay after a dead letter is a new attempt, so its outcomes are new events.
        name = f"{request.data.handoff_id}/{kind.value}" + (f"/{replay_id}" if replay_id else "")
        outcome = HandoffReported.create(
            data=data,
            producer=self.producer,
            caused_by=request,
            event_id=name_based_id(_OUTCOME_NAMESPACE, name),
        )
        seconds = max(0.0, (outcome.occurred_at - request.occurred_at).total_seconds())
        METRICS.handoff(self.agency, request.data.action).finished(kind, seconds)
        if log.isEnabledFor(logging.INFO):  # its fields cost more than the check when nobody reads them
            self._log_outcome(request, kind, seconds)
        return event_record(outcome, self.outcome_topic)

    def _log_outcome(self, request: HandoffRequested, kind: OutcomeKind, seconds: float) -> None:
        log.info(
            "handoff %s at %s: %s in %.0f ms",
            request.data.action, self.agency.value, kind.value, seconds * 1000,
            extra={
                "dossier_id": str(request.dossier_id),
                "correlation_id": str(request.correlation_id),
                "agency": self.agency.value,
                "action": request.data.action,
                "outcome": kind.value,
                "duration_ms": round(seconds * 1000, 1),
            },
        )  # fmt: skip

    def _dead_letter(
        self,
        request: HandoffRequested,
        record: ReceivedRecord,
        failure: FailureClass,
        error: Exception,
        *,
        attempts: int = 1,
    ) -> Effect:
        replay_id = record.headers.get(headers.REPLAY_ID)
        reason = f"{failure.value} failure at {self.agency.value}: {describe(error, _REASON_LIMIT)}"
        outcome = self._outcome_record(
            request,
            OutcomeKind.DEAD_LETTERED,
            replay_id,
            reason=reason[:_REASON_LIMIT],
            error_class=failure.value,
        )
        first = record.headers.get(headers.FAILING_SINCE)
        first_failure = datetime.fromisoformat(first) if first else None
        letter = dead_letter(record, Failure(failure.value, error, attempts, first_failure), topic=self.dlq)
        self.metrics.dead_lettered(failure.value)
        return Effect([letter, outcome], self.store.recording(request, DEAD_LETTERED, replay_id=replay_id))

    async def poll_once(self) -> int:
        """Polls every pending handoff that is due and that no other instance polls (this instance
        leases them first, see :mod:`services.connector.store`); returns how many settled (dead letters
        included). The jobs of a round it does not finish (it is stopped, or it failed) are released
        for any instance to poll at once."""
        settled = 0
        claimed = self.store.claim_due_polls(time.time(), self.poll_lease_s)
        done = 0
        try:
            for due in claimed:
                if self._polled_elsewhere(due):
                    done += 1
                    continue
                effect = await self._poll(due)
                try:
                    self.store.commit(None, effect.emitted, self.store.while_leased(due, effect.write))
                except LeaseLost as lost:
                    log.warning("%s; what this instance polled is dropped", lost)
                else:
                    if any(record.topic == self.outcome_topic for record in effect.emitted):
                        settled += 1
                done += 1
        finally:
            unfinished = [str(due.request.data.handoff_id) for due in claimed[done:]]
            if unfinished:
                with contextlib.suppress(Exception):  # unreleased, they wait out their lease
                    self.store.release_leases(unfinished)
        if settled:
            self.relay.wake()
        return settled

    @property
    def poll_lease_s(self) -> float:
        """How long a claimed job is this instance's alone: one poll call at its longest, and a margin
        for the recording and for the instances' clocks."""
        return self._poll_policy.call_timeout_s + _POLL_LEASE_MARGIN_S

    def _polled_elsewhere(self, due: DuePoll) -> bool:
        """Whether another instance took ``due`` over. Asked only when the round's earlier polls took so
        long that ``due``'s lease might end before its own poll does: the lease is renewed then, which
        only its holder can do."""
        now = time.time()
        if due.lease_until - now >= self.poll_lease_s - _POLL_LEASE_MARGIN_S / 2:
            return False
        if self.store.renew_lease(due, now, self.poll_lease_s):
            return False
        log.info("handoff %s is polled by another instance now", due.request.data.handoff_id)
        return True

    async def _poll(self, due: DuePoll) -> Effect:
        """One poll of a pending job, and what it means for the handoff."""
        request = due.request
        try:
            polled, _ = await call_with_blip_retries(
                lambda: self.connector.poll(due.poll_token),
                self._poll_policy,
                agency=self.agency.value,
            )
        except AgencyRejected as rejected:
            self.metrics.called(CallResult.REJECTED)
            polled = Rejected(reason=rejected.reason)
        except Exception as error:
            return self._poll_failed(due, error)
        else:
            self.metrics.called(CallResult.OK)
        if isinstance(polled, (Completed, Rejected)):
            try:
                outcome = self._outcome(request, polled, due.replay_id)
            except (ValueError, TypeError) as error:
                unfit = AgencyProtocolError(
                    f"the answer to polling {request.data.action} does not fit the outcome contract: "
                    f"{describe(error, 300)}",
                    agency=self.agency.value,
                )
                return self._poll_dead_letter(due, FailureClass.PROTOCOL, unfit)
            return Effect([outcome], self.store.recording(request, SETTLED, replay_id=due.replay_id))
        # Still waiting: look again later; the waiting outcome was published once already.
        polls = due.polls + 1
        return Effect(
            [],
            self.store.recording(
                request,
                PENDING,
                attempt=polls,
                poll_token=polled.poll_token,
                next_poll_at=time.time() + poll_wait(self.settings.poll_interval_s, polls),
                as_received=due.stored,
                replay_id=due.replay_id,
            ),
        )

    def _poll_failed(self, due: DuePoll, error: Exception) -> Effect:
        """A failed poll costs the job one of its failure budget; past it the handoff is stuck."""
        failure = classify_agency_call(error)
        self.metrics.called(failure.call_result)
        failures = due.failures + 1
        first_failure = due.first_failure_at or datetime.now(UTC).isoformat()
        if failures >= self.settings.poll_failure_budget:
            return self._poll_dead_letter(
                due, failure.failure_class, error, attempts=failures, first_failure=first_failure
            )
        wait = min(self.settings.poll_retry_s * 2 ** (failures - 1), self.settings.poll_retry_max_s)
        log.warning(
            "polling a %s handoff failed (%d of %d allowed, %s): %s; next poll in %.0f s",
            self.agency.value, failures, self.settings.poll_failure_budget, failure.error_class,
            describe(error, 200), wait,
        )  # fmt: skip
        return Effect(
            [],
            self.store.recording(
                due.request,
                PENDING,
                attempt=due.polls,
                poll_token=due.poll_token,
                next_poll_at=time.time() + wait,
                as_received=due.stored,
                replay_id=due.replay_id,
                poll_failures=failures,
                first_failure_at=first_failure,
            ),
        )

    def _poll_dead_letter(
        self,
        due: DuePoll,
        failure: FailureClass,
        error: Exception,
        *,
        attempts: int = 1,
        first_failure: str | None = None,
    ) -> Effect:
        """The pending job's handoff, dead-lettered with its story: the request as received, the failures
        in a row and since when. A replay asks the agency again (same idempotency key)."""
        request = due.request
        record_headers = event_headers(request) | {headers.FAILING_SINCE: first_failure or ""}
        if due.replay_id:
            record_headers[headers.REPLAY_ID] = due.replay_id
        stored = due.stored.encode() if isinstance(due.stored, str) else bytes(due.stored)
        record = ReceivedRecord(
            topic=self.requests_topic,
            partition=-1,  # not a record of the topic: the request as the poll loop kept it
            offset=-1,
            timestamp=request.occurred_at,
            key=event_key(request),
            value=stored,
            headers={k: v for k, v in record_headers.items() if v},
            group_id=f"{self.producer}.poll",
        )
        return self._dead_letter(request, record, failure, error, attempts=attempts)

    async def poll_loop(self) -> None:
        while True:
            try:
                await self.poll_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("poll loop of %s failed; continuing", self.agency.value)
            self._newly_pending.clear()
            await self._until_next_poll()

    async def _until_next_poll(self) -> None:
        """Until the earliest pending handoff is due, at most ``poll_interval_s``: a job is polled when
        it is due, not up to a whole interval later. A handoff that becomes pending meanwhile (due
        sooner than the wait) cuts the wait short; one committed while a round ran is in the store.
        With nothing pending at all, the store is looked at again every ``_IDLE_RECHECK_S`` (or
        ``poll_interval_s`` if longer)."""
        wait = self.settings.poll_interval_s
        due = self.store.next_poll_at()
        if due is None:
            wait = max(wait, _IDLE_RECHECK_S)
        else:
            wait = min(wait, max(due - time.time(), _MIN_POLL_GAP_S))
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(wait):
                await self._newly_pending.wait()


async def on_handoff_requested(event: HandoffRequested, ctx: Context[ConnectorHost]) -> Effect:
    """Carry out a handoff at the agency: the connector host decides everything (the class above)."""
    return await ctx.deps.on_request(event, ctx.delivery.record)


HANDLERS: Handlers = {HandoffRequested: on_handoff_requested}
"""The connector's one event and its handler."""

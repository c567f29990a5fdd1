"""The connector host: runs any connector against its agency's request topic, the same way for all.

It owns everything a connector must not: consuming ``HandoffRequested``, classifying failures
(:mod:`services.runtime.failures`), retrying blips in process, sending longer outages through the
delayed retry tiers, tripping the agency's circuit breaker, dead-lettering, publishing
``HandoffOutcome`` through the outbox, and polling pending work (a job still running, a tax notice not
yet paid) until it ends. A connector only adapts an API.

A handoff's life in the host's store: (none) → ``retrying`` (on a delay tier, with its attempt) →
``pending`` (polled) → ``settled``; or → ``dead_lettered``, from which only an operator's replay
(``lienthong dlq replay``) brings it back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, NamedTuple

import orjson

from connectors.base import Completed, Connector, HandoffRequest, HandoffResult, Rejected, WaitingOnCitizen
from connectors.errors import AgencyRejected, AgencyUnavailable
from schemas.envelope import Event
from schemas.errors import EventContractError
from schemas.events import HandoffOutcome, HandoffOutcomeData, HandoffRequested, OutcomeKind, parse_event
from schemas.topics import HANDOFF_OUTCOME, RETRY_TIERS, RetryTier, dlq_topic, requests_topic, retry_topic
from services.runtime import headers
from services.runtime.circuit import CircuitBreaker, CircuitState
from services.runtime.consumer import Effect
from services.runtime.deadletter import Failure, dead_letter
from services.runtime.failures import FailureClass, classify
from services.runtime.ids import name_based_id
from services.runtime.metrics import METRICS, CallResult
from services.runtime.metrics import CircuitState as CircuitMetric
from services.runtime.outbox import OutboxRelay, OutgoingRecord
from services.runtime.records import ReceivedRecord, event_record
from services.runtime.retry import BlipRetry, call_with_blip_retries
from services.runtime.store import SqliteProcessingStore, Write

log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS handoffs (
    handoff_id TEXT PRIMARY KEY,
    request TEXT NOT NULL,          -- the request as received while pending (it is polled); else ''
    state TEXT NOT NULL,            -- retrying, pending, settled or dead_lettered
    attempt INTEGER NOT NULL DEFAULT 0,  -- retrying: the delay tier's attempt; pending: polls so far
    poll_token TEXT,
    next_poll_at REAL
);
DROP INDEX IF EXISTS handoffs_due;
CREATE INDEX IF NOT EXISTS handoffs_pending ON handoffs (next_poll_at) WHERE state = 'pending';
"""
_OUTCOME_NAMESPACE = uuid.UUID("a3e1c7d2-5b4f-4c8e-9f0a-7d6b2e1c3f55")
_REASON_LIMIT = 1000

RETRYING, PENDING, SETTLED, DEAD_LETTERED = "retrying", "pending", "settled", "dead_lettered"
_MIN_POLL_GAP_S = 0.005  # between polling rounds when more is already due (no hot loop)


class WrongAgency(EventContractError):
    """A handoff request for another agency arrived on this connector's topic."""


class CircuitOpen(AgencyUnavailable):
    """Not called: the agency's circuit is open after repeated failures."""


class HandoffRow(NamedTuple):
    state: str
    attempt: int


class DuePoll(NamedTuple):
    request: HandoffRequested
    stored: bytes | str  # the request as the row holds it
    poll_token: str
    polls: int  # made so far


def poll_wait(interval_s: float, polls: int) -> float:
    """How long a pending job waits for its next poll: an eighth of the interval before the first, then
    twice as long each time, up to the interval. Many jobs finish in moments (a card issued at once),
    and a job that runs long still costs its agency one poll per interval."""
    return interval_s / (8 >> min(polls, 3))


class HandoffStore(SqliteProcessingStore):
    def __init__(self, path: Path | str) -> None:
        super().__init__(path, _SCHEMA)

    def handoff(self, handoff_id: str) -> HandoffRow | None:
        row = self.conn.execute(
            "SELECT state, attempt FROM handoffs WHERE handoff_id = ?", (handoff_id,)
        ).fetchone()
        return HandoffRow(str(row["state"]), int(row["attempt"])) if row else None

    def next_poll_at(self) -> float | None:
        """When the earliest pending handoff is due to be polled (None when none is pending)."""
        row = self.conn.execute("SELECT min(next_poll_at) FROM handoffs WHERE state = 'pending'").fetchone()
        return None if row[0] is None else float(row[0])

    def due_polls(self, now: float, limit: int = 100) -> list[DuePoll]:
        rows = self.conn.execute(
            "SELECT request, poll_token, attempt FROM handoffs WHERE state = 'pending' "
            "AND next_poll_at <= ? ORDER BY next_poll_at LIMIT ?",
            (now, limit),
        ).fetchall()
        due: list[DuePoll] = []
        for row in rows:
            request = parse_event(row["request"])
            if isinstance(request, HandoffRequested):
                due.append(DuePoll(request, row["request"], str(row["poll_token"]), int(row["attempt"])))
        return due

    @staticmethod
    def recording(
        request: HandoffRequested,
        state: str,
        *,
        attempt: int = 0,
        poll_token: str | None = None,
        next_poll_at: float | None = None,
        as_received: bytes | str | None = None,
    ) -> Write:
        """The request itself is kept only while pending, for the poll loop; its other states need
        only the row (every copy of a retried request carries it). ``as_received``: the request as its
        record or its row holds it, stored as it is instead of serialised again."""
        stored: bytes | str = ""
        if state == PENDING:
            stored = as_received if as_received is not None else request.model_dump_json()

        def write(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT INTO handoffs (handoff_id, request, state, attempt, poll_token, next_poll_at) "
                "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (handoff_id) DO UPDATE SET state = excluded.state, "
                "request = excluded.request, attempt = excluded.attempt, "
                "poll_token = excluded.poll_token, next_poll_at = excluded.next_poll_at",
                (
                    str(request.data.handoff_id),
                    stored,
                    state,
                    attempt,
                    poll_token,
                    next_poll_at,
                ),
            )

        return write


@dataclass(frozen=True)
class HostSettings:
    topic_prefix: str = ""
    blip_retry: BlipRetry = field(default_factory=BlipRetry)
    poll_interval_s: float = 0.5
    # The delay of each tier, in the order a failing handoff goes through them.
    retry_tiers: tuple[RetryTier, ...] = RETRY_TIERS
    circuit_threshold: int = 5
    circuit_cooldown_s: float = 10.0


def tiers_with_delays(delays_s: tuple[float, ...]) -> tuple[RetryTier, ...]:
    """The registry's tiers (their topics) with other delays, e.g. seconds in tests."""
    if len(delays_s) != len(RETRY_TIERS):
        raise ValueError(f"give one delay per retry tier ({', '.join(t.name for t in RETRY_TIERS)})")
    return tuple(
        RetryTier(name=t.name, delay=timedelta(seconds=d)) for t, d in zip(RETRY_TIERS, delays_s, strict=True)
    )


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


_CALL_RESULTS = {
    FailureClass.TRANSIENT: CallResult.TRANSIENT,
    FailureClass.BUSINESS: CallResult.REJECTED,
    FailureClass.PROTOCOL: CallResult.PROTOCOL,
}


class ConnectorHost:
    def __init__(
        self, connector: Connector, store: HandoffStore, relay: OutboxRelay, settings: HostSettings
    ) -> None:
        self.connector = connector
        self.store = store
        self.relay = relay
        self.settings = settings
        self.agency = connector.agency
        self.producer = f"connector.{self.agency.value}"
        self.outcome_topic = settings.topic_prefix + HANDOFF_OUTCOME
        self.requests_topic = requests_topic(self.agency, settings.topic_prefix)
        self.dlq = dlq_topic(self.requests_topic)
        self.metrics = METRICS.agency(self.agency)
        self.breaker = CircuitBreaker(
            threshold=settings.circuit_threshold,
            cooldown_s=settings.circuit_cooldown_s,
            on_change=self._circuit_changed,
        )
        self._newly_pending = asyncio.Event()

    @property
    def retry_topics(self) -> list[str]:
        return [
            retry_topic(self.agency, tier, self.settings.topic_prefix) for tier in self.settings.retry_tiers
        ]

    def dlq_for(self, topic: str) -> str:
        """Every topic of this connector (requests and retry tiers) dead-letters into the agency's DLQ."""
        return self.dlq

    def _circuit_changed(self, state: CircuitState) -> None:
        log.warning("circuit of %s is now %s", self.agency.value, state.name.lower())
        self.metrics.circuit(CircuitMetric(int(state)))

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
            result, attempts = await call_with_blip_retries(
                lambda: self.connector.handle(request),
                self.settings.blip_retry,
                agency=self.agency.value,
                on_retry=self._retried_in_process,
            )
        except Exception as error:
            failure = classify(error)
            self.metrics.called(_CALL_RESULTS.get(failure, CallResult.PROTOCOL))
            if failure is FailureClass.BUSINESS:
                self.breaker.record_success()  # the agency answered
                assert isinstance(error, AgencyRejected)
                return self._settle(event, Rejected(reason=error.reason), record)
            if failure is FailureClass.TRANSIENT:
                self.breaker.record_failure()
                return self._delay(event, record, error)
            log.exception(
                "connector %s failed on %s (%s)", self.agency.value, event.data.action, failure.value
            )
            return self._dead_letter(event, record, failure, error)
        self.metrics.called(CallResult.OK)
        self.breaker.record_success()
        del attempts
        return self._settle(event, result, record)

    def _retried_in_process(self) -> None:
        self.metrics.called(CallResult.TRANSIENT)
        self.metrics.retried_in_process()

    def _settle(self, request: HandoffRequested, result: HandoffResult, record: ReceivedRecord) -> Effect:
        """Records what ``result`` means for the handoff and the outcome to publish, if any."""
        if isinstance(result, (Completed, Rejected)):
            return Effect([self._outcome(request, result)], self.store.recording(request, SETTLED))
        next_poll = time.time() + poll_wait(self.settings.poll_interval_s, 0)
        recording = self.store.recording(
            request, PENDING, poll_token=result.poll_token, next_poll_at=next_poll, as_received=record.value
        )

        def pending(conn: sqlite3.Connection) -> None:
            recording(conn)
            self.store.after_commit(self._newly_pending.set)  # the poll loop times its first poll

        emitted = [self._outcome(request, result)] if isinstance(result, WaitingOnCitizen) else []
        return Effect(emitted, pending)

    def _delay(self, request: HandoffRequested, record: ReceivedRecord, error: Exception) -> Effect:
        """Sends the request to its next delay tier, or to the dead letters after the last one."""
        attempt = record.header_int(headers.RETRY_ATTEMPT) + 1
        if attempt > len(self.settings.retry_tiers):
            return self._dead_letter(request, record, FailureClass.TRANSIENT, error, attempts=attempt)
        tier = self.settings.retry_tiers[attempt - 1]
        now = datetime.now(UTC)
        carried = {k: v for k, v in record.headers.items() if k not in headers.RUNTIME_HEADERS}
        retry_headers = carried | {
            headers.RETRY_ATTEMPT: str(attempt),
            headers.RETRY_DUE_MS: str(int((now + tier.delay).timestamp() * 1000)),
            headers.FIRST_FAILURE: record.headers.get(headers.FIRST_FAILURE, now.isoformat()),
            headers.LAST_ERROR: str(error)[:300],
        }
        self.metrics.sent_to_tier(tier.name)
        log.info(
            "handoff %s to %s delayed %s (attempt %d): %s",
            request.data.action, self.agency.value, tier.name, attempt, str(error)[:200],
            extra={"dossier_id": str(request.dossier_id), "agency": self.agency.value, "outcome": "delayed"},
        )  # fmt: skip
        topic = retry_topic(self.agency, tier, self.settings.topic_prefix)
        delayed = OutgoingRecord(topic, record.key or b"", record.value, retry_headers)
        return Effect([delayed], self.store.recording(request, RETRYING, attempt=attempt))

    def _outcome(
        self, request: HandoffRequested, result: Completed | Rejected | WaitingOnCitizen
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
        return self._outcome_record(request, kind, reason=reason, result=payload, reference=result.reference)

    def _outcome_record(
        self,
        request: HandoffRequested,
        kind: OutcomeKind,
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
        event_id = name_based_id(_OUTCOME_NAMESPACE, f"{request.data.handoff_id}/{kind.value}")
        outcome = HandoffOutcome.create(
            data=data, producer=self.producer, caused_by=request, event_id=event_id
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
        reason = f"{failure.value} failure at {self.agency.value}: {error}"[:_REASON_LIMIT]
        outcome = self._outcome_record(
            request, OutcomeKind.DEAD_LETTERED, reason=reason, error_class=failure.value
        )
        first = record.headers.get(headers.FIRST_FAILURE)
        first_failure = datetime.fromisoformat(first) if first else None
        letter = dead_letter(record, Failure(failure.value, error, attempts, first_failure), topic=self.dlq)
        self.metrics.dead_lettered(failure.value)
        return Effect([letter, outcome], self.store.recording(request, DEAD_LETTERED))

    async def poll_once(self) -> int:
        """Polls every pending handoff that is due; returns how many settled."""
        settled = 0
        for request, stored, token, polls in self.store.due_polls(time.time()):
            try:
                polled, _ = await call_with_blip_retries(
                    lambda token=token: self.connector.poll(token),  # type: ignore[misc]
                    BlipRetry(attempts=1, call_timeout_s=self.settings.blip_retry.call_timeout_s),
                    agency=self.agency.value,
                )
            except AgencyRejected as rejected:
                polled = Rejected(reason=rejected.reason)
            except Exception:
                log.warning(
                    "polling a %s handoff failed; trying again later", self.agency.value, exc_info=True
                )
                retry_at = time.time() + 5.0
                failed = self.store.recording(
                    request,
                    PENDING,
                    attempt=polls,
                    poll_token=token,
                    next_poll_at=retry_at,
                    as_received=stored,
                )
                self.store.commit(None, [], failed)
                continue
            if isinstance(polled, (Completed, Rejected)):
                effect = Effect([self._outcome(request, polled)], self.store.recording(request, SETTLED))
                settled += 1
            else:  # still waiting: look again later; the waiting outcome was published once already
                polls += 1
                next_poll = time.time() + poll_wait(self.settings.poll_interval_s, polls)
                effect = Effect(
                    [],
                    self.store.recording(
                        request,
                        PENDING,
                        attempt=polls,
                        poll_token=polled.poll_token,
                        next_poll_at=next_poll,
                        as_received=stored,
                    ),
                )
            self.store.commit(None, effect.emitted, effect.write)
        if settled:
            self.relay.wake()
        return settled

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
        sooner than the wait) cuts the wait short; one committed while a round ran is in the store."""
        wait = self.settings.poll_interval_s
        due = self.store.next_poll_at()
        if due is not None:
            wait = min(wait, max(due - time.time(), _MIN_POLL_GAP_S))
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(wait):
                await self._newly_pending.wait()

"""The connector host: runs any connector against its agency's request topic, the same way for all.

It owns everything a connector must not: consuming ``HandoffRequested``, classifying failures
(:mod:`services.runtime.failures`), retrying blips in process, sending longer outages through the
delayed retry tiers, tripping the agency's circuit breaker, dead-lettering, publishing
``HandoffReported`` through the outbox, and polling pending work (a job still running, a tax notice not
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
from connectors.errors import AgencyProtocolError, AgencyRejected, AgencyUnavailable
from schemas.envelope import Event, event_headers, event_key
from schemas.errors import EventContractError
from schemas.events import HandoffOutcomeData, HandoffReported, HandoffRequested, OutcomeKind, parse_event
from schemas.topics import HANDOFF_OUTCOME, RETRY_TIERS, RetryTier, dlq_topic, requests_topic, retry_topic
from services.runtime import headers
from services.runtime.circuit import CircuitBreaker, CircuitState
from services.runtime.consumer import Context, Effect, Handlers
from services.runtime.deadletter import Failure, dead_letter
from services.runtime.failures import CallResult, CircuitEffect, FailureClass, classify_agency_call, describe
from services.runtime.ids import name_based_id
from services.runtime.metrics import METRICS
from services.runtime.outbox import OutboxRelay, OutgoingRecord
from services.runtime.records import ReceivedRecord, event_record
from services.runtime.retry import BlipRetry, call_with_blip_retries
from services.runtime.sqlite import ensure_column
from services.runtime.store import SqliteProcessingStore, Write

log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS handoffs (
    handoff_id TEXT PRIMARY KEY,
    request TEXT NOT NULL,          -- the request as received while pending (it is polled); else ''
    state TEXT NOT NULL,            -- retrying, pending, settled or dead_lettered
    attempt INTEGER NOT NULL DEFAULT 0,  -- retrying: the delay tier's attempt; pending: polls so far
    poll_token TEXT,
    next_poll_at REAL,
    replay_id TEXT,                 -- the operator's replay this attempt belongs to (outcome ids)
    poll_failures INTEGER NOT NULL DEFAULT 0,  -- pending: failed polls in a row
    first_failure_at TEXT           -- pending: when the first of those failed
);
DROP INDEX IF EXISTS handoffs_due;
CREATE INDEX IF NOT EXISTS handoffs_pending ON handoffs (next_poll_at) WHERE state = 'pending';
"""
# Columns newer than the table (stores made before them get them on start).
_ADDED_COLUMNS = (
    ("replay_id", "TEXT"),
    ("poll_failures", "INTEGER NOT NULL DEFAULT 0"),
    ("first_failure_at", "TEXT"),
)
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
    replay_id: str | None = None
    failures: int = 0  # failed polls in a row
    first_failure_at: str | None = None


def poll_wait(interval_s: float, polls: int) -> float:
    """How long a pending job waits for its next poll: an eighth of the interval before the first, then
    twice as long each time, up to the interval. Many jobs finish in moments (a card issued at once),
    and a job that runs long still costs its agency one poll per interval."""
    return interval_s / (8 >> min(polls, 3))


class ConnectorStore(SqliteProcessingStore):
    def __init__(self, path: Path | str) -> None:
        super().__init__(path, _SCHEMA)
        for column, declaration in _ADDED_COLUMNS:
            ensure_column(self.conn, "handoffs", column, declaration)

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
            "SELECT request, poll_token, attempt, replay_id, poll_failures, first_failure_at FROM handoffs"
            " WHERE state = 'pending' AND next_poll_at <= ? ORDER BY next_poll_at LIMIT ?",
            (now, limit),
        ).fetchall()
        due: list[DuePoll] = []
        for row in rows:
            request = parse_event(row["request"])
            if isinstance(request, HandoffRequested):
                due.append(
                    DuePoll(
                        request,
                        row["request"],
                        str(row["poll_token"]),
                        int(row["attempt"]),
                        row["replay_id"],
                        int(row["poll_failures"]),
                        row["first_failure_at"],
                    )
                )
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
        replay_id: str | None = None,
        poll_failures: int = 0,
        first_failure_at: str | None = None,
    ) -> Write:
        """The request itself is kept only while pending, for the poll loop (as the whole event: a record
        holds only its data, its envelope being in the headers); its other states need only the row
        (every copy of a retried request carries it). ``as_received``: the request as the row holds it,
        stored as it is instead of serialised again. ``replay_id``: the replay this attempt belongs to,
        so that its outcomes are new events."""
        stored: bytes | str = ""
        if state == PENDING:
            stored = as_received if as_received is not None else request.model_dump_json()

        def write(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT INTO handoffs (handoff_id, request, state, attempt, poll_token, next_poll_at,"
                " replay_id, poll_failures, first_failure_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (handoff_id) DO UPDATE SET state = excluded.state,"
                " request = excluded.request, attempt = excluded.attempt,"
                " poll_token = excluded.poll_token, next_poll_at = excluded.next_poll_at,"
                " replay_id = excluded.replay_id, poll_failures = excluded.poll_failures,"
                " first_failure_at = excluded.first_failure_at",
                (
                    str(request.data.handoff_id),
                    stored,
                    state,
                    attempt,
                    poll_token,
                    next_poll_at,
                    replay_id,
                    poll_failures,
                    first_failure_at,
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
    # A pending job whose polls keep failing: waits from poll_retry_s, doubling up to poll_retry_max_s,
    # and after poll_failure_budget failures in a row the handoff is dead-lettered (stuck, alerting).
    poll_failure_budget: int = 10
    poll_retry_s: float = 5.0
    poll_retry_max_s: float = 300.0


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


class ConnectorHost:
    def __init__(
        self, connector: Connector, store: ConnectorStore, relay: OutboxRelay, settings: HostSettings
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
        blip = settings.blip_retry
        self.breaker = CircuitBreaker(
            threshold=settings.circuit_threshold,
            cooldown_s=settings.circuit_cooldown_s,
            on_change=self._circuit_changed,
            # longer than a probe can take: every attempt timing out, and the waits between them
            probe_timeout_s=blip.attempts * blip.call_timeout_s + blip.within_s + 5.0,
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

        def pending(conn: sqlite3.Connection) -> None:
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
        self.metrics.sent_to_tier(tier.name)
        log.info(
            "handoff %s to %s delayed %s (attempt %d): %s",
            request.data.action, self.agency.value, tier.name, attempt, describe(error, 200),
            extra={"dossier_id": str(request.dossier_id), "agency": self.agency.value, "outcome": "delayed"},
        )  # fmt: skip
        topic = retry_topic(self.agency, tier, self.settings.topic_prefix)
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
        """Polls every pending handoff that is due; returns how many settled (dead letters included)."""
        settled = 0
        for due in self.store.due_polls(time.time()):
            effect = await self._poll(due)
            self.store.commit(None, effect.emitted, effect.write)
            if any(record.topic == self.outcome_topic for record in effect.emitted):
                settled += 1
        if settled:
            self.relay.wake()
        return settled

    async def _poll(self, due: DuePoll) -> Effect:
        """One poll of a pending job, and what it means for the handoff."""
        request = due.request
        try:
            polled, _ = await call_with_blip_retries(
                lambda: self.connector.poll(due.poll_token),
                BlipRetry(attempts=1, call_timeout_s=self.settings.blip_retry.call_timeout_s),
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
        sooner than the wait) cuts the wait short; one committed while a round ran is in the store."""
        wait = self.settings.poll_interval_s
        due = self.store.next_poll_at()
        if due is not None:
            wait = min(wait, max(due - time.time(), _MIN_POLL_GAP_S))
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(wait):
                await self._newly_pending.wait()


async def on_handoff_requested(event: HandoffRequested, ctx: Context[ConnectorHost]) -> Effect:
    """Carry out a handoff at the agency: the connector host decides everything (the class above)."""
    return await ctx.deps.on_request(event, ctx.delivery.record)


HANDLERS: Handlers = {HandoffRequested: on_handoff_requested}
"""The connector's one event and its handler."""

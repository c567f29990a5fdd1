"""The connector host: runs any connector against its agency's request topic, the same way for all.

It owns everything a connector must not: consuming ``HandoffRequested``, classifying failures,
retrying blips, dead-lettering, publishing ``HandoffOutcome`` through the outbox, and polling pending
work (a job still running, a tax notice not yet paid) until it ends. A connector only adapts an API.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from uuid import UUID

from connectors.base import (
    Completed,
    Connector,
    HandoffRequest,
    HandoffResult,
    Pending,
    Rejected,
    WaitingOnCitizen,
)
from connectors.errors import AgencyProtocolError, AgencyRejected, AgencyUnavailable
from schemas.envelope import Event
from schemas.errors import EventContractError
from schemas.events import HandoffOutcome, HandoffOutcomeData, HandoffRequested, OutcomeKind, parse_event
from schemas.topics import HANDOFF_OUTCOME, dlq_topic, requests_topic
from services.runtime.consumer import Effect
from services.runtime.deadletter import Failure, dead_letter
from services.runtime.outbox import OutboxRelay, OutgoingRecord
from services.runtime.records import ReceivedRecord, event_record
from services.runtime.retry import BlipRetry, call_with_blip_retries
from services.runtime.store import SqliteProcessingStore, Write

log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS handoffs (
    handoff_id TEXT PRIMARY KEY,
    request TEXT NOT NULL,
    state TEXT NOT NULL,            -- 'pending' (polled) or 'settled'
    poll_token TEXT,
    next_poll_at REAL
);
CREATE INDEX IF NOT EXISTS handoffs_due ON handoffs (state, next_poll_at);
"""
_OUTCOME_NAMESPACE = uuid.UUID("a3e1c7d2-5b4f-4c8e-9f0a-7d6b2e1c3f55")
_REASON_LIMIT = 1000


class WrongAgency(EventContractError):
    """A handoff request for another agency arrived on this connector's topic."""


class HandoffStore(SqliteProcessingStore):
    def __init__(self, path: Path | str) -> None:
        super().__init__(path, _SCHEMA)

    def state_of(self, handoff_id: str) -> str | None:
        row = self.conn.execute("SELECT state FROM handoffs WHERE handoff_id = ?", (handoff_id,)).fetchone()
        return str(row["state"]) if row else None

    def due_polls(self, now: float, limit: int = 100) -> list[tuple[HandoffRequested, str]]:
        rows = self.conn.execute(
            "SELECT request, poll_token FROM handoffs WHERE state = 'pending' AND next_poll_at <= ? "
            "ORDER BY next_poll_at LIMIT ?",
            (now, limit),
        ).fetchall()
        requests = [(parse_event(row["request"]), str(row["poll_token"])) for row in rows]
        return [(r, token) for r, token in requests if isinstance(r, HandoffRequested)]

    @staticmethod
    def recording(
        request: HandoffRequested, state: str, poll_token: str | None, next_poll_at: float | None
    ) -> Write:
        def write(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT INTO handoffs (handoff_id, request, state, poll_token, next_poll_at) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT (handoff_id) DO UPDATE SET state = excluded.state, "
                "poll_token = excluded.poll_token, next_poll_at = excluded.next_poll_at",
                (str(request.data.handoff_id), request.model_dump_json(), state, poll_token, next_poll_at),
            )

        return write


@dataclass(frozen=True)
class HostSettings:
    topic_prefix: str = ""
    blip_retry: BlipRetry = field(default_factory=BlipRetry)
    poll_interval_s: float = 0.5


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
        form=json.loads(json.dumps(data.form, default=str)),
        inputs={k: dict(v) for k, v in data.inputs.items()},
    )


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
        self.dlq = dlq_topic(requests_topic(self.agency, settings.topic_prefix))

    async def on_request(self, event: Event, record: ReceivedRecord) -> Effect:
        if not isinstance(event, HandoffRequested) or event.data.agency is not self.agency:
            raise WrongAgency(f"{event.event_type} for another agency on the {self.agency.value} topic")
        handoff_id = str(event.data.handoff_id)
        if self.store.state_of(handoff_id) is not None:
            return Effect()  # handled before: settled, or pending and being polled
        if event.data.action not in self.connector.actions:
            return self._dead_letter(
                event,
                record,
                "protocol",
                AgencyProtocolError(
                    f"the {self.agency.value} connector does not serve action {event.data.action!r}"
                ),
                attempts=1,
            )
        request = as_request(event)
        attempts = 1
        try:
            result, attempts = await call_with_blip_retries(
                lambda: self.connector.handle(request), self.settings.blip_retry, agency=self.agency.value
            )
        except AgencyRejected as rejected:
            result = Rejected(reason=rejected.reason)
        except AgencyUnavailable as error:
            return self._dead_letter(
                event, record, "transient", error, attempts=self.settings.blip_retry.attempts
            )
        except AgencyProtocolError as error:
            return self._dead_letter(event, record, "protocol", error, attempts=attempts)
        except Exception as error:  # a bug in an adapter must not stop the agency's partition
            log.exception("connector %s failed on %s", self.agency.value, event.data.action)
            return self._dead_letter(event, record, "internal", error, attempts=attempts)
        return self._settle(event, result)

    def _settle(self, request: HandoffRequested, result: HandoffResult) -> Effect:
        """Records what ``result`` means for the handoff and the outcome to publish, if any."""
        if isinstance(result, (Completed, Rejected)):
            return Effect(
                [self._outcome(request, result)], self.store.recording(request, "settled", None, None)
            )
        next_poll = time.time() + self.settings.poll_interval_s
        write = self.store.recording(request, "pending", result.poll_token, next_poll)
        emitted = [self._outcome(request, result)] if isinstance(result, WaitingOnCitizen) else []
        return Effect(emitted, write)

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
        event_id: UUID = uuid.uuid5(_OUTCOME_NAMESPACE, f"{request.data.handoff_id}/{kind.value}")
        outcome = HandoffOutcome.create(
            data=data, producer=self.producer, caused_by=request, event_id=event_id
        )
        return event_record(outcome, self.outcome_topic)

    def _dead_letter(
        self,
        request: HandoffRequested,
        record: ReceivedRecord,
        error_class: str,
        error: Exception,
        *,
        attempts: int,
    ) -> Effect:
        reason = f"{error_class} failure at {self.agency.value}: {error}"[:_REASON_LIMIT]
        outcome = self._outcome_record(
            request, OutcomeKind.DEAD_LETTERED, reason=reason, error_class=error_class
        )
        letter = dead_letter(record, Failure(error_class, error, attempts), topic=self.dlq)
        return Effect([letter, outcome], self.store.recording(request, "settled", None, None))

    async def poll_once(self) -> int:
        """Polls every pending handoff that is due; returns how many settled."""
        settled = 0
        for request, token in self.store.due_polls(time.time()):
            try:
                result = await call_with_blip_retries(
                    lambda token=token: self.connector.poll(token),  # type: ignore[misc]
                    BlipRetry(attempts=1, call_timeout_s=self.settings.blip_retry.call_timeout_s),
                    agency=self.agency.value,
                )
            except AgencyRejected as rejected:
                polled: HandoffResult = Rejected(reason=rejected.reason)
            except Exception:
                log.warning("polling %s handoff failed; trying again later", self.agency.value, exc_info=True)
                self.store.commit(
                    None, [], self.store.recording(request, "pending", token, time.time() + 5.0)
                )
                continue
            else:
                polled = result[0]
            if isinstance(polled, (Completed, Rejected)):
                effect = Effect(
                    [self._outcome(request, polled)], self.store.recording(request, "settled", None, None)
                )
                settled += 1
            else:  # still waiting: look again later; the waiting outcome was published once already
                effect = Effect(
                    [],
                    self.store.recording(
                        request, "pending", polled.poll_token, time.time() + self.settings.poll_interval_s
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
            await asyncio.sleep(self.settings.poll_interval_s)


__all__ = ["ConnectorHost", "HandoffStore", "HostSettings", "Pending", "as_request"]

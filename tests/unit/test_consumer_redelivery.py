"""A consumer that leaves deduplication to its commit (``lookup_before_handling=False``: the tracker's and
the router's way) handles a redelivered record again, and that second handling may fail where the first
did not, because the first already changed the state it reads. Such a failure is a redelivery's, not a
new dead letter: nothing is dead-lettered, counted or logged as one. Through the consumer's real path
on a SQLite store."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from schemas.envelope import event_headers, event_key, event_value
from schemas.errors import EventContractError
from schemas.events import DossierReceived
from services.runtime.consume.consumer import Context, Effect, EventConsumer
from services.runtime.consume.records import ReceivedRecord
from services.runtime.storage.outbox import OutboxRelay
from services.runtime.storage.store import SqlProcessingStore, Write
from tests.factories import dossier_received

TOPIC = "t.dossier.received"
RECEIVED = datetime.fromisoformat("2026-11-23T02:00:00+00:00")  # the factories' dossiers' time


class AppliedTwice(EventContractError):
    """What a handler raises for an event whose change its state already holds."""


def record_of(event: DossierReceived) -> ReceivedRecord:
    return ReceivedRecord(
        TOPIC, 0, 0, RECEIVED, event_key(event), event_value(event), event_headers(event), "t"
    )


class AppliedStore(SqlProcessingStore):
    SCHEMA = "CREATE TABLE applied (event_id TEXT PRIMARY KEY);"


class Applying:
    """A handler that applies an event once and refuses it when the state already holds it, raising
    ``error`` (as the router refuses an outcome for a leg it closed)."""

    def __init__(self, store: AppliedStore, error: Exception) -> None:
        self.store, self.error = store, error
        self.calls = 0

    async def __call__(self, event: DossierReceived, ctx: Context[Any]) -> Effect:
        self.calls += 1
        query = "SELECT 1 FROM applied WHERE event_id = ?"
        seen = self.store.conn.execute(query, (str(event.event_id),)).fetchone()
        if seen is not None:
            raise self.error
        return Effect(write=self._apply(str(event.event_id)))

    @staticmethod
    def _apply(event_id: str) -> Write:
        def write(conn: Any) -> None:
            conn.execute("INSERT INTO applied (event_id) VALUES (?)", (event_id,))

        return write


@pytest.mark.parametrize(
    "error", [AppliedTwice("the leg is closed"), ValueError("a bug the state's second sight trips")]
)
async def test_a_redelivery_whose_second_handling_fails_is_neither_dead_lettered_nor_counted(
    error: Exception, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = AppliedStore(tmp_path / "consumer.db")
    try:
        handler = Applying(store, error)
        counted: list[str] = []

        async def unused(record: Any) -> Any:
            raise AssertionError("the test reads the outbox")

        consumer = EventConsumer(
            store=store,
            relay=OutboxRelay(store.outbox, unused),
            group_id="t.router",
            handlers={DossierReceived: handler},
            on_poison=counted.append,
            verifier=None,
            lookup_before_handling=False,
            max_event_age=timedelta(days=7),
            clock=lambda: RECEIVED,
        )
        record = record_of(dossier_received("9.900005"))
        await consumer.process(record)
        with caplog.at_level(logging.WARNING):
            await consumer.process(record)  # redelivered: its offset was not committed before a restart
        assert handler.calls == 2, "the commit, not a lookup, dedupes this consumer's records"
        assert counted == [] and list(store.outbox.pending()) == []
        assert not [r for r in caplog.records if "dead-lettered" in r.getMessage()]
    finally:
        store.close()

"""A service's real wiring, run in memory: its app (consumer, handlers, store, outbox relay) on
FastStream's ``TestKafkaBroker``, fed events as records and read back through what it publishes.

The unit tests of the router and the tracker use it instead of calling handlers themselves, so what
they prove is the consume path the service runs: parsing, dedupe, the handler map, one transaction,
the relay."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI
from faststream.kafka import KafkaBroker, TestKafkaBroker
from faststream.kafka.annotations import KafkaMessage

from schemas.envelope import Event
from schemas.events import (
    DossierClosed,
    DossierReceived,
    DossierStatusChanged,
    HandoffReported,
    HandoffRequested,
    parse_event,
)
from schemas.topics import DOSSIER_CLOSED, DOSSIER_RECEIVED, DOSSIER_STATUS, HANDOFF_OUTCOME, requests_topic
from services.runtime.consume.records import event_record
from services.runtime.storage.outbox import OutgoingRecord
from services.runtime.storage.store import SqlProcessingStore


def topic_of(event: Event) -> str:
    """The topic an event of this type travels on."""
    if isinstance(event, HandoffRequested):
        return requests_topic(event.data.agency)
    topics: dict[type[Event], str] = {
        DossierReceived: DOSSIER_RECEIVED,
        HandoffReported: HANDOFF_OUTCOME,
        DossierStatusChanged: DOSSIER_STATUS,
        DossierClosed: DOSSIER_CLOSED,
    }
    return topics[type(event)]


class InMemoryService:
    """One service app on the in-memory broker; ``published`` collects what it sends to ``outputs``."""

    def __init__(self, build: Callable[[], FastAPI], outputs: list[str]) -> None:
        self.build = build
        self.outputs = outputs
        self.published: list[OutgoingRecord] = []
        self._running: contextlib.AsyncExitStack | None = None
        self.app: FastAPI | None = None

    @property
    def store(self) -> Any:
        assert self.app is not None
        return self.app.state.store

    async def start(self) -> None:
        self.app = app = self.build()
        broker: KafkaBroker = app.state.broker
        for topic in self.outputs:
            broker.subscriber(topic, group_id=f"collect-{topic}")(self._collect)
        self._running = contextlib.AsyncExitStack()
        self.test_broker = await self._running.enter_async_context(TestKafkaBroker(broker))
        await self._running.enter_async_context(app.router.lifespan_context(app))

    async def stop(self) -> None:
        if self._running is not None:
            running, self._running = self._running, None
            await running.aclose()

    async def restart(self) -> None:
        """A new process on the same store: the app is built again."""
        await self.stop()
        await self.start()

    async def _collect(self, body: Any, message: KafkaMessage) -> None:
        raw: Any = message.raw_message
        self.published.append(
            OutgoingRecord(raw.topic, raw.key or b"", raw.value or b"", dict(message.headers))
        )

    async def feed(self, event: Event) -> list[OutgoingRecord]:
        """Publishes ``event`` as its producer would; returns what the service published because of it,
        once its outbox is empty again."""
        before = len(self.published)
        record = event_record(event, topic_of(event))
        await self.test_broker.publish(record.value, record.topic, key=record.key, headers=record.headers)
        await self.settled()
        return self.published[before:]

    async def settled(self, within_s: float = 10.0) -> None:
        """Until the service's transaction is committed and its outbox sent."""
        store: SqlProcessingStore = self.store
        deadline = time.monotonic() + within_s
        while store.conn.in_transaction or not store.outbox.is_empty():
            if time.monotonic() > deadline:
                raise AssertionError(f"the service did not settle within {within_s} s")
            await asyncio.sleep(0.01)
        await asyncio.sleep(0)  # the relay's publish reaches the collectors


def events_of(records: list[OutgoingRecord]) -> list[Event]:
    """The events among published records (dead letters left out)."""
    return [parse_event(r.value, r.headers) for r in records if not r.topic.endswith(".dlq")]

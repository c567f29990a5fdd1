"""The transactional outbox: events are stored in the same transaction as the state that caused them.

A service never publishes from its handler. It writes its new state and the events it emits in one
SQLite transaction; the relay then publishes them in order and deletes them once Kafka acknowledged
them. A crash between the two publishes them again on restart, with the same event ids, and every
consumer deduplicates by event id: state and emitted events can never disagree.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

import orjson

OUTBOX_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    topic TEXT NOT NULL,
    key BLOB NOT NULL,
    value BLOB NOT NULL,
    headers TEXT NOT NULL
);
"""

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class OutgoingRecord:
    topic: str
    key: bytes
    value: bytes
    headers: dict[str, str] = field(default_factory=dict)


class Outbox:
    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        conn.executescript(OUTBOX_SCHEMA)

    def add(self, records: Sequence[OutgoingRecord]) -> None:
        """Append records; call inside the caller's transaction."""
        self.conn.executemany(
            "INSERT INTO outbox (topic, key, value, headers) VALUES (?, ?, ?, ?)",
            [(r.topic, r.key, r.value, orjson.dumps(r.headers).decode()) for r in records],
        )

    def pending(self, limit: int = 500) -> list[tuple[int, OutgoingRecord]]:
        if self.conn.in_transaction:  # a consumer's group not committed yet: its records may roll back
            return []
        rows = self.conn.execute(
            "SELECT id, topic, key, value, headers FROM outbox ORDER BY id LIMIT ?", (limit,)
        ).fetchall()
        return [
            (
                row["id"],
                OutgoingRecord(
                    row["topic"], bytes(row["key"]), bytes(row["value"]), orjson.loads(row["headers"])
                ),
            )
            for row in rows
        ]

    def remove_through(self, last_id: int) -> None:
        # Inside a consumer's open group this delete commits with it; should the group roll back,
        # the records go out again with the same event ids, which every consumer deduplicates.
        self.conn.execute("DELETE FROM outbox WHERE id <= ?", (last_id,))

    def size(self) -> int:
        return int(self.conn.execute("SELECT count(*) FROM outbox").fetchone()[0])

    def is_empty(self) -> bool:
        """Cheaper than ``size() == 0`` on a backlog: count(*) reads every row's page."""
        return self.conn.execute("SELECT 1 FROM outbox LIMIT 1").fetchone() is None


# Sends one record and returns a future that resolves when Kafka acknowledged it.
SendRecord = Callable[[OutgoingRecord], Awaitable[Awaitable[object]]]


class OutboxRelay:
    """Publishes the outbox in order: sends a batch pipelined, awaits every ack, then deletes it."""

    def __init__(self, outbox: Outbox, send: SendRecord, *, idle_poll_s: float = 1.0) -> None:
        self.outbox = outbox
        self.send = send
        self.idle_poll_s = idle_poll_s
        self._wakeup = asyncio.Event()

    def wake(self) -> None:
        """Tell the relay there is something new (called after a commit), so it does not wait a poll."""
        self._wakeup.set()

    async def flush_once(self) -> int:
        batch = self.outbox.pending()
        if not batch:
            return 0
        acks = [await self.send(record) for _, record in batch]
        await asyncio.gather(*acks)
        self.outbox.remove_through(batch[-1][0])
        return len(batch)

    async def run(self) -> None:
        backoff = 0.1
        while True:
            try:
                if await self.flush_once():
                    backoff = 0.1
                    continue
            except asyncio.CancelledError:
                raise
            except Exception:
                # Kafka unreachable: the records stay in the outbox and go out when it is back.
                log.warning("outbox relay could not publish; retrying in %.1f s", backoff, exc_info=True)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            self._wakeup.clear()
            # asyncio.timeout rather than wait_for, which starts a task per wait
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.idle_poll_s):
                    await self._wakeup.wait()

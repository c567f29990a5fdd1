"""The transactional outbox: events are stored in the same transaction as the state that caused them.

A service never publishes from its handler. It writes its new state and the events it emits in one
transaction; the relay then publishes them in order and deletes them once Kafka acknowledged
them. A crash between the two publishes them again on restart, with the same event ids, and every
consumer deduplicates by event id: state and emitted events can never disagree.

What keeps the relay from wedging:

- a batch (its sends and every acknowledgement) must finish within ``ack_timeout_s``; a batch that
  fails or times out makes the sender start over with a new producer (aiokafka's producer fails every
  later send once it has hit a fatal error such as ``OutOfOrderSequenceNumber``), and is sent again —
  the records that did reach Kafka then arrive twice, which consumers deduplicate;
- a row Kafka can never take (larger than the producer's or the broker's size limit) is *parked*: moved
  to ``outbox_parked`` with the error, counted and logged, so that the rows behind it go on;
- on PostgreSQL, where the instances of a service share one outbox, one relay at a time sends (it
  holds an advisory lock; the others stand by and one takes over within ``idle_poll_s`` when its
  process dies or the server ends its lock's session), so that no row is sent by two relays at once
  and one dossier's events leave in the order they were committed (one dossier's events are
  committed by the one instance that holds its partition); the leader reads each batch on its lock's
  own session, so a batch read proves the lock still held (a client learns that the server ended a
  session only by using it); a relay deletes exactly the rows it sent, never a range, so a row
  committed late with a lower id is sent on the next round rather than lost;
- ``lienthong_outbox_pending_records`` and ``lienthong_outbox_oldest_age_seconds`` say how far
  behind the relay is (the age alerts even when the count is small).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import orjson
from aiokafka.errors import MessageSizeTooLargeError, RecordTooLargeError

from services.runtime.storage.database import Connection
from services.runtime.storage.postgres import AdvisoryLock, PostgresConnection
from services.runtime.storage.sqlite import ensure_column

OUTBOX_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    topic TEXT NOT NULL,
    key BLOB NOT NULL,
    value BLOB NOT NULL,
    headers TEXT NOT NULL,
    created_at REAL
);
CREATE TABLE IF NOT EXISTS outbox_parked (
    id INTEGER PRIMARY KEY,
    topic TEXT NOT NULL,
    key BLOB NOT NULL,
    value BLOB NOT NULL,
    headers TEXT NOT NULL,
    created_at REAL,
    parked_at REAL NOT NULL,
    error TEXT NOT NULL
);
"""

log = logging.getLogger(__name__)

# Header values that are not text (a dead letter keeps a record's undecodable header as it came) are
# stored as {"b64": ...} beside the text ones; the marker is looked for before decoding, so text-only
# rows pay nothing.
_BYTES_MARKER = '{"b64":'

# Errors that say this record will never be accepted, whatever the producer: the row is parked.
UNSENDABLE: tuple[type[BaseException], ...] = (MessageSizeTooLargeError, RecordTooLargeError)


@dataclass(frozen=True)
class OutgoingRecord:
    """A record to publish. ``headers`` are text (every header of ours); ``binary_headers`` carry
    values that are not (a dead letter keeps an undecodable header as it came)."""

    topic: str
    key: bytes
    value: bytes
    headers: dict[str, str] = field(default_factory=dict)
    binary_headers: Mapping[str, bytes] = field(default_factory=dict)

    def kafka_headers(self) -> list[tuple[str, bytes]]:
        """The headers as aiokafka sends them."""
        encoded = [(name, value.encode()) for name, value in self.headers.items()]
        return encoded + list(self.binary_headers.items()) if self.binary_headers else encoded


def dump_headers(record: OutgoingRecord) -> str:
    if not record.binary_headers:
        return orjson.dumps(record.headers).decode()
    binary = {k: {"b64": base64.b64encode(v).decode()} for k, v in record.binary_headers.items()}
    return orjson.dumps({**record.headers, **binary}).decode()


def load_headers(text: str) -> tuple[dict[str, str], dict[str, bytes]]:
    """The text headers and the binary ones of a stored row."""
    headers: dict[str, Any] = orjson.loads(text)
    if _BYTES_MARKER not in text:
        return headers, {}
    binary = {k: base64.b64decode(v["b64"]) for k, v in headers.items() if isinstance(v, dict)}
    return {k: v for k, v in headers.items() if not isinstance(v, dict)}, binary


class Outbox:
    """The ``outbox`` table of a store (its schema is part of the store's; see ``OUTBOX_SCHEMA``)."""

    def __init__(self, conn: Connection, *, clock: Callable[[], float] = time.time) -> None:
        self.conn = conn
        self.clock = clock
        self._relay_lock: AdvisoryLock | None = None
        if isinstance(conn, PostgresConnection):
            self._relay_lock = AdvisoryLock(conn, "outbox relay")
        else:  # SQLite files made before the column: their rows read as new
            ensure_column(conn, "outbox", "created_at", "REAL")

    def may_send(self) -> bool:
        """Whether this instance's relay is the one that sends (always, on SQLite: one process)."""
        return self._relay_lock is None or self._relay_lock.try_acquire()

    def stand_down(self) -> None:
        """Let another instance's relay send (this one stops)."""
        if self._relay_lock is not None:
            self._relay_lock.release()

    def add(self, records: Sequence[OutgoingRecord]) -> None:
        """Append records; call inside the caller's transaction."""
        now = self.clock()
        self.conn.executemany(
            "INSERT INTO outbox (topic, key, value, headers, created_at) VALUES (?, ?, ?, ?, ?)",
            [(r.topic, r.key, r.value, dump_headers(r), now) for r in records],
        )

    def pending(self, limit: int = 500) -> list[tuple[int, OutgoingRecord]]:
        if self.conn.in_transaction:  # a consumer's group not committed yet: its records may roll back
            return []
        query = "SELECT id, topic, key, value, headers FROM outbox ORDER BY id LIMIT ?"
        if self._relay_lock is not None and self._relay_lock.held:
            rows = self._relay_lock.read(query, (limit,))  # on the lock's session: proves it held
            if rows is None:
                return []
        else:
            rows = self.conn.execute(query, (limit,)).fetchall()
        return [
            (
                row["id"],
                OutgoingRecord(
                    row["topic"], bytes(row["key"]), bytes(row["value"]), *load_headers(row["headers"])
                ),
            )
            for row in rows
        ]

    def remove(self, row_ids: Sequence[int]) -> None:
        """Delete the rows sent. Inside a consumer's open group this delete commits with it; should
        the group roll back, the records go out again with the same event ids, which every consumer
        deduplicates. Exactly these ids, not a range (see the module's docstring)."""
        if isinstance(self.conn, PostgresConnection):  # one statement, prepared once, for any count
            self.conn.execute("DELETE FROM outbox WHERE id = ANY(?)", (list(row_ids),))
            return
        for start in range(0, len(row_ids), 500):
            chunk = row_ids[start : start + 500]
            self.conn.execute(f"DELETE FROM outbox WHERE id IN ({', '.join('?' * len(chunk))})", chunk)

    def park(self, row_id: int, error: BaseException) -> None:
        """Move a row Kafka will never accept out of the way, keeping it (and why) for an operator."""
        if self.conn.in_transaction:
            return  # the next round parks it, outside the consumer's group
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            self.conn.execute(
                "INSERT INTO outbox_parked (id, topic, key, value, headers, created_at, parked_at, error)"
                " SELECT id, topic, key, value, headers, created_at, ?, ? FROM outbox WHERE id = ?"
                " ON CONFLICT (id) DO UPDATE SET parked_at = excluded.parked_at, error = excluded.error",
                (self.clock(), f"{type(error).__name__}: {error}"[:500], row_id),
            )
            self.conn.execute("DELETE FROM outbox WHERE id = ?", (row_id,))
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")

    def parked(self) -> list[tuple[int, str, str]]:
        """(id, topic, error) of every parked row."""
        rows = self.conn.execute("SELECT id, topic, error FROM outbox_parked ORDER BY id").fetchall()
        return [(int(row["id"]), str(row["topic"]), str(row["error"])) for row in rows]

    def size(self) -> int:
        return int(self.conn.execute("SELECT count(*) FROM outbox").fetchone()[0])

    def is_empty(self) -> bool:
        """Cheaper than ``size() == 0`` on a backlog: count(*) reads every row's page."""
        return self.conn.execute("SELECT 1 FROM outbox LIMIT 1").fetchone() is None

    def oldest_age_s(self) -> float:
        """How long the oldest row has waited (0 when the outbox is empty)."""
        row = self.conn.execute("SELECT created_at FROM outbox ORDER BY id LIMIT 1").fetchone()
        if row is None:
            return 0.0
        created = row["created_at"]
        return max(0.0, self.clock() - float(created)) if created is not None else 0.0


# Sends one record and returns a future that resolves when Kafka acknowledged it.
SendRecord = Callable[[OutgoingRecord], Awaitable[Awaitable[object]]]


@runtime_checkable
class Sender(Protocol):
    """What the relay sends through: a record at a time, and a fresh start after a failure."""

    async def __call__(self, record: OutgoingRecord) -> Awaitable[object]: ...

    async def reset(self) -> None:
        """Drop the producer: the next send starts a new one."""
        ...


class _PlainSender:
    """A :data:`SendRecord` with nothing to reset (FastStream's test broker, tests)."""

    def __init__(self, send: SendRecord) -> None:
        self.send = send

    async def __call__(self, record: OutgoingRecord) -> Awaitable[object]:
        return await self.send(record)

    async def reset(self) -> None:
        return None


class OutboxGauges(Protocol):
    """Where the relay reports its backlog (a service's bound metrics)."""

    def set_outbox(self, pending: int, oldest_age_s: float) -> None: ...

    def parked(self) -> None: ...


class OutboxRelay:
    """Publishes the outbox in order: sends a batch pipelined, awaits every ack, then deletes it."""

    def __init__(
        self,
        outbox: Outbox,
        send: Sender | SendRecord,
        *,
        idle_poll_s: float = 1.0,
        ack_timeout_s: float = 30.0,
        gauges: OutboxGauges | None = None,
        gauges_interval_s: float = 1.0,
    ) -> None:
        self.outbox = outbox
        self.sender: Sender = send if isinstance(send, Sender) else _PlainSender(send)
        self.idle_poll_s = idle_poll_s
        self.ack_timeout_s = ack_timeout_s
        self.gauges = gauges
        self.gauges_interval_s = gauges_interval_s
        self.parked = 0  # rows parked by this relay since it started
        self._wakeup = asyncio.Event()
        self._gauges_at = 0.0

    def wake(self) -> None:
        """Tell the relay there is something new (called after a commit), so it does not wait a poll."""
        self._wakeup.set()

    async def flush_once(self) -> int:
        """Sends the next batch; returns how many rows left the outbox (sent or parked)."""
        if not self.outbox.may_send():
            return 0
        batch = self.outbox.pending()
        if not batch:
            return 0
        async with asyncio.timeout(self.ack_timeout_s):
            acks: list[tuple[int, Awaitable[object]]] = []
            unsendable: list[tuple[int, BaseException]] = []
            for row_id, record in batch:
                try:
                    acks.append((row_id, await self.sender(record)))
                except UNSENDABLE as refused:
                    unsendable.append((row_id, refused))
            results = await asyncio.gather(*(ack for _, ack in acks), return_exceptions=True)
        failed: BaseException | None = None
        for (row_id, _), result in zip(acks, results, strict=True):
            if isinstance(result, UNSENDABLE):
                unsendable.append((row_id, result))
            elif isinstance(result, BaseException) and failed is None:
                failed = result
        if failed is not None:
            raise failed
        for row_id, reason in unsendable:
            self._park(row_id, reason)
        self.outbox.remove([row_id for row_id, _ in batch])
        return len(batch)

    def _park(self, row_id: int, error: BaseException) -> None:
        log.error(
            "outbox row %d can never be sent (%s): parked in outbox_parked; the rows behind it go on",
            row_id,
            type(error).__name__,
        )
        self.outbox.park(row_id, error)
        self.parked += 1
        if self.gauges is not None:
            self.gauges.parked()

    def _report(self) -> None:
        if self.gauges is None:
            return
        now = time.monotonic()
        if now - self._gauges_at < self.gauges_interval_s:
            return
        self._gauges_at = now
        if self.outbox.conn.in_transaction:
            return
        self.gauges.set_outbox(self.outbox.size(), self.outbox.oldest_age_s())

    async def run(self) -> None:
        try:
            await self._run()
        finally:
            self.outbox.stand_down()
            await self.sender.reset()  # the producer's connections close with the relay

    async def _run(self) -> None:
        backoff = 0.1
        while True:
            self._report()
            try:
                if await self.flush_once():
                    backoff = 0.1
                    continue
            except asyncio.CancelledError:
                raise
            except Exception as error:
                # Kafka unreachable, a dead producer or acknowledgements that never came: the records
                # stay in the outbox and go out again through a new producer.
                log.warning(
                    "outbox relay could not publish (%s); new producer, retrying in %.1f s",
                    type(error).__name__,
                    backoff,
                    exc_info=True,
                )
                with contextlib.suppress(Exception):
                    await self.sender.reset()
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            self._wakeup.clear()
            # asyncio.timeout rather than wait_for, which starts a task per wait
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.idle_poll_s):
                    await self._wakeup.wait()

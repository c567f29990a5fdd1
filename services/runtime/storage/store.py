"""The store every consumer shares: which events it processed, and its outbox, in one database.

:meth:`ProcessingStore.commit` records an event as processed, runs the service's own writes and
appends what it emits, in one transaction, in the service's database: its SQLite file, or its schema
in PostgreSQL (:mod:`services.runtime.storage.database`); the same code and guarantees on both.

A consumer commits the records of one poll as a group (:meth:`SqlProcessingStore.grouped`): each
record's commit is a savepoint, atomic on its own, and the group's transaction commits the moment the
consumer yields the event loop — at the end of the poll, or as soon as a handler waits on I/O (an
agency call). So a transaction never spans a wait, nothing else's writes ever join it, and a burst of
records pays one commit instead of one each (a SQLite commit costs more than handling a record).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from contextvars import ContextVar
from typing import Any, ClassVar, Protocol

from services.runtime.storage.database import (
    Connection,
    Migration,
    StoreLocation,
    connect,
    pipelined,
    run_statements,
)
from services.runtime.storage.outbox import OUTBOX_SCHEMA, Outbox, OutgoingRecord
from services.runtime.storage.postgres import NoAnswer, to_postgres_ddl

log = logging.getLogger(__name__)

# WITHOUT ROWID: the id is the whole row, so one b-tree instead of a table and its key's index
_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS processed_events (event_id TEXT PRIMARY KEY) WITHOUT ROWID;" + OUTBOX_SCHEMA
)

Write = Callable[[Connection], None]
"""A service's writes for one record, run inside the record's transaction. It may run for an event
that then proves a duplicate, and be rolled back: what it does beyond the database waits for
:meth:`SqlProcessingStore.after_commit`."""
Callback = Callable[[], None]


class CommitGroup:
    """Commits of one consumer's poll that share a transaction; what runs once they are durable."""

    def __init__(self) -> None:
        self._durable: list[Callback] = []
        self.broken: BaseException | None = None
        self.task = asyncio.current_task()  # a task it starts inherits the context, not the group

    def when_durable(self, callback: Callback) -> None:
        """Run ``callback`` once everything committed so far in the group is committed for good
        (marking a record's offset, waking the relay); never if the group's transaction failed."""
        self._durable.append(callback)

    def _take(self) -> list[Callback]:
        callbacks, self._durable = self._durable, []
        return callbacks


# The group of the consumer task running now: a commit from any other task (a poller, a delayed-retry
# consumer, an HTTP request) is not part of it.
_CURRENT_GROUP: ContextVar[CommitGroup | None] = ContextVar("commit_group", default=None)


class ProcessingStore(Protocol):
    outbox: Outbox

    def was_processed(self, event_id: str) -> bool: ...

    def commit(
        self, event_id: str | None, emitted: Sequence[OutgoingRecord], write: Write | None = None
    ) -> bool:
        """Apply atomically; False (and nothing written) if ``event_id`` was processed before."""
        ...

    def grouped(self) -> AbstractContextManager[CommitGroup]:
        """A context in which this task's commits share transactions (see the module's docstring)."""
        ...


class SqlProcessingStore:
    """A service's store on SQLite or PostgreSQL. A subclass names its tables in ``SCHEMA`` (SQLite's
    DDL, also PostgreSQL's once its types are translated), ``POSTGRES_SCHEMA`` where PostgreSQL needs
    other words (triggers), and appends later versions to ``LATER_MIGRATIONS``."""

    SCHEMA: ClassVar[str] = ""
    POSTGRES_SCHEMA: ClassVar[str | None] = None
    LATER_MIGRATIONS: ClassVar[tuple[Migration, ...]] = ()

    def __init__(self, location: StoreLocation, *, migrate_now: bool | None = None) -> None:
        self.location = location
        self.conn: Connection = connect(location, self.migrations(), migrate_now=migrate_now)
        self.outbox = Outbox(self.conn)
        self._open_group: CommitGroup | None = None  # whose records the open transaction holds
        # The last record's savepoint, not released yet: its RELEASE goes with the next record's
        # SAVEPOINT, or with the COMMIT, in one round trip (see run_statements).
        self._savepoint_held = False
        self._after_commit: list[Callback] = []

    @classmethod
    def migrations(cls) -> tuple[Migration, ...]:
        """Version 1 holds the processed ids, the outbox and the service's tables as first shipped."""
        postgresql = to_postgres_ddl(_SCHEMA) + (
            cls.POSTGRES_SCHEMA if cls.POSTGRES_SCHEMA is not None else to_postgres_ddl(cls.SCHEMA)
        )
        return (Migration(1, _SCHEMA + cls.SCHEMA, postgresql), *cls.LATER_MIGRATIONS)

    def was_processed(self, event_id: str) -> bool:
        found = self.conn.execute("SELECT 1 FROM processed_events WHERE event_id = ?", (event_id,)).fetchone()
        return found is not None

    def after_commit(self, callback: Callback) -> None:
        """Called by a write: run ``callback`` once its commit is durable (never if it rolled back or
        the event was a duplicate): how a write counts something exactly once."""
        self._after_commit.append(callback)

    def commit(
        self, event_id: str | None, emitted: Sequence[OutgoingRecord], write: Write | None = None
    ) -> bool:
        group = _CURRENT_GROUP.get()
        if group is not None and group.task is asyncio.current_task():
            return self._commit_in(group, event_id, emitted, write)
        self.commit_group()  # a consumer's records in the open transaction are committed first
        try:
            applied = self._commit_alone(event_id, emitted, write)
        finally:
            callbacks, self._after_commit = self._after_commit, []
        if applied:
            for callback in callbacks:
                callback()
        return applied

    def _commit_alone(
        self, event_id: str | None, emitted: Sequence[OutgoingRecord], write: Write | None
    ) -> bool:
        """A transaction of its own: on PostgreSQL its BEGIN and writes go in one round trip, and its
        COMMIT in the same one when there is no event id to check."""
        marked: Any = None
        try:
            with pipelined(self.conn):
                self.conn.execute("BEGIN IMMEDIATE")
                marked = self._mark(event_id)
                self._write(emitted, write)
                if marked is None:
                    self.conn.execute("COMMIT")
            if marked is None:
                return True
            applied = _was_new(marked)
            self.conn.execute("COMMIT" if applied else "ROLLBACK")
            return applied
        except BaseException as error:
            if self.conn.in_transaction:
                self.conn.execute("ROLLBACK")
            if _was_duplicate(marked, error, lambda: self._processed_before(event_id)):
                return False
            raise

    @contextmanager
    def grouped(self) -> Iterator[CommitGroup]:
        group = CommitGroup()
        token = _CURRENT_GROUP.set(group)
        try:
            yield group
        finally:
            _CURRENT_GROUP.reset(token)
            if self._open_group is group:
                self.commit_group()
            elif group.broken is None:
                # No transaction of the group is open: what it holds is durable already, or it wrote
                # nothing at all (every record a duplicate or skipped), and its marks still run.
                for callback in group._take():
                    callback()
        if group.broken is not None:
            raise group.broken

    def commit_group(self) -> None:
        """Commit the open group's transaction, if there is one, and run its callbacks."""
        group, self._open_group = self._open_group, None
        if group is None:
            return
        held, self._savepoint_held = self._savepoint_held, False
        try:
            run_statements(self.conn, *(("RELEASE record",) if held else ()), "COMMIT")
        except BaseException as error:
            if self.conn.in_transaction:
                self.conn.execute("ROLLBACK")
            group._take()  # those records were not stored: their offsets must not be committed
            group.broken = error
            raise
        for callback in group._take():
            callback()

    def _commit_in(
        self, group: CommitGroup, event_id: str | None, emitted: Sequence[OutgoingRecord], write: Write | None
    ) -> bool:
        if group.broken is not None:  # a record before this one was lost: nothing after it may count
            raise group.broken
        opening = self._open_group is not group
        if opening:
            self.commit_group()
        marked: Any = None
        try:
            # On PostgreSQL, the savepoint, the processed id and the writes go in one round trip (more
            # only where a write reads); whether the id was new is read once they were all answered.
            with pipelined(self.conn):
                if opening:
                    self.conn.execute("BEGIN IMMEDIATE")
                    self._open_group = group
                    asyncio.get_running_loop().call_soon(self._commit_on_yield, group)
                elif self._savepoint_held:
                    self.conn.execute("RELEASE record")
                self._savepoint_held = False
                self.conn.execute("SAVEPOINT record")
                self._savepoint_held = True
                marked = self._mark(event_id)
                self._write(emitted, write)
            applied = marked is None or _was_new(marked)
        except BaseException as error:
            self._after_commit.clear()
            held, self._savepoint_held = self._savepoint_held, False
            if held:
                run_statements(self.conn, "ROLLBACK TO record", "RELEASE record")
            if _was_duplicate(marked, error, lambda: self._processed_before(event_id)):
                return False
            raise
        callbacks, self._after_commit = self._after_commit, []
        if not applied:  # a duplicate: what its write did is undone, the savepoint stays for the next
            run_statements(self.conn, "ROLLBACK TO record")
            return False
        for callback in callbacks:
            group.when_durable(callback)
        return True

    def _commit_on_yield(self, group: CommitGroup) -> None:
        if self._open_group is not group:
            return
        try:
            self.commit_group()
        except Exception:  # the group's owner raises it (group.broken) at its next commit or its end
            log.exception("committing a group of records failed; they will be redelivered")

    def _mark(self, event_id: str | None) -> Any:
        """Record ``event_id`` as processed; what :func:`_was_new` reads. The service's writes follow
        without waiting for the answer (a round trip on PostgreSQL): should the id turn out to be
        there already, the commit rolls them back."""
        if event_id is None:
            return None
        return self.conn.execute(
            "INSERT INTO processed_events (event_id) VALUES (?) ON CONFLICT DO NOTHING", (event_id,)
        )

    def _processed_before(self, event_id: str | None) -> bool:
        """After a failed commit was rolled back (its own mark with it): whether the id was there."""
        return event_id is not None and self.was_processed(event_id)

    def _write(self, emitted: Sequence[OutgoingRecord], write: Write | None) -> None:
        if write is not None:
            write(self.conn)
        self.outbox.add(emitted)

    def close(self) -> None:
        self.commit_group()
        self.conn.close()


def _was_new(marked: Any) -> bool:
    """Whether the processed id was inserted (not there before)."""
    return bool(marked.rowcount > 0)


def _was_duplicate(marked: Any, error: BaseException, processed_before: Callable[[], bool]) -> bool:
    """Whether ``error`` is what a write met because the event was processed before (its id was
    there already): the commit then applies nothing, as it would for any duplicate. On PostgreSQL a
    write's error can leave the mark's own answer unknown (they went in one batch): then the rolled
    back store is asked."""
    if marked is None or not isinstance(error, Exception):
        return False
    try:
        return bool(marked.rowcount == 0)
    except NoAnswer:
        try:
            return processed_before()
        except Exception:  # the connection broke: not known to be a duplicate
            return False
    except Exception:  # the answer never came (the connection broke): not known to be a duplicate
        return False

"""What every store guarantees on every backend, written once and bound to SQLite and to PostgreSQL in
``test_store_backends.py``: a record's processed id, its writes and what it emits commit together;
a consumer's records share one transaction until the consumer yields, and nothing is lost or
counted early because of it (services/runtime/storage/store.py); the outbox gives back what was
put in it."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from typing import Any, Protocol

import psycopg
import pytest

from services.runtime.storage.database import Connection, SchemaMismatch, StoreLocation, connect
from services.runtime.storage.outbox import OutgoingRecord
from services.runtime.storage.store import SqlProcessingStore


def _record(n: int) -> OutgoingRecord:
    return OutgoingRecord("topic", b"key", f"value {n}".encode())


class Backend(Protocol):
    def location(self, name: str) -> StoreLocation: ...


def committed_ids(store: SqlProcessingStore) -> set[str]:
    """What another connection (another instance, or the store after a crash) sees."""
    other = connect(store.location, store.migrations())
    try:
        return {row[0] for row in other.execute("SELECT event_id FROM processed_events").fetchall()}
    finally:
        other.close()


class StoreContract:
    """Bound to a backend by a subclass giving the ``backend`` fixture."""

    @pytest.fixture
    def store(self, backend: Backend) -> SqlProcessingStore:
        return SqlProcessingStore(backend.location("store"), migrate_now=True)

    async def test_records_handled_without_a_wait_commit_together_at_the_end_of_the_poll(
        self, store: SqlProcessingStore, backend: Backend
    ) -> None:
        durable: list[str] = []
        with store.grouped() as group:
            for n in range(3):
                assert store.commit(f"e{n}", [_record(n)])
                group.when_durable(lambda n=n: durable.append(f"e{n}"))  # type: ignore[misc]
            assert committed_ids(store) == set()  # one transaction, still open
            assert store.outbox.pending() == []  # the relay never sees records that may roll back
            assert durable == []
        assert committed_ids(store) == {"e0", "e1", "e2"}
        assert durable == ["e0", "e1", "e2"]
        assert [r.value for _, r in store.outbox.pending()] == [b"value 0", b"value 1", b"value 2"]

    async def test_a_duplicate_within_the_poll_is_seen_before_the_group_commits(
        self, store: SqlProcessingStore
    ) -> None:
        with store.grouped():
            assert store.commit("e1", [_record(1)])
            assert store.was_processed("e1")
            assert not store.commit("e1", [_record(1)])
        assert len(store.outbox.pending()) == 1

    async def test_the_group_commits_as_soon_as_the_consumer_waits(
        self, store: SqlProcessingStore, backend: Backend
    ) -> None:
        """A handler awaiting an agency: the records before it must not wait in an open transaction."""
        with store.grouped():
            store.commit("e1", [_record(1)])
            await asyncio.sleep(0)  # the handler of the next record waits on I/O
            assert committed_ids(store) == {"e1"}
            store.commit("e2", [_record(2)])
        assert committed_ids(store) == {"e1", "e2"}

    async def test_a_failing_write_rolls_back_its_own_record_only(
        self, store: SqlProcessingStore, backend: Backend
    ) -> None:
        def failing(conn: Connection) -> None:
            conn.execute("INSERT INTO processed_events (event_id) VALUES ('half-done')")
            raise RuntimeError("the store failed mid-write")

        with pytest.raises(RuntimeError), store.grouped():
            store.commit("e1", [_record(1)])
            store.commit("e2", [_record(2)], failing)
        assert committed_ids(store) == {"e1"}
        assert [r.value for _, r in store.outbox.pending()] == [b"value 1"]

    async def test_a_duplicate_whose_write_fails_for_being_one_applies_nothing_and_the_poll_goes_on(
        self, store: SqlProcessingStore
    ) -> None:
        """A write runs before its event is known to be new (on PostgreSQL the two go in one round
        trip): when it fails only because the event was stored before, the commit is a duplicate's."""

        def once_only(conn: Connection) -> None:  # no ON CONFLICT: a second run breaks the key
            conn.execute("INSERT INTO processed_events (event_id) VALUES ('written by e1')")

        assert store.commit("e1", [_record(1)], once_only)
        assert not store.commit("e1", [_record(1)], once_only)  # a transaction of its own
        with store.grouped():
            assert not store.commit("e1", [_record(1)], once_only)
            assert store.commit("e2", [_record(2)])
        assert committed_ids(store) == {"e1", "written by e1", "e2"}
        assert [r.value for _, r in store.outbox.pending()] == [b"value 1", b"value 2"]

    async def test_a_write_reads_the_real_count_of_rows_its_statement_changed(
        self, store: SqlProcessingStore
    ) -> None:
        """A lease check reads ``rowcount``: it must be the server's answer, never "not known yet"."""
        counts: list[int] = []

        def update(event_id: str) -> Callable[[Connection], None]:
            def write(conn: Connection) -> None:
                changed = conn.execute(
                    "UPDATE processed_events SET event_id = event_id WHERE event_id = ?", (event_id,)
                )
                counts.append(changed.rowcount)

            return write

        with store.grouped():
            store.commit("e1", [], update("no such event"))
            store.commit("e2", [], update("e1"))
        store.commit("e3", [], update("nothing"))
        store.commit(None, [], update("e3"))
        assert counts == [0, 1, 0, 1]

    async def test_a_writes_values_are_stored_as_given_whatever_they_hold(
        self, store: SqlProcessingStore, backend: Backend
    ) -> None:
        """On PostgreSQL a record's statements are bound client-side and sent as one query: a value
        that reads like SQL, a placeholder or an escape must come back as it went in, never run."""
        tricky = [
            "it's; DROP TABLE processed_events; --",
            "100% sure, %s and %% and ? and $1",
            "back\\slash \\x00 and E'quoted'",
            "Nguyễn Thị Minh Khai \U0001f3db",
        ]

        def write(conn: Connection) -> None:
            for text in tricky:
                conn.execute("INSERT INTO processed_events (event_id) VALUES (?)", (text,))

        answers: list[tuple[Any, ...]] = []

        def read(conn: Connection) -> None:
            # a parameter the server cannot type from its place (PostgreSQL would not prepare this)
            answers.append(tuple(conn.execute("SELECT ? IS NULL, ?", (None, tricky[1])).fetchone()))

        with store.grouped():
            assert store.commit("e1", [_record(1)], write)
            assert store.commit("e2", [], read)
        assert [(bool(is_null), text) for is_null, text in answers] == [(True, tricky[1])]
        assert committed_ids(store) == {"e1", "e2", *tricky}
        assert [r.value for _, r in store.outbox.pending()] == [b"value 1"]

    async def test_statements_run_the_same_before_and_after_rollbacks(
        self, store: SqlProcessingStore
    ) -> None:
        """On PostgreSQL the store prepares its statements once per session; a rollback (a failed
        record's, or a whole transaction's) must not take them away from the records after it."""

        def failing(conn: Connection) -> None:
            conn.execute("INSERT INTO processed_events (event_id) VALUES (?)", ("e0",))  # e0's key: breaks

        for n in range(8):  # more than the few runs after which a driver would prepare on its own
            with store.grouped():
                assert store.commit(f"e{n}", [_record(n)])
                with pytest.raises((sqlite3.IntegrityError, psycopg.errors.UniqueViolation)):
                    store.commit(f"bad{n}", [], failing)
            with pytest.raises((sqlite3.IntegrityError, psycopg.errors.UniqueViolation)):
                store.commit(f"worse{n}", [], failing)
        assert committed_ids(store) == {f"e{n}" for n in range(8)}
        assert [r.value for _, r in store.outbox.pending()] == [f"value {n}".encode() for n in range(8)]

    async def test_another_tasks_commit_commits_the_open_group_first_and_stands_alone(
        self, store: SqlProcessingStore, backend: Backend
    ) -> None:
        """A poller or a delayed-retry consumer writes while a connector's handler waits."""
        durable: list[str] = []

        async def poller() -> None:
            store.commit(None, [_record(99)])

        with store.grouped() as group:
            task = asyncio.create_task(poller())  # ready to run before the group's own commit is due
            store.commit("e1", [_record(1)])
            group.when_durable(lambda: durable.append("e1"))
            await task
            assert durable == ["e1"]
            assert committed_ids(store) == {"e1"}
        assert [r.value for _, r in store.outbox.pending()] == [b"value 1", b"value 99"]

    async def test_callbacks_of_a_write_run_once_durable_and_never_for_a_duplicate(
        self, store: SqlProcessingStore
    ) -> None:
        counted: list[str] = []

        def counting(conn: Connection) -> None:
            store.after_commit(lambda: counted.append("closed"))

        with store.grouped():
            store.commit("e1", [], counting)
            store.commit("e1", [], counting)
            assert counted == []
        assert counted == ["closed"]
        store.commit("e2", [], counting)  # outside a group: at once
        assert counted == ["closed", "closed"]

    async def test_when_the_group_cannot_commit_no_record_of_it_counts_as_stored(
        self, store: SqlProcessingStore, backend: Backend
    ) -> None:
        durable: list[str] = []
        store.conn.execute("CREATE TABLE guard (x INTEGER PRIMARY KEY)")
        # A deferred constraint fails at COMMIT, as a full disk would: the whole group is lost.
        store.conn.execute(
            "CREATE TABLE child (id INTEGER REFERENCES guard (x) DEFERRABLE INITIALLY DEFERRED)"
        )

        def orphan(conn: Connection) -> None:
            conn.execute("INSERT INTO child (id) VALUES (1)")

        with pytest.raises((sqlite3.IntegrityError, psycopg.IntegrityError)), store.grouped() as group:
            store.commit("e1", [_record(1)])
            group.when_durable(lambda: durable.append("e1"))
            store.commit("e2", [_record(2)], orphan)
            group.when_durable(lambda: durable.append("e2"))
        assert durable == []  # so no offset is marked and both records come again
        assert committed_ids(store) == set()
        assert store.commit("e1", [_record(1)])  # the store works on

    async def test_a_second_instance_skips_what_the_first_processed(
        self, store: SqlProcessingStore, backend: Backend
    ) -> None:
        other = SqlProcessingStore(backend.location("store"))
        assert store.commit("e1", [_record(1)])
        assert other.was_processed("e1")
        assert not other.commit("e1", [_record(1)])
        assert [r.value for _, r in other.outbox.pending()] == [b"value 1"]

    async def test_the_outbox_gives_back_keys_values_and_headers_of_any_bytes(
        self, store: SqlProcessingStore, backend: Backend
    ) -> None:
        record = OutgoingRecord(
            "dossier.received", b"\x00key\xff", bytes(range(256)), {"ce_id": "é-1"}, {"raw": b"\xc3\x28"}
        )
        store.commit("e1", [record])
        [(row_id, back)] = store.outbox.pending()
        assert back == record
        store.outbox.remove([row_id])
        assert store.outbox.is_empty() and store.outbox.size() == 0

    async def test_a_row_kafka_refuses_is_parked_with_its_reason(
        self, store: SqlProcessingStore, backend: Backend
    ) -> None:
        store.commit("e1", [_record(1), _record(2)])
        first, second = store.outbox.pending()
        store.outbox.park(first[0], ValueError("too large"))
        assert store.outbox.parked() == [(first[0], "topic", "ValueError: too large")]
        assert [row_id for row_id, _ in store.outbox.pending()] == [second[0]]

    async def test_a_schema_newer_than_this_release_is_refused(
        self, store: SqlProcessingStore, backend: Backend
    ) -> None:
        store.conn.execute("INSERT INTO schema_version (version, applied_at) VALUES (99, 'later')")
        with pytest.raises(SchemaMismatch, match="schema version 99, newer than this release knows"):
            SqlProcessingStore(backend.location("store"))

"""A consumer's records share one transaction until the consumer yields; nothing is lost or counted
early because of it (services/runtime/store.py)."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from services.runtime.outbox import OutgoingRecord
from services.runtime.store import SqliteProcessingStore


def _record(n: int) -> OutgoingRecord:
    return OutgoingRecord("topic", b"key", f"value {n}".encode())


def _committed_ids(path: Path) -> set[str]:
    """What another connection (another process, or the store after a crash) sees."""
    with sqlite3.connect(path) as other:
        return {row[0] for row in other.execute("SELECT event_id FROM processed_events")}


@pytest.fixture
def store(tmp_path: Path) -> SqliteProcessingStore:
    return SqliteProcessingStore(tmp_path / "store.db")


async def test_records_handled_without_a_wait_commit_together_at_the_end_of_the_poll(
    store: SqliteProcessingStore, tmp_path: Path
) -> None:
    durable: list[str] = []
    with store.grouped() as group:
        for n in range(3):
            assert store.commit(f"e{n}", [_record(n)])
            group.when_durable(lambda n=n: durable.append(f"e{n}"))  # type: ignore[misc]
        assert _committed_ids(tmp_path / "store.db") == set()  # one transaction, still open
        assert store.outbox.pending() == []  # the relay never sees records that may roll back
        assert durable == []
    assert _committed_ids(tmp_path / "store.db") == {"e0", "e1", "e2"}
    assert durable == ["e0", "e1", "e2"]
    assert [r.value for _, r in store.outbox.pending()] == [b"value 0", b"value 1", b"value 2"]


async def test_a_duplicate_within_the_poll_is_seen_before_the_group_commits(
    store: SqliteProcessingStore,
) -> None:
    with store.grouped():
        assert store.commit("e1", [_record(1)])
        assert store.was_processed("e1")
        assert not store.commit("e1", [_record(1)])
    assert len(store.outbox.pending()) == 1


async def test_the_group_commits_as_soon_as_the_consumer_waits(
    store: SqliteProcessingStore, tmp_path: Path
) -> None:
    """A handler awaiting an agency: the records before it must not wait in an open transaction."""
    with store.grouped():
        store.commit("e1", [_record(1)])
        await asyncio.sleep(0)  # the handler of the next record waits on I/O
        assert _committed_ids(tmp_path / "store.db") == {"e1"}
        store.commit("e2", [_record(2)])
    assert _committed_ids(tmp_path / "store.db") == {"e1", "e2"}


async def test_a_failing_write_rolls_back_its_own_record_only(
    store: SqliteProcessingStore, tmp_path: Path
) -> None:
    def failing(conn: sqlite3.Connection) -> None:
        conn.execute("INSERT INTO processed_events (event_id) VALUES ('half-done')")
        raise RuntimeError("the store failed mid-write")

    with pytest.raises(RuntimeError), store.grouped():
        store.commit("e1", [_record(1)])
        store.commit("e2", [_record(2)], failing)
    assert _committed_ids(tmp_path / "store.db") == {"e1"}
    assert [r.value for _, r in store.outbox.pending()] == [b"value 1"]


async def test_another_tasks_commit_commits_the_open_group_first_and_stands_alone(
    store: SqliteProcessingStore, tmp_path: Path
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
        assert _committed_ids(tmp_path / "store.db") == {"e1"}
    assert [r.value for _, r in store.outbox.pending()] == [b"value 1", b"value 99"]


async def test_callbacks_of_a_write_run_once_durable_and_never_for_a_duplicate(
    store: SqliteProcessingStore,
) -> None:
    counted: list[str] = []

    def counting(conn: sqlite3.Connection) -> None:
        store.after_commit(lambda: counted.append("closed"))

    with store.grouped():
        store.commit("e1", [], counting)
        store.commit("e1", [], counting)
        assert counted == []
    assert counted == ["closed"]
    store.commit("e2", [], counting)  # outside a group: at once
    assert counted == ["closed", "closed"]


async def test_when_the_group_cannot_commit_no_record_of_it_counts_as_stored(
    store: SqliteProcessingStore, tmp_path: Path
) -> None:
    durable: list[str] = []
    store.conn.execute("CREATE TABLE guard (x INTEGER PRIMARY KEY)")
    # A deferred constraint fails at COMMIT, as a full disk would: the whole group is lost.
    store.conn.execute("CREATE TABLE child (id INTEGER REFERENCES guard (x) DEFERRABLE INITIALLY DEFERRED)")

    def orphan(conn: sqlite3.Connection) -> None:
        conn.execute("INSERT INTO child (id) VALUES (1)")

    with pytest.raises(sqlite3.IntegrityError), store.grouped() as group:
        store.commit("e1", [_record(1)])
        group.when_durable(lambda: durable.append("e1"))
        store.commit("e2", [_record(2)], orphan)
        group.when_durable(lambda: durable.append("e2"))
    assert durable == []  # so no offset is marked and both records come again
    assert _committed_ids(tmp_path / "store.db") == set()
    assert store.commit("e1", [_record(1)])  # the store works on

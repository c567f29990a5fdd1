"""The services' SQLite stores commit durably: a transaction whose Kafka offset was committed must
survive a power loss, which WAL with ``synchronous=NORMAL`` does not promise."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.runtime.storage.sqlite import ensure_column, open_db

FULL, NORMAL = 2, 1  # PRAGMA synchronous values


def test_stores_open_in_wal_with_a_full_fsync_on_commit(tmp_path: Path) -> None:
    conn = open_db(tmp_path / "store.db")
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA synchronous").fetchone()[0] == FULL


def test_the_bench_can_measure_the_old_setting(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LIENTHONG_SQLITE_SYNCHRONOUS", "NORMAL")
    assert open_db(tmp_path / "store.db").execute("PRAGMA synchronous").fetchone()[0] == NORMAL


def test_a_store_made_by_an_older_release_gets_its_new_columns(tmp_path: Path) -> None:
    conn = open_db(tmp_path / "old.db", "CREATE TABLE handoffs (handoff_id TEXT PRIMARY KEY);")
    conn.execute("INSERT INTO handoffs VALUES ('h-1')")
    ensure_column(conn, "handoffs", "poll_failures", "INTEGER NOT NULL DEFAULT 0")
    ensure_column(conn, "handoffs", "poll_failures", "INTEGER NOT NULL DEFAULT 0")  # once only
    rows = conn.execute("SELECT handoff_id, poll_failures FROM handoffs").fetchall()
    assert [tuple(row) for row in rows] == [("h-1", 0)]

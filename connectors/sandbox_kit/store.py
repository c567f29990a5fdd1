"""A tiny SQLite helper for the sandboxes.

One connection per sandbox, guarded by a re-entrant lock: the sandboxes are small, every
call is short, and ``:memory:`` databases only exist on the connection that made them.
File databases use WAL so a reader (a test peeking at the file) never blocks the writer.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

Record = dict[str, Any]
Params = Sequence[Any] | dict[str, Any]

_KIT_SCHEMA = """
CREATE TABLE IF NOT EXISTS sequences (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""


def _to_record(row: sqlite3.Row) -> Record:
    return {key: row[key] for key in row.keys()}  # noqa: SIM118 - sqlite3.Row is not a mapping


class Store:
    """The sandbox's own storage: a file path or ``:memory:``."""

    def __init__(self, path: str | os.PathLike[str] = ":memory:", schema: str = "") -> None:
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        # Autocommit mode; transaction() issues BEGIN IMMEDIATE explicitly.
        self._conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._conn.row_factory = sqlite3.Row
        with self._lock:
            if self.path != ":memory:":
                self._conn.execute("PRAGMA journal_mode=WAL")
                # WAL + NORMAL survives a killed process (the fault tests SIGKILL sandboxes); only an OS
                # crash may lose the last commits. It keeps an fsync off each of a call's three commits.
                self._conn.execute("PRAGMA synchronous=NORMAL")
            self._conn.execute("PRAGMA busy_timeout=5000")
            self._conn.execute("PRAGMA foreign_keys=ON")
            self._conn.executescript(_KIT_SCHEMA)
            if schema:
                self._conn.executescript(schema)

    def apply_schema(self, schema: str) -> None:
        with self._lock:
            self._conn.executescript(schema)

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """Hold the lock and one SQLite transaction; commit on success, roll back on error."""
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def execute(self, sql: str, params: Params = ()) -> sqlite3.Cursor:
        with self._lock:
            return self._conn.execute(sql, params)

    def fetch_all(self, sql: str, params: Params = ()) -> list[Record]:
        with self._lock:
            return [_to_record(row) for row in self._conn.execute(sql, params).fetchall()]

    def fetch_one(self, sql: str, params: Params = ()) -> Record | None:
        with self._lock:
            row = self._conn.execute(sql, params).fetchone()
        return None if row is None else _to_record(row)

    @staticmethod
    def next_sequence(conn: sqlite3.Connection, name: str) -> int:
        """The next number of a named counter; call inside ``transaction()``."""
        conn.execute(
            "INSERT INTO sequences (name, value) VALUES (?, 1) "
            "ON CONFLICT(name) DO UPDATE SET value = value + 1",
            (name,),
        )
        row = conn.execute("SELECT value FROM sequences WHERE name = ?", (name,)).fetchone()
        return int(row["value"])

    def tables(self) -> list[str]:
        rows = self.fetch_all(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name"
        )
        return [str(row["name"]) for row in rows]

    def records(self, table: str) -> list[Record]:
        """Every row of one of the store's own tables (the name is checked, never interpolated blindly)."""
        if table not in self.tables():
            raise KeyError(table)
        return self.fetch_all(f'SELECT * FROM "{table}" ORDER BY rowid')

    def counts(self) -> dict[str, int]:
        """Row count per table: what tests use to count side effects."""
        result: dict[str, int] = {}
        for table in self.tables():
            row = self.fetch_one(f'SELECT COUNT(*) AS n FROM "{table}"')
            result[table] = int(row["n"]) if row else 0
        return result

    def close(self) -> None:
        with self._lock:
            self._conn.close()

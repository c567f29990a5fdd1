"""The store every consumer shares: which events it processed, and its outbox, in one database.

:meth:`ProcessingStore.commit` records an event as processed, runs the service's own writes and
appends what it emits, in one transaction. SQLite by default; a PostgreSQL store implements the same
protocol so that several instances of a service can share it.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol

from services.runtime.outbox import Outbox, OutgoingRecord
from services.runtime.sqlite import open_db, transaction

_SCHEMA = "CREATE TABLE IF NOT EXISTS processed_events (event_id TEXT PRIMARY KEY);"

Write = Callable[[sqlite3.Connection], None]


class ProcessingStore(Protocol):
    outbox: Outbox

    def was_processed(self, event_id: str) -> bool: ...

    def commit(
        self, event_id: str | None, emitted: Sequence[OutgoingRecord], write: Write | None = None
    ) -> bool:
        """Apply atomically; False (and nothing written) if ``event_id`` was processed before."""
        ...


class SqliteProcessingStore:
    def __init__(self, path: Path | str, schema: str = "") -> None:
        self.conn = open_db(path, _SCHEMA + schema)
        self.outbox = Outbox(self.conn)

    def was_processed(self, event_id: str) -> bool:
        found = self.conn.execute("SELECT 1 FROM processed_events WHERE event_id = ?", (event_id,)).fetchone()
        return found is not None

    def commit(
        self, event_id: str | None, emitted: Sequence[OutgoingRecord], write: Write | None = None
    ) -> bool:
        with transaction(self.conn):
            if event_id is not None:
                inserted = self.conn.execute(
                    "INSERT OR IGNORE INTO processed_events (event_id) VALUES (?)", (event_id,)
                ).rowcount
                if not inserted:
                    return False
            if write is not None:
                write(self.conn)
            self.outbox.add(emitted)
        return True

    def close(self) -> None:
        self.conn.close()

"""SQLite as the services' default store: one connection per store, WAL, short transactions.

Calls are synchronous: each transaction touches a few rows and takes well under a millisecond, which
costs less than handing it to a thread.

``synchronous=FULL``: a commit is on disk before it returns, so a power loss never undoes a
transaction whose Kafka offset was already committed (with ``NORMAL`` in WAL mode the last
transactions can roll back on power loss). Consumers commit a poll's records as one group, so the
fsync is paid once per poll, not per record. ``LIENTHONG_SQLITE_SYNCHRONOUS=NORMAL`` exists only to
measure the difference (``lienthong bench``).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

if TYPE_CHECKING:
    from services.runtime.storage.database import Connection


class SqliteSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LIENTHONG_SQLITE_", extra="ignore")

    synchronous: Literal["FULL", "NORMAL"] = Field(
        default="FULL",
        description="SQLite's synchronous pragma; FULL keeps committed work across power loss.",
    )


def open_db(path: Path | str, schema: str = "") -> sqlite3.Connection:
    if str(path) != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA synchronous={SqliteSettings().synchronous}")
    conn.execute("PRAGMA busy_timeout=5000")
    conn.execute("PRAGMA foreign_keys=ON")
    if schema:
        conn.executescript(schema)
    return conn


def ensure_column(conn: Connection, table: str, column: str, declaration: str) -> None:
    """Add ``column`` to ``table`` when a database made by an older release lacks it."""
    columns = {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}
    if column not in columns:
        conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} {declaration}")

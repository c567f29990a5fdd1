"""Intake's store: one row per Idempotency-Key, the day's receipt numbers, and the outbox."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

from services.runtime.outbox import OutgoingRecord
from services.runtime.sqlite import transaction
from services.runtime.store import SqliteProcessingStore

_SCHEMA = """
CREATE TABLE IF NOT EXISTS submissions (
    idempotency_key TEXT PRIMARY KEY,
    request_hash TEXT NOT NULL,
    dossier_id TEXT NOT NULL,
    response TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS receipt_numbers (day TEXT PRIMARY KEY, last INTEGER NOT NULL);
"""


def request_hash(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


@dataclass(frozen=True)
class StoredSubmission:
    request_hash: str
    response: dict[str, Any]


class KeyReused(Exception):
    """The Idempotency-Key was used before for a different dossier."""


class IntakeStore(SqliteProcessingStore):
    def __init__(self, path: Path | str) -> None:
        super().__init__(path, _SCHEMA)

    def find(self, key: str) -> StoredSubmission | None:
        row = self.conn.execute(
            "SELECT request_hash, response FROM submissions WHERE idempotency_key = ?", (key,)
        ).fetchone()
        return StoredSubmission(row["request_hash"], json.loads(row["response"])) if row else None

    def accept(
        self,
        key: str,
        body_hash: str,
        day: date,
        build: Callable[[int], tuple[str, dict[str, Any], list[OutgoingRecord]]],
    ) -> tuple[dict[str, Any], bool]:
        """Store a new dossier under ``key`` (``build`` gets the day's receipt number and returns the
        dossier id, the response and the records to publish), or return the one stored before.
        The second value says whether this call created it."""
        with transaction(self.conn):
            row = self.conn.execute(
                "SELECT request_hash, response FROM submissions WHERE idempotency_key = ?", (key,)
            ).fetchone()
            if row is not None:
                if row["request_hash"] != body_hash:
                    raise KeyReused(key)
                return json.loads(row["response"]), False
            number = self.conn.execute(
                "INSERT INTO receipt_numbers (day, last) VALUES (?, 1) "
                "ON CONFLICT (day) DO UPDATE SET last = last + 1 RETURNING last",
                (day.isoformat(),),
            ).fetchone()[0]
            dossier_id, response, records = build(int(number))
            self.conn.execute(
                "INSERT INTO submissions (idempotency_key, request_hash, dossier_id, response) "
                "VALUES (?, ?, ?, ?)",
                (key, body_hash, dossier_id, json.dumps(response)),
            )
            self.outbox.add(records)
        return response, True

"""Intake's store: one row per Idempotency-Key, the day's receipt numbers, and the outbox."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from typing import Any

from services.runtime.storage.database import pipelined, transaction
from services.runtime.storage.outbox import OutgoingRecord
from services.runtime.storage.store import SqlProcessingStore

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


class IntakeStore(SqlProcessingStore):
    """The receipt number is a row per day incremented in the submission's transaction: its row lock
    makes numbers unique across any number of intake instances sharing a PostgreSQL schema."""

    SCHEMA = _SCHEMA

    def find(self, key: str) -> StoredSubmission | None:
        return _stored(self.conn.execute(_FIND_SUBMISSION, (key,)).fetchone())

    def accept(
        self,
        key: str,
        body_hash: str,
        day: date,
        build: Callable[[int], tuple[str, dict[str, Any], list[OutgoingRecord]]],
    ) -> tuple[dict[str, Any], bool]:
        """Store a new dossier under ``key`` (``build`` gets the day's receipt number and returns the
        dossier id, the response and the records to publish), or return the one stored before.
        The second value says whether this call created it.

        Two instances given the same key at the same moment both find no submission and both go on;
        on PostgreSQL the second one's insert then waits for the first's transaction and finds the
        key taken. It rolls back (its receipt number and its event with it, so the day's numbers keep
        no gap) and answers what the first one stored, like any later retry.

        On PostgreSQL the statements go in batches, so the submission costs three round trips, not
        six: the key's lookup goes with the day's number (rolled back if the key was stored before),
        the submission's row with its records, and the COMMIT alone."""
        earlier: StoredSubmission | None = None  # the key's submission, when this call is a retry
        try:
            with pipelined(self.conn), transaction(self.conn):
                found = self.conn.execute(_FIND_SUBMISSION, (key,))
                numbered = self.conn.execute(
                    "INSERT INTO receipt_numbers (day, last) VALUES (?, 1) "
                    "ON CONFLICT (day) DO UPDATE SET last = receipt_numbers.last + 1 RETURNING last",
                    (day.isoformat(),),
                )
                earlier = _stored(found.fetchone())
                if earlier is not None:
                    raise _KeyTaken  # a retry: its number is rolled back
                dossier_id, response, records = build(int(numbered.fetchone()[0]))
                inserted = self.conn.execute(
                    "INSERT INTO submissions (idempotency_key, request_hash, dossier_id, response) "
                    "VALUES (?, ?, ?, ?) ON CONFLICT (idempotency_key) DO NOTHING",
                    (key, body_hash, dossier_id, json.dumps(response)),
                )
                self.outbox.add(records)
                if not inserted.rowcount:
                    raise _KeyTaken
        except _KeyTaken:
            stored = earlier or self.find(key)
            if stored is None:  # cannot be: the key's row was committed before this insert gave way
                raise RuntimeError(f"Idempotency-Key {key!r} was taken and then vanished") from None
            if stored.request_hash != body_hash:
                raise KeyReused(key) from None
            return stored.response, False
        return response, True


_FIND_SUBMISSION = "SELECT request_hash, response FROM submissions WHERE idempotency_key = ?"


def _stored(row: Any) -> StoredSubmission | None:
    return StoredSubmission(row["request_hash"], json.loads(row["response"])) if row else None


class _KeyTaken(Exception):
    """The Idempotency-Key was stored before: by an earlier call, or by another instance while this
    one was numbering its dossier."""

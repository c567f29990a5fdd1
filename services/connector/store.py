"""The connector host's store: where each handoff is in its life, and the pending jobs to poll.

A handoff's life: (none) → ``retrying`` (on a delay tier, with its attempt) → ``pending`` (polled) →
``settled``; or → ``dead_lettered``, from which only an operator's replay (``lienthong dlq replay``)
brings it back. The processed ids and the outbox share its database (:class:`SqlProcessingStore`).

Several instances of one agency's connector share its store on PostgreSQL, so a pending job is
*leased* before it is polled (:meth:`ConnectorStore.claim_due_polls`): the instance whose ``owner``
the row names polls it until ``lease_until``, and no other instance does; recording the poll's
outcome clears the lease (:meth:`ConnectorStore.recording`), and only while the instance still holds
it (:meth:`ConnectorStore.while_leased`). An instance that dies leaves its leases to expire, after
which another instance claims the jobs. The instances' clocks are compared (each writes its own
``lease_until``): the lease's margin covers the small skew of synchronised hosts.
"""

from __future__ import annotations

import os
import secrets
import socket
from collections.abc import Sequence
from typing import NamedTuple

from schemas.events import HandoffRequested, parse_event
from services.runtime.storage.database import Connection, Row, StoreLocation, dialect
from services.runtime.storage.sqlite import ensure_column
from services.runtime.storage.store import SqlProcessingStore, Write

_SCHEMA = """
CREATE TABLE IF NOT EXISTS handoffs (
    handoff_id TEXT PRIMARY KEY,
    request TEXT NOT NULL,          -- the request as received while pending (it is polled); else ''
    state TEXT NOT NULL,            -- retrying, pending, settled or dead_lettered
    attempt INTEGER NOT NULL DEFAULT 0,  -- retrying: the delay tier's attempt; pending: polls so far
    poll_token TEXT,
    next_poll_at REAL,
    replay_id TEXT,                 -- the operator's replay this attempt belongs to (outcome ids)
    poll_failures INTEGER NOT NULL DEFAULT 0,  -- pending: failed polls in a row
    first_failure_at TEXT,          -- pending: when the first of those failed
    lease_owner TEXT,               -- pending: the instance polling it now (see the module's docstring)
    lease_until REAL                -- pending: until when that instance alone may poll it
);
DROP INDEX IF EXISTS handoffs_due;
CREATE INDEX IF NOT EXISTS handoffs_pending ON handoffs (next_poll_at) WHERE state = 'pending';
"""
# Columns newer than the table (stores made before them get them on start).
_ADDED_COLUMNS = (
    ("replay_id", "TEXT"),
    ("poll_failures", "INTEGER NOT NULL DEFAULT 0"),
    ("first_failure_at", "TEXT"),
    ("lease_owner", "TEXT"),
    ("lease_until", "REAL"),
)

_CLAIMED = (
    "handoff_id, request, poll_token, attempt, replay_id, poll_failures, first_failure_at, next_poll_at"
)
# The due jobs no live lease holds, leased to the caller in the same statement. On PostgreSQL the
# rows are locked as they are chosen, and those another instance's claim or recording holds at that
# moment are skipped rather than waited for (one instance's claim never blocks another's).
_CLAIM = (
    "UPDATE handoffs SET lease_owner = ?, lease_until = ? WHERE handoff_id IN ("
    "SELECT handoff_id FROM handoffs WHERE state = 'pending' AND next_poll_at <= ?"
    " AND (lease_until IS NULL OR lease_until < ?) ORDER BY next_poll_at LIMIT ?{lock})"
    f" RETURNING {_CLAIMED}"
)
_CLAIM_SQL = {"sqlite": _CLAIM.format(lock=""), "postgresql": _CLAIM.format(lock=" FOR UPDATE SKIP LOCKED")}

RETRYING, PENDING, SETTLED, DEAD_LETTERED = "retrying", "pending", "settled", "dead_lettered"


def instance_owner() -> str:
    """A name no other instance has, now or later: host, process and a random part (a restarted
    process may reuse its pid, a container its host name)."""
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(4)}"


class LeaseLost(Exception):
    """This instance's lease on a pending job was taken by another instance (this one stalled past
    it): what this instance found out by polling must not be recorded over what the other did."""


class HandoffRow(NamedTuple):
    state: str
    attempt: int


class DuePoll(NamedTuple):
    request: HandoffRequested
    stored: bytes | str  # the request as the row holds it
    poll_token: str
    polls: int  # made so far
    replay_id: str | None = None
    failures: int = 0  # failed polls in a row
    first_failure_at: str | None = None
    lease_until: float = 0.0  # until when this instance alone may poll it


class ConnectorStore(SqlProcessingStore):
    """``owner`` names this instance in the leases it takes (:func:`instance_owner` unless given)."""

    SCHEMA = _SCHEMA

    def __init__(
        self, location: StoreLocation, *, migrate_now: bool | None = None, owner: str | None = None
    ) -> None:
        super().__init__(location, migrate_now=migrate_now)
        self.owner = owner or instance_owner()
        if dialect(self.conn) == "sqlite":  # files made before the schema was versioned
            for column, declaration in _ADDED_COLUMNS:
                ensure_column(self.conn, "handoffs", column, declaration)

    def handoff(self, handoff_id: str) -> HandoffRow | None:
        row = self.conn.execute(
            "SELECT state, attempt FROM handoffs WHERE handoff_id = ?", (handoff_id,)
        ).fetchone()
        return HandoffRow(str(row["state"]), int(row["attempt"])) if row else None

    def next_poll_at(self) -> float | None:
        """When the earliest pending handoff may be polled (None when none is pending): when it is due,
        or when its lease ends if another poll holds it longer."""
        row = self.conn.execute(
            "SELECT min(CASE WHEN lease_until > next_poll_at THEN lease_until ELSE next_poll_at END)"
            " FROM handoffs WHERE state = 'pending'"
        ).fetchone()
        return None if row[0] is None else float(row[0])

    def claim_due_polls(self, now: float, lease_s: float, limit: int = 100) -> list[DuePoll]:
        """The pending handoffs due at ``now`` that no instance holds, earliest first, each now leased
        to this instance until ``now + lease_s`` (committed before it returns, so that another
        instance's claim sees it)."""
        claimed: list[Row] = []

        def claim(conn: Connection) -> None:
            sql = _CLAIM_SQL[dialect(conn)]
            claimed.extend(conn.execute(sql, (self.owner, now + lease_s, now, now, limit)).fetchall())

        self.commit(None, (), claim)
        claimed.sort(key=lambda row: (float(row["next_poll_at"]), str(row["handoff_id"])))
        due: list[DuePoll] = []
        for row in claimed:
            request = parse_event(row["request"])
            if isinstance(request, HandoffRequested):
                due.append(
                    DuePoll(
                        request,
                        row["request"],
                        str(row["poll_token"]),
                        int(row["attempt"]),
                        row["replay_id"],
                        int(row["poll_failures"]),
                        row["first_failure_at"],
                        now + lease_s,
                    )
                )
        return due

    def renew_lease(self, due: DuePoll, now: float, lease_s: float) -> bool:
        """Lease ``due`` until ``now + lease_s`` when this instance still holds it; False when another
        instance claimed it since."""
        renewed: list[int] = []

        def renew(conn: Connection) -> None:
            renewed.append(
                conn.execute(
                    "UPDATE handoffs SET lease_until = ? WHERE handoff_id = ? AND state = 'pending'"
                    " AND lease_owner = ?",
                    (now + lease_s, str(due.request.data.handoff_id), self.owner),
                ).rowcount
            )

        self.commit(None, (), renew)
        return bool(renewed[0])

    def release_leases(self, handoff_ids: Sequence[str]) -> None:
        """Let any instance poll these jobs at once (this one will not: it stops, or a round broke off)."""

        def release(conn: Connection) -> None:
            for start in range(0, len(handoff_ids), 500):
                chunk = list(handoff_ids[start : start + 500])
                conn.execute(
                    "UPDATE handoffs SET lease_owner = NULL, lease_until = NULL WHERE lease_owner = ?"
                    f" AND handoff_id IN ({', '.join('?' * len(chunk))})",
                    (self.owner, *chunk),
                )

        if handoff_ids:
            self.commit(None, (), release)

    def while_leased(self, due: DuePoll, write: Write | None) -> Write:
        """``write``, in a commit that goes through only while this instance still holds ``due``'s lease:
        else it raises :class:`LeaseLost` and the commit (the outcome with it) rolls back. On
        PostgreSQL the check locks the row, so no claim takes it between the check and the commit."""

        def fenced(conn: Connection) -> None:
            held = conn.execute(
                "UPDATE handoffs SET lease_owner = NULL, lease_until = NULL"
                " WHERE handoff_id = ? AND lease_owner = ?",
                (str(due.request.data.handoff_id), self.owner),
            ).rowcount
            if not held:
                raise LeaseLost(f"another instance polls handoff {due.request.data.handoff_id} now")
            if write is not None:
                write(conn)

        return fenced

    @staticmethod
    def recording(
        request: HandoffRequested,
        state: str,
        *,
        attempt: int = 0,
        poll_token: str | None = None,
        next_poll_at: float | None = None,
        as_received: bytes | str | None = None,
        replay_id: str | None = None,
        poll_failures: int = 0,
        first_failure_at: str | None = None,
    ) -> Write:
        """The request itself is kept only while pending, for the poll loop (as the whole event: a record
        holds only its data, its envelope being in the headers); its other states need only the row
        (every copy of a retried request carries it). ``as_received``: the request as the row holds it,
        stored as it is instead of serialised again. ``replay_id``: the replay this attempt belongs to,
        so that its outcomes are new events. Whatever it records, the row's poll lease ends with it."""
        stored: bytes | str = ""
        if state == PENDING:
            stored = as_received if as_received is not None else request.model_dump_json()

        def write(conn: Connection) -> None:
            conn.execute(
                "INSERT INTO handoffs (handoff_id, request, state, attempt, poll_token, next_poll_at,"
                " replay_id, poll_failures, first_failure_at, lease_owner, lease_until)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, NULL)"
                " ON CONFLICT (handoff_id) DO UPDATE SET state = excluded.state,"
                " request = excluded.request, attempt = excluded.attempt,"
                " poll_token = excluded.poll_token, next_poll_at = excluded.next_poll_at,"
                " replay_id = excluded.replay_id, poll_failures = excluded.poll_failures,"
                " first_failure_at = excluded.first_failure_at,"
                " lease_owner = NULL, lease_until = NULL",
                (
                    str(request.data.handoff_id),
                    stored,
                    state,
                    attempt,
                    poll_token,
                    next_poll_at,
                    replay_id,
                    poll_failures,
                    first_failure_at,
                ),
            )

        return write

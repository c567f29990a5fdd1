"""The handoff log: every handoff and every outcome, in a hash-chained, tamper-evident log.

The tracker appends one entry per ``HandoffRequested`` and ``HandoffReported`` it projects, in the same
transaction as the projection (so the log and the views never disagree). Each entry holds:
its sequence number; the event's id, type, dossier and time; who handed what to whom (the producer, the
agency, the action, the outcome); the event's signature and key id (who signed it); the hash of the
previous entry; and its own hash, SHA-256 over all of these in canonical JSON (sorted keys, compact).

:func:`verify` walks the chain: an edited entry no longer matches its hash, a removed one leaves a gap
in the sequence, a reordered one breaks the link to its predecessor. Removing the newest entries
leaves a valid shorter chain: compare the head (``lienthong audit verify`` prints it) with one
recorded elsewhere to detect that.

The log is one chain however many trackers append to it. Its table belongs to the tracker store's
schema (:mod:`services.tracker.store`), and an append reads the head and writes the next entry while
no other transaction can: on SQLite the caller's ``BEGIN IMMEDIATE`` holds the database's one write
lock; on PostgreSQL, where several tracker instances share the ``tracker`` schema, the append first
takes the transaction-scoped advisory lock :data:`HEAD_LOCK`, held until the caller's transaction
ends. A second instance's append waits for the first's commit, then reads its entry as the head: the
chain never forks and no two entries share a sequence number. Appends are serialised that way, the
rest of the projection is not.

No personal data is logged: ids, agencies, actions, outcome kinds, producers and signatures only.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass
from typing import Final

import orjson

from schemas.envelope import Event
from schemas.events import HandoffReported, HandoffRequested
from services.runtime.storage.database import Connection
from services.runtime.storage.postgres import PostgresConnection, lock_for_transaction

GENESIS: Final = "0" * 64
# The advisory lock that serialises appends on PostgreSQL (see the module's docstring).
HEAD_LOCK: Final = "handoff log"

# Part of the tracker store's schema; ``seq`` is computed by :func:`append` (BIGINT on PostgreSQL).
SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS handoff_log (
    seq INTEGER PRIMARY KEY,
    event_id TEXT NOT NULL UNIQUE,
    event_type TEXT NOT NULL,
    dossier_id TEXT NOT NULL,
    handoff_id TEXT NOT NULL,
    from_party TEXT NOT NULL,       -- the event's producer
    to_party TEXT NOT NULL,         -- the agency asked (request) or the router answered (outcome)
    action TEXT NOT NULL,
    outcome TEXT,                   -- the outcome kind, NULL for a request
    occurred_at TEXT NOT NULL,
    signature TEXT,
    key_id TEXT,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS handoff_log_dossier ON handoff_log (dossier_id, seq);
"""

_COLUMNS: Final = (
    "seq, event_id, event_type, dossier_id, handoff_id, from_party, to_party, action, outcome,"
    " occurred_at, signature, key_id, prev_hash, hash"
)


@dataclass(frozen=True)
class Entry:
    seq: int
    event_id: str
    event_type: str
    dossier_id: str
    handoff_id: str
    from_party: str
    to_party: str
    action: str
    outcome: str | None
    occurred_at: str
    signature: str | None
    key_id: str | None
    prev_hash: str
    hash: str

    def computed_hash(self) -> str:
        content = asdict(self)
        del content["hash"]
        return hashlib.sha256(orjson.dumps(content, option=orjson.OPT_SORT_KEYS)).hexdigest()


def append(conn: Connection, event: Event) -> Entry | None:
    """Append the event's entry (inside the caller's transaction, on a database with the tracker
    store's schema). None if it is not a handoff event or is in the log already (a redelivery or a
    replay of the same event)."""
    if isinstance(event, HandoffRequested):
        to_party, outcome = event.data.agency.value, None
    elif isinstance(event, HandoffReported):
        to_party, outcome = "router", event.data.kind.value
    else:
        return None
    if isinstance(conn, PostgresConnection):
        if not conn.in_transaction:  # the lock would end with this statement, and the chain could fork
            raise RuntimeError("audit.append runs inside the caller's transaction")
        # Before anything is read: the entry already there, and the head, as the last append left them.
        lock_for_transaction(conn, HEAD_LOCK)
    event_id = str(event.event_id)
    # Whether the entry is there already, and the head, in one statement (one round trip).
    logged, last_seq, last_hash = conn.execute(
        "SELECT EXISTS (SELECT 1 FROM handoff_log WHERE event_id = ?), head.seq, head.hash"
        " FROM (SELECT 1) AS one"
        " LEFT JOIN (SELECT seq, hash FROM handoff_log ORDER BY seq DESC LIMIT 1) AS head ON 1 = 1",
        (event_id,),
    ).fetchone()
    if logged:
        return None
    seq, prev_hash = (last_seq + 1, last_hash) if last_seq is not None else (1, GENESIS)
    draft = Entry(
        seq=seq,
        event_id=event_id,
        event_type=event.event_type,
        dossier_id=str(event.dossier_id),
        handoff_id=str(event.data.handoff_id),
        from_party=event.producer,
        to_party=to_party,
        action=event.data.action,
        outcome=outcome,
        occurred_at=event.occurred_at.isoformat(),
        signature=event.signature,
        key_id=event.key_id,
        prev_hash=prev_hash,
        hash="",
    )
    entry = Entry(**(asdict(draft) | {"hash": draft.computed_hash()}))
    conn.execute(
        f"INSERT INTO handoff_log ({_COLUMNS}) VALUES ({', '.join('?' * 14)})", tuple(asdict(entry).values())
    )
    return entry


def entries(conn: Connection, dossier_id: str | None = None) -> list[Entry]:
    if dossier_id is None:
        rows = conn.execute(f"SELECT {_COLUMNS} FROM handoff_log ORDER BY seq").fetchall()
    else:
        rows = conn.execute(
            f"SELECT {_COLUMNS} FROM handoff_log WHERE dossier_id = ? ORDER BY seq", (dossier_id,)
        ).fetchall()
    return [Entry(*row) for row in rows]


@dataclass(frozen=True)
class Verdict:
    ok: bool
    checked: int
    head: str
    problem: str = ""


def verify(conn: Connection) -> Verdict:
    """Walk the whole chain; the first broken entry is named in ``problem``."""
    prev_hash, expected_seq = GENESIS, 1
    chain = entries(conn)
    for entry in chain:
        name = f"entry {entry.seq} (event {entry.event_id})"
        if entry.seq != expected_seq:
            problem = (
                f"entry {expected_seq} is missing (removed): the sequence jumps from {expected_seq - 1} "
                f"to {entry.seq}"
            )
            return Verdict(False, expected_seq - 1, prev_hash, problem)
        if entry.hash != entry.computed_hash():
            return Verdict(False, entry.seq - 1, prev_hash, f"{name} was edited: its hash does not match")
        if entry.prev_hash != prev_hash:
            problem = f"{name} does not follow entry {entry.seq - 1} (reordered or its predecessor replaced)"
            return Verdict(False, entry.seq - 1, prev_hash, problem)
        prev_hash, expected_seq = entry.hash, expected_seq + 1
    return Verdict(True, len(chain), prev_hash)

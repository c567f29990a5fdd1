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

**Who did it**: every operator action (:class:`~schemas.events.OperatorActionRecorded`: a replay, an
unmask) is an entry too, recorded by the tool the person used (the producer, ``from_party``) with the
person's ``subject`` (the identity provider's ``sub``), the ``reason`` they gave, and the dead letters
or events concerned (``targets``). These three came with version 2 of the tracker store's schema, in
the side table ``handoff_log_actions`` (one row per action entry, same ``seq``); an entry's hash
covers each of them only when it is set, so the entries written before (and every handoff entry) hash
as they always did and old chains still verify. Removing an action's row breaks its entry's hash.

**Anchored head**: a chain that is rewritten whole (a database rebuilt from scratch, self-consistent)
or lost verifies by itself. So the tracker publishes the head periodically, signed, to the compacted
``audit.heads`` topic (:mod:`services.tracker.anchor`), and ``lienthong audit verify`` checks that the
chain holds that anchored head: the same hash at the same sequence number.

No personal data is logged: ids, agencies, actions, outcome kinds, producers, signatures, and the
subject (an opaque id, no name) and reason of an operator's action.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass
from typing import Final

import orjson

from schemas.envelope import Event
from schemas.events import HandoffReported, HandoffRequested, OperatorActionRecorded
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

# Version 2 of the tracker store: who did an operator action, why, and to what. A table of its own,
# one row per action entry (same ``seq``), so that the migration is a CREATE … IF NOT EXISTS that any
# file, versioned or not, takes as it is; an entry without a row has these three as NULL.
SCHEMA_V2: Final = """
CREATE TABLE IF NOT EXISTS handoff_log_actions (
    seq INTEGER PRIMARY KEY,        -- the entry's seq in handoff_log
    subject TEXT NOT NULL,          -- the provider's `sub`
    reason TEXT NOT NULL,
    targets TEXT NOT NULL           -- JSON list of dead-letter ids or event ids
);
"""
# The hash covers these only when they are set (see the module's docstring).
_OPTIONAL: Final = ("subject", "reason", "targets")

_BASE: Final = (
    "seq, event_id, event_type, dossier_id, handoff_id, from_party, to_party, action, outcome,"
    " occurred_at, signature, key_id, prev_hash, hash"
)
_COLUMNS: Final = (
    "l.seq, l.event_id, l.event_type, l.dossier_id, l.handoff_id, l.from_party, l.to_party, l.action,"
    " l.outcome, l.occurred_at, l.signature, l.key_id, l.prev_hash, l.hash, a.subject, a.reason, a.targets"
)
_FROM: Final = "handoff_log AS l LEFT JOIN handoff_log_actions AS a ON a.seq = l.seq"


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
    subject: str | None = None  # an operator action's: who (the provider's `sub`)
    reason: str | None = None  # why, as they typed it
    targets: str | None = None  # the dead letters or events concerned, as a JSON list

    @property
    def is_action(self) -> bool:
        return self.subject is not None

    def computed_hash(self) -> str:
        content = asdict(self)
        del content["hash"]
        for name in _OPTIONAL:
            if content[name] is None:
                del content[name]
        return hashlib.sha256(orjson.dumps(content, option=orjson.OPT_SORT_KEYS)).hexdigest()


def append(conn: Connection, event: Event) -> Entry | None:
    """Append the event's entry (inside the caller's transaction, on a database with the tracker
    store's schema). None if it is not a handoff event or an operator action, or is in the log
    already (a redelivery or a replay of the same event)."""
    fields: dict[str, str | None]
    if isinstance(event, HandoffRequested):
        fields = {"handoff_id": str(event.data.handoff_id), "to_party": event.data.agency.value}
        fields |= {"action": event.data.action, "outcome": None, "dossier_id": str(event.dossier_id)}
    elif isinstance(event, HandoffReported):
        fields = {"handoff_id": str(event.data.handoff_id), "to_party": "router"}
        fields |= {"action": event.data.action, "outcome": event.data.kind.value}
        fields |= {"dossier_id": str(event.dossier_id)}
    elif isinstance(event, OperatorActionRecorded):
        data = event.data
        fields = {"handoff_id": "", "to_party": data.via.value, "action": data.action.value, "outcome": None}
        fields |= {"dossier_id": data.dossier_id or "", "subject": data.subject, "reason": data.reason}
        fields |= {"targets": orjson.dumps(list(data.targets)).decode()}
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
        from_party=event.producer,
        occurred_at=event.occurred_at.isoformat(),
        signature=event.signature,
        key_id=event.key_id,
        prev_hash=prev_hash,
        hash="",
        **fields,  # type: ignore[arg-type]
    )
    entry = Entry(**(asdict(draft) | {"hash": draft.computed_hash()}))
    values = tuple(asdict(entry).values())
    conn.execute(f"INSERT INTO handoff_log ({_BASE}) VALUES ({', '.join('?' * 14)})", values[:14])
    if entry.is_action:
        conn.execute(
            "INSERT INTO handoff_log_actions (seq, subject, reason, targets) VALUES (?, ?, ?, ?)",
            (entry.seq, entry.subject, entry.reason, entry.targets),
        )
    return entry


def entries(conn: Connection, dossier_id: str | None = None, *, actions_only: bool = False) -> list[Entry]:
    """The log's entries in order: all of them, a dossier's, or (``actions_only``) the operator
    actions only (of the dossier, or of any)."""
    where, params = [], []
    if dossier_id is not None:
        where.append("l.dossier_id = ?")
        params.append(dossier_id)
    if actions_only:
        where.append("a.seq IS NOT NULL")
    clause = f" WHERE {' AND '.join(where)}" if where else ""
    rows = conn.execute(f"SELECT {_COLUMNS} FROM {_FROM}{clause} ORDER BY l.seq", tuple(params)).fetchall()
    return [Entry(*row) for row in rows]


def head(conn: Connection) -> tuple[int, str] | None:
    """The chain's newest entry: its sequence number and hash (None for an empty log)."""
    row = conn.execute("SELECT seq, hash FROM handoff_log ORDER BY seq DESC LIMIT 1").fetchone()
    return (int(row[0]), str(row[1])) if row is not None else None


def hash_at(conn: Connection, seq: int) -> str | None:
    """The hash of entry ``seq`` (None if the log has no such entry)."""
    row = conn.execute("SELECT hash FROM handoff_log WHERE seq = ?", (seq,)).fetchone()
    return str(row[0]) if row is not None else None


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

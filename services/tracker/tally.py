"""The counts behind the gauges and the statistics, without evaluating every dossier ever seen.

What a dossier adds to the counts is a :data:`Tally`. A closed dossier is judged as of its closing, so
its tally never depends on the clock: it is taken once and kept in SQLite (``closed_tallies``), and
the closed dossiers' tallies are kept summed (``closed_totals``). Only the live dossiers are evaluated
as of now, on each read.

Triggers on the projection's tables list every dossier written to (``tally_dirty``), whatever the
event: a late outcome or a redelivered closing of a dossier already counted is seen too.
:func:`catch_up` takes those dossiers' tallies again, in one transaction per batch, so the sums and
the list never disagree. Everything runs on the connection's one thread, like the projection's writes.
"""

from __future__ import annotations

import sqlite3
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Final

import orjson

from services.runtime.sqlite import transaction
from services.tracker.store import LIVE

# (measure, subject): ("procedure.closed", "9.900001"), ("agency.completed_late", "tax"), ("dossiers", "").
Key = tuple[str, str]
Tally = Counter[Key]
# Takes the tallies of those of the given dossiers that are closed (the others have none).
Judge = Callable[[list[str]], dict[str, Tally]]

# Bump when what a dossier adds changes: the kept tallies are then taken again.
VERSION: Final = "1"
BATCH: Final = 200


def totals(conn: sqlite3.Connection) -> Tally:
    """The closed dossiers' tallies, summed."""
    rows = conn.execute("SELECT measure, subject, n FROM closed_totals").fetchall()
    return Counter({(row["measure"], row["subject"]): row["n"] for row in rows})


def keep_rules(conn: sqlite3.Connection, rules: str) -> None:
    """Forget the kept tallies if they were judged by other rules (another catalog or calendar, or
    none yet: a database from before the tallies), so that every closed dossier is judged again."""
    rules = f"{VERSION}:{rules}"
    if _rules(conn) == rules:
        return
    with transaction(conn):
        conn.execute("DELETE FROM closed_tallies")
        conn.execute("DELETE FROM closed_totals")
        conn.execute(f"INSERT OR IGNORE INTO tally_dirty SELECT dossier_id FROM dossiers WHERE NOT ({LIVE})")
        conn.execute("INSERT OR REPLACE INTO tally_state (key, value) VALUES ('rules', ?)", (rules,))


def _rules(conn: sqlite3.Connection) -> str | None:
    row = conn.execute("SELECT value FROM tally_state WHERE key = 'rules'").fetchone()
    return None if row is None else str(row["value"])


def catch_up(conn: sqlite3.Connection, judge: Judge, batch: int = BATCH) -> bool:
    """Take again the tallies of up to ``batch`` dossiers written to since; True once none is left."""
    with transaction(conn):
        ids = [row[0] for row in conn.execute("SELECT dossier_id FROM tally_dirty LIMIT ?", (batch,))]
        if not ids:
            return True
        marks = ", ".join("?" * len(ids))
        change: Tally = Counter()
        for row in conn.execute(f"SELECT tally FROM closed_tallies WHERE dossier_id IN ({marks})", ids):
            change.subtract({(measure, subject): n for measure, subject, n in orjson.loads(row[0])})
        conn.execute(f"DELETE FROM closed_tallies WHERE dossier_id IN ({marks})", ids)
        kept = []
        for dossier_id, tally in judge(ids).items():
            counted = [(measure, subject, n) for (measure, subject), n in tally.items() if n]
            kept.append((dossier_id, orjson.dumps(counted).decode()))
            change.update({(measure, subject): n for measure, subject, n in counted})
        conn.executemany("INSERT INTO closed_tallies (dossier_id, tally) VALUES (?, ?)", kept)
        _add(conn, ((key, n) for key, n in change.items() if n))
        conn.execute(f"DELETE FROM tally_dirty WHERE dossier_id IN ({marks})", ids)
    return len(ids) < batch


def _add(conn: sqlite3.Connection, changes: Iterable[tuple[Key, int]]) -> None:
    conn.executemany(
        "INSERT INTO closed_totals (measure, subject, n) VALUES (?, ?, ?)"
        " ON CONFLICT (measure, subject) DO UPDATE SET n = n + excluded.n",
        [(measure, subject, n) for (measure, subject), n in changes],
    )
    conn.execute("DELETE FROM closed_totals WHERE n = 0")

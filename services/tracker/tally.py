"""The counts behind the gauges and the statistics, without evaluating every dossier ever seen.

What a dossier adds to the counts is a :data:`Tally`. A closed dossier is judged as of its closing, so
its tally never depends on the clock: it is taken once and kept in the database (``closed_tallies``),
and the closed dossiers' tallies are kept summed (``closed_totals``). Only the live dossiers are
evaluated as of now, on each read.

Triggers on the projection's tables list every dossier written to (``tally_dirty``), whatever the
event: a late outcome or a redelivered closing of a dossier already counted is seen too.
:func:`catch_up` takes those dossiers' tallies again, in one transaction per batch, so the sums and
the list never disagree. A count reads the sums, the list and the rows in one snapshot
(:func:`services.tracker.store.read_snapshot`): a closed dossier still listed is evaluated again
rather than counted from its kept tally (:func:`kept_totals`), so the count is exact even when
another instance wrote since the catch-up.

Several tracker instances on one PostgreSQL schema share these tables, so they all count the whole
picture, and they may catch up at the same time as the others project. Three rules keep the sums
exact then: catch-ups (and a change of rules) take the advisory lock :data:`LOCK`, so one instance at
a time adds to the sums; a catch-up takes a dossier's mark off the list *before* reading its rows;
and it takes only the marks no projection transaction holds (``FOR UPDATE SKIP LOCKED``; the
trigger locks the mark it writes, :mod:`services.tracker.store`). So a dossier is never judged while
a write to it is in progress, and a write that comes while its dossier is being judged waits for
that catch-up to commit, then lists the dossier again. On SQLite one process writes the file, and
``BEGIN IMMEDIATE`` makes every transaction the only writer.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from typing import Final

import orjson

from services.runtime.storage.database import Connection, Row, transaction
from services.runtime.storage.postgres import PostgresConnection, lock_for_transaction
from services.tracker.store import LIVE

# (measure, subject): ("procedure.closed", "9.900001"), ("agency.completed_late", "tax"), ("dossiers", "").
Key = tuple[str, str]
Tally = Counter[Key]
# Takes the tallies of those of the given dossiers that are closed (the others have none).
Judge = Callable[[list[str]], dict[str, Tally]]

# Bump when what a dossier adds changes: the kept tallies are then taken again.
VERSION: Final = "1"
BATCH: Final = 200


# The advisory lock of the tallies on PostgreSQL: one instance at a time catches up or changes rules.
LOCK: Final = "tallies"


def totals(conn: Connection) -> Tally:
    """The closed dossiers' tallies, summed."""
    rows = conn.execute("SELECT measure, subject, n FROM closed_totals").fetchall()
    return Counter({(row["measure"], row["subject"]): row["n"] for row in rows})


# The closed dossiers written to since their tally was taken: a count evaluates them again.
REWRITTEN: Final = f"NOT ({LIVE}) AND dossier_id IN (SELECT dossier_id FROM tally_dirty)"


def kept_totals(conn: Connection) -> Tally:
    """The closed dossiers' tallies, summed, less those of the dossiers listed as written to since
    (:data:`REWRITTEN`): read in the same snapshot as their rows, they count as evaluated."""
    closed = totals(conn)
    for row in conn.execute(
        "SELECT t.tally FROM closed_tallies t JOIN tally_dirty d ON d.dossier_id = t.dossier_id"
    ):
        closed.subtract(_tally_of(row))
    return Counter({key: n for key, n in closed.items() if n})


def keep_rules(conn: Connection, rules: str) -> None:
    """Forget the kept tallies if they were judged by other rules (another catalog or calendar, or
    none yet: a database from before the tallies), so that every closed dossier is judged again."""
    rules = f"{VERSION}:{rules}"
    if _rules(conn) == rules:
        return
    with transaction(conn):
        _serialise(conn)
        if _rules(conn) == rules:  # another instance did it while this one waited for the lock
            return
        conn.execute("DELETE FROM closed_tallies")
        conn.execute("DELETE FROM closed_totals")
        conn.execute(
            f"INSERT INTO tally_dirty (dossier_id) SELECT dossier_id FROM dossiers WHERE NOT ({LIVE})"
            " ON CONFLICT DO NOTHING"
        )
        conn.execute(
            "INSERT INTO tally_state (key, value) VALUES ('rules', ?)"
            " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (rules,),
        )


def _rules(conn: Connection) -> str | None:
    row = conn.execute("SELECT value FROM tally_state WHERE key = 'rules'").fetchone()
    return None if row is None else str(row["value"])


def _serialise(conn: Connection) -> None:
    if isinstance(conn, PostgresConnection):
        lock_for_transaction(conn, LOCK)


def catch_up(conn: Connection, judge: Judge, batch: int = BATCH) -> bool:
    """Take again the tallies of up to ``batch`` dossiers written to since; True once none is left
    (none that no write in progress holds, on PostgreSQL: those are taken by a later catch-up)."""
    with transaction(conn):
        _serialise(conn)
        take = "SELECT dossier_id FROM tally_dirty LIMIT ?"
        if isinstance(conn, PostgresConnection):
            take += " FOR UPDATE SKIP LOCKED"
        ids = [str(row[0]) for row in conn.execute(take, (batch,))]
        if not ids:
            return True
        marks = ", ".join("?" * len(ids))
        # Off the list first: a write committing from now on lists its dossier again.
        conn.execute(f"DELETE FROM tally_dirty WHERE dossier_id IN ({marks})", ids)
        change: Tally = Counter()
        for row in conn.execute(f"SELECT tally FROM closed_tallies WHERE dossier_id IN ({marks})", ids):
            change.subtract(_tally_of(row))
        conn.execute(f"DELETE FROM closed_tallies WHERE dossier_id IN ({marks})", ids)
        kept = []
        for dossier_id, tally in judge(ids).items():
            counted = [(measure, subject, n) for (measure, subject), n in tally.items() if n]
            kept.append((dossier_id, orjson.dumps(counted).decode()))
            change.update({(measure, subject): n for measure, subject, n in counted})
        conn.executemany("INSERT INTO closed_tallies (dossier_id, tally) VALUES (?, ?)", kept)
        _add(conn, ((key, n) for key, n in change.items() if n))
    return len(ids) < batch


def _tally_of(row: Row) -> Tally:
    return Counter({(measure, subject): n for measure, subject, n in orjson.loads(row[0])})


def _add(conn: Connection, changes: Iterable[tuple[Key, int]]) -> None:
    conn.executemany(
        "INSERT INTO closed_totals (measure, subject, n) VALUES (?, ?, ?)"
        " ON CONFLICT (measure, subject) DO UPDATE SET n = closed_totals.n + excluded.n",
        [(measure, subject, n) for (measure, subject), n in sorted(changes)],
    )
    conn.execute("DELETE FROM closed_totals WHERE n = 0")

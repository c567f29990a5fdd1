"""The tracker's projection tables, next to the runtime's processed events and outbox.

The tracker keeps no personal data: no names, no addresses, no forms; the applicant's citizen id is
stored masked to its last three digits. Every instant is stored as UTC text of one fixed shape
(:func:`to_text`), so that SQL compares instants by comparing strings.

Columns are nullable wherever an event may arrive before the one that fills them: a status change,
an outcome or a request can come before the ``DossierReceived`` they follow (they travel on other
topics), and the projection fills the gaps in as the other events arrive.

The same tables live in a SQLite file or in the ``tracker`` schema of PostgreSQL, where any number of
tracker instances share them: each projects the events of its partitions into them, and each answers
from all of them. The hash-chained handoff log (:mod:`services.tracker.audit`) is one of these
tables, created with the others. A SQLite file made before the schema was versioned gets what it
lacks (the handoff log included) from the ``CREATE … IF NOT EXISTS`` of version 1 when it opens.
Version 2 adds the columns of an operator action's entry in the handoff log (who, why, to what).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

from services.runtime.storage.database import Connection, Migration
from services.runtime.storage.postgres import PostgresConnection, to_postgres_ddl
from services.runtime.storage.store import SqlProcessingStore
from services.tracker import audit

# A dossier is live until it is closed (with its closing time): then nothing about it depends on now.
LIVE = "closed = 0 OR closed_at IS NULL"

_TABLES = (
    """
CREATE TABLE IF NOT EXISTS dossiers (
    dossier_id TEXT PRIMARY KEY,
    dossier_code TEXT,
    procedure_code TEXT,
    applicant TEXT,                 -- citizen id masked to its last 3 digits
    channel TEXT,
    received_at TEXT,               -- NULL until DossierReceived is seen
    clock_starts_at TEXT,
    due_at TEXT,                    -- the statutory due date printed on the receipt
    status INTEGER,
    status_at TEXT,                 -- when the current status was set (newer events win)
    holder TEXT,
    status_reason TEXT,
    closed INTEGER NOT NULL DEFAULT 0,
    closed_at TEXT,
    result TEXT,
    partial INTEGER,
    on_time INTEGER,
    reason TEXT,
    first_seen_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS dossiers_status ON dossiers (status);
CREATE INDEX IF NOT EXISTS dossiers_procedure ON dossiers (procedure_code);
-- The live dossiers, the ones the counts evaluate as of now (queries use it with the same WHERE).
CREATE INDEX IF NOT EXISTS dossiers_live ON dossiers (dossier_id) WHERE """
    + LIVE
    + """;

CREATE TABLE IF NOT EXISTS legs (
    handoff_id TEXT PRIMARY KEY,
    dossier_id TEXT NOT NULL,
    step_id TEXT NOT NULL,
    agency TEXT NOT NULL,
    action TEXT NOT NULL,
    state TEXT NOT NULL,            -- requested / waiting_on_citizen / completed / rejected / dead_lettered
    state_at TEXT,                  -- time of the outcome that set the state; NULL while only requested
    requested_at TEXT,
    leg_due_at TEXT,
    settled_at TEXT,
    reason TEXT,
    agency_reference TEXT,
    error_class TEXT
);
CREATE INDEX IF NOT EXISTS legs_dossier ON legs (dossier_id);
CREATE INDEX IF NOT EXISTS legs_agency_state ON legs (agency, state);

-- Every status change, as a clock mark: pauses are derived from all of them sorted by time, so
-- marks arriving out of order or twice give the same pauses.
CREATE TABLE IF NOT EXISTS clock_marks (
    event_id TEXT PRIMARY KEY,
    dossier_id TEXT NOT NULL,
    at TEXT NOT NULL,
    paused INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS clock_marks_dossier ON clock_marks (dossier_id);

CREATE TABLE IF NOT EXISTS pauses (
    dossier_id TEXT NOT NULL,
    start TEXT NOT NULL,
    "end" TEXT,
    PRIMARY KEY (dossier_id, start)
);

CREATE TABLE IF NOT EXISTS timeline (
    event_id TEXT PRIMARY KEY,
    dossier_id TEXT NOT NULL,
    event_type TEXT NOT NULL,
    occurred_at TEXT NOT NULL,
    producer TEXT NOT NULL,
    summary TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS timeline_dossier ON timeline (dossier_id, occurred_at);

-- What each closed dossier adds to the counts (frozen: it is judged as of its closing), and their
-- running sums: the gauges and the statistics evaluate only the live dossiers as of now.
CREATE TABLE IF NOT EXISTS closed_tallies (
    dossier_id TEXT PRIMARY KEY,
    tally TEXT NOT NULL             -- JSON: [[measure, subject, n], ...], the counts that are not 0
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS closed_totals (
    measure TEXT NOT NULL,
    subject TEXT NOT NULL,
    n INTEGER NOT NULL,
    PRIMARY KEY (measure, subject)
) WITHOUT ROWID;
-- The rules the tallies were judged by (catalog and calendar): other rules mean judging again.
CREATE TABLE IF NOT EXISTS tally_state (key TEXT PRIMARY KEY, value TEXT NOT NULL);
-- Dossiers written to since their tally was last taken; triggers keep it, so no write is missed
-- whatever the event (a late outcome or a redelivered closing of a closed dossier included).
CREATE TABLE IF NOT EXISTS tally_dirty (dossier_id TEXT PRIMARY KEY) WITHOUT ROWID;
"""
    + audit.SCHEMA
)


_WATCHED = ("dossiers", "legs", "pauses")

SCHEMA = _TABLES + "".join(
    f"""
CREATE TRIGGER IF NOT EXISTS tally_dirty_{table}_{action} AFTER {action} ON {table}
BEGIN
    INSERT INTO tally_dirty (dossier_id) SELECT {row}.dossier_id
    WHERE NOT EXISTS (SELECT 1 FROM tally_dirty WHERE dossier_id = {row}.dossier_id);
END;
"""
    for table in _WATCHED
    for action, row in (("insert", "NEW"), ("update", "NEW"), ("delete", "OLD"))
)

# PostgreSQL's triggers run a function: one marks the row's dossier dirty, whichever the statement.
# The mark is taken with its row lock (DO UPDATE … WHERE false locks the row it finds and writes
# nothing): another instance's catch-up then skips that dossier until this transaction ends, instead
# of judging it without the write and clearing the mark the write relies on (services.tracker.tally).
POSTGRES_SCHEMA = (
    to_postgres_ddl(_TABLES)
    + """
CREATE OR REPLACE FUNCTION tally_dirty_mark() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO tally_dirty (dossier_id)
    VALUES (CASE WHEN TG_OP = 'DELETE' THEN OLD.dossier_id ELSE NEW.dossier_id END)
    ON CONFLICT (dossier_id) DO UPDATE SET dossier_id = excluded.dossier_id WHERE false;
    RETURN NULL;
END;
$$;
"""
    + "".join(
        f"CREATE OR REPLACE TRIGGER tally_dirty_{table} AFTER INSERT OR UPDATE OR DELETE ON {table}"
        " FOR EACH ROW EXECUTE FUNCTION tally_dirty_mark();\n"
        for table in _WATCHED
    )
)


def to_text(moment: datetime) -> str:
    """An aware instant as sortable UTC text (always with microseconds, so strings compare as times)."""
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def from_text(text: str) -> datetime:
    return datetime.fromisoformat(text)


def maybe_from_text(text: str | None) -> datetime | None:
    return None if text is None else from_text(text)


@contextmanager
def read_snapshot(conn: Connection) -> Iterator[None]:
    """Reads that see the tables at one instant although other tracker instances commit meanwhile
    (PostgreSQL: a REPEATABLE READ transaction; SQLite: a read transaction, its snapshot in WAL), so
    that what a view reads in several statements fits together. Inside a transaction already open on
    the connection, that transaction's reads are the instant."""
    if conn.in_transaction:
        yield
        return
    pg = isinstance(conn, PostgresConnection)
    conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY" if pg else "BEGIN")
    try:
        yield
    finally:
        conn.execute("COMMIT")


class TrackerStore(SqlProcessingStore):
    """The tracker's database: projection tables, the handoff log, processed event ids and the outbox."""

    SCHEMA = SCHEMA
    POSTGRES_SCHEMA = POSTGRES_SCHEMA
    # 2: the handoff log records who did an operator action, why, and to what (audit.SCHEMA_V2).
    LATER_MIGRATIONS = (Migration(2, audit.SCHEMA_V2),)

"""PostgreSQL as a store: the connection the stores use, their schema in PostgreSQL's words, and locks.

The stores are written against the subset of the DB-API that :mod:`sqlite3` offers (``execute`` with
``?`` placeholders, ``executemany``, ``executescript``, ``in_transaction``, rows read by index or by
name) in SQL that both databases accept. :class:`PostgresConnection` offers that same subset over a
psycopg 3 connection, so one store runs on either. It is written here because psycopg speaks
``%s`` placeholders and hands out rows of one kind only, and no library bridges the two.

Each service keeps its tables in its own PostgreSQL schema (``intake``, ``router``, ``tracker``,
``connector_land``, …) of one database, selected by ``search_path``: the same table names as in its
SQLite file, and one ``LIENTHONG_DATABASE_URL`` for the whole bus.

Calls are synchronous, like SQLite's: every transaction is a few short statements on a connection
that is already open, and a consumer never holds a transaction across a wait. Within
:meth:`PostgresConnection.pipelined` the statements go out together, without waiting for each
other's answers: a record's writes cost one round trip, not one each, and a result (its rows, its
``rowcount``) waits for the server only when it is read. The statements a store runs with parameters
are prepared once per session (``PREPARE``) and run by ``EXECUTE``; psycopg's own preparing is off,
since it deallocates every prepared statement of the session after a rollback.
"""

from __future__ import annotations

import contextlib
import logging
import re
import zlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import psycopg
from psycopg import pq
from psycopg.rows import RowMaker
from psycopg.types.numeric import Int8Dumper
from psycopg_pool import ConnectionPool

log = logging.getLogger(__name__)

# A schema name goes into SQL as an identifier: letters, digits and underscores only.
_SCHEMA_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


@dataclass(frozen=True)
class PostgresLocation:
    """Where a store lives in PostgreSQL: the database and the service's schema in it."""

    url: str
    schema: str

    def __post_init__(self) -> None:
        if not _SCHEMA_NAME.match(self.schema):
            raise ValueError(f"{self.schema!r} is not a schema name (lower-case letters, digits, _)")


def schema_name(store_name: str) -> str:
    """The schema of the store a SQLite file would name ``store_name`` (``connector-land`` →
    ``connector_land``)."""
    return store_name.replace("-", "_").lower()


class Row(tuple[Any, ...]):
    """A row read by index (``row[0]``), by column name (``row["state"]``) or unpacked, as
    :class:`sqlite3.Row` is."""

    _names: Mapping[str, int]

    def __new__(cls, values: Sequence[Any], names: Mapping[str, int]) -> Row:
        row = super().__new__(cls, values)
        row._names = names
        return row

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, str):
            return super().__getitem__(self._names[key])
        return super().__getitem__(key)

    def keys(self) -> list[str]:
        return list(self._names)


def _row_factory(cursor: psycopg.Cursor[Any]) -> RowMaker[Row]:
    names = {column.name: i for i, column in enumerate(cursor.description or ())}
    return lambda values: Row(values, names)


class _BoolAsInteger(Int8Dumper):
    """The stores keep flags in INTEGER columns, as SQLite does (``closed = 0``)."""

    def dump(self, obj: Any) -> bytes | bytearray | memoryview | None:
        return super().dump(int(obj))


@lru_cache(maxsize=1024)
def to_postgres_sql(sql: str) -> str:
    """``?`` placeholders become ``%s`` (and a literal ``%`` is doubled), outside quoted text;
    SQLite's ``BEGIN IMMEDIATE`` (take the write lock now) is a plain ``BEGIN``: PostgreSQL locks
    rows, not the database."""
    if sql.strip().upper() == "BEGIN IMMEDIATE":
        return "BEGIN"
    return _with_placeholders(sql, numbered=False)[0]


@lru_cache(maxsize=1024)
def to_prepared_sql(sql: str) -> tuple[str, int]:
    """The statement as ``PREPARE`` takes it (``?`` placeholders numbered ``$1``, ``$2``, …, outside
    quoted text), and how many placeholders it has."""
    return _with_placeholders(sql, numbered=True)


def _with_placeholders(sql: str, *, numbered: bool) -> tuple[str, int]:
    out: list[str] = []
    quote: str | None = None
    count = 0
    percent = "%" if numbered else "%%"  # psycopg reads %s placeholders, so a literal % is doubled
    for char in sql:
        if quote is not None:
            if char == quote:
                quote = None
            out.append(percent if char == "%" else char)
        elif char in "'\"":
            quote = char
            out.append(char)
        elif char == "?":
            count += 1
            out.append(f"${count}" if numbered else "%s")
        elif char == "%":
            out.append(percent)
        else:
            out.append(char)
    return "".join(out), count


_TYPE_WORDS = (
    (
        re.compile(r"\bINTEGER PRIMARY KEY AUTOINCREMENT\b", re.I),
        "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY",
    ),
    (re.compile(r"\bINTEGER\b", re.I), "BIGINT"),
    (re.compile(r"\bREAL\b", re.I), "DOUBLE PRECISION"),
    (re.compile(r"\bBLOB\b", re.I), "BYTEA"),
    (re.compile(r"\)\s*WITHOUT ROWID", re.I), ")"),
)


def to_postgres_ddl(ddl: str) -> str:
    """A store's SQLite schema in PostgreSQL's types: INTEGER is 64-bit there as in SQLite, REAL is
    DOUBLE PRECISION, BLOB is BYTEA, an AUTOINCREMENT key is an identity column; WITHOUT ROWID (a
    SQLite storage choice) has no counterpart. What else differs (triggers) a store writes twice."""
    for pattern, replacement in _TYPE_WORDS:
        ddl = pattern.sub(replacement, ddl)
    return ddl


def open_pool(url: str, schema: str, *, max_size: int = 4) -> ConnectionPool[psycopg.Connection[Row]]:
    """A pool of connections on ``schema``: the store keeps one, the outbox's relay lock another,
    and a connection that broke (the server restarted) is replaced from it."""

    def configure(conn: psycopg.Connection[Any]) -> None:
        conn.adapters.register_dumper(bool, _BoolAsInteger)

    pool: ConnectionPool[psycopg.Connection[Row]] = ConnectionPool(
        url,
        min_size=1,
        max_size=max_size,
        kwargs={
            "autocommit": True,  # transactions are opened by the store's own BEGIN
            "row_factory": _row_factory,
            "options": f"-c search_path={schema}",
            # so that pg_stat_activity (and an operator) can tell which service holds a session
            "application_name": f"lienthong-{schema}",
            # The store prepares its statements itself (PostgresConnection); psycopg's own would
            # deallocate them all at its first ROLLBACK (it starts over after one).
            "prepare_threshold": None,
        },
        configure=configure,
        open=True,
        name=f"lienthong-{schema}",
    )
    pool.wait(timeout=30)
    return pool


# How a batched statement's parameters are declared when it is prepared: as psycopg would send them
# (its text as "unknown", which the server types from the statement's context). A parameter of
# another type (a list, a date) has its statement sent with its values, unprepared.
_PREPARED_TYPES: Mapping[type, str] = {
    str: "unknown",
    type(None): "unknown",
    int: "bigint",
    bool: "bigint",  # flags are INTEGER columns (_BoolAsInteger)
    float: "double precision",
    bytes: "bytea",
}


class NoAnswer(Exception):
    """A batched statement's answer is not known: the batch failed at this statement or before it,
    and the server ran none of the statements after the failed one."""


class PipelinedResult:
    """A statement's answer in a batch (:meth:`PostgresConnection.pipelined`). It is there once the
    batch was sent, so reading it (rows, ``rowcount``) first sends what is queued and waits for the
    answers; the rows of a ``SELECT`` (or ``RETURNING``) are read one after the other, as from a
    cursor."""

    def __init__(self, owner: PostgresConnection) -> None:
        self._owner = owner
        self._answer: tuple[int, list[Row]] | BaseException | None = None
        self._position = 0

    def answered(self, rowcount: int, rows: list[Row]) -> None:
        self._answer = (rowcount, rows)

    def failed(self, error: BaseException) -> None:
        self._answer = error

    def _answered(self) -> tuple[int, list[Row]]:
        if self._answer is None:
            self._owner.send_batch()
        answer = self._answer
        if answer is None:  # cannot be: sending the batch answers or fails every statement in it
            raise NoAnswer("the statement was never sent")
        if isinstance(answer, BaseException):
            raise NoAnswer("the batch failed at this statement or before it") from answer
        return answer

    @property
    def rowcount(self) -> int:
        return self._answered()[0]

    def fetchone(self) -> Row | None:
        rows = self._answered()[1]
        if self._position >= len(rows):
            return None
        self._position += 1
        return rows[self._position - 1]

    def fetchall(self) -> list[Row]:
        rows = self._answered()[1]
        rest, self._position = rows[self._position :], len(rows)
        return rest

    def __iter__(self) -> Iterator[Row]:
        return iter(self.fetchall())


class PostgresConnection:
    """The :mod:`sqlite3` subset the stores use (see the module's docstring), on a pooled connection."""

    dialect = "postgresql"

    def __init__(self, location: PostgresLocation) -> None:
        self.location = location
        self.pool = open_pool(location.url, location.schema)
        self._conn = self.pool.getconn()
        # Statements of an open pipelined block not sent yet, bound client-side, with their answers
        self._batch: list[tuple[str, PipelinedResult]] | None = None
        self._binder: psycopg.ClientCursor[Row] | None = None
        # Statements prepared on this session, by SQL and parameter types: their EXECUTE, or None
        # for one the server would not prepare
        self._prepared: dict[tuple[str, tuple[str, ...]], str | None] = {}
        self.transaction_locks: set[str] = set()  # lock_for_transaction's, held until the transaction ends

    @property
    def raw(self) -> psycopg.Connection[Row]:
        """The psycopg connection; a broken one is swapped for a fresh one between transactions."""
        if not _usable(self._conn):
            self.pool.putconn(self._conn)
            self._conn = self.pool.getconn()
            self.transaction_locks.clear()
            self._prepared.clear()  # they were the old session's
        return self._conn

    @property
    def in_transaction(self) -> bool:
        """Whether a transaction is open (or may be: a batch not sent yet can hold its BEGIN)."""
        return bool(self._batch) or self._session_in_transaction

    @property
    def _session_in_transaction(self) -> bool:
        """What the server last said of the session (a batch not sent yet aside)."""
        return self._conn.info.transaction_status != pq.TransactionStatus.IDLE

    def execute(self, sql: str, parameters: Sequence[Any] = ()) -> psycopg.Cursor[Row] | PipelinedResult:
        if self.transaction_locks and _ENDS_TRANSACTION.match(sql):
            self.transaction_locks.clear()
        if self._batch is not None:
            return self._queue(sql, parameters)
        conn = self._conn if self.in_transaction else self.raw
        prepared = self._prepared_as(sql, parameters)
        if prepared is not None:
            return psycopg.ClientCursor(conn).execute(prepared, parameters)  # type: ignore[arg-type]
        if parameters:
            return conn.execute(to_postgres_sql(sql), parameters)  # type: ignore[arg-type]
        return conn.execute(to_postgres_sql(sql))  # type: ignore[arg-type]

    @contextlib.contextmanager
    def pipelined(self) -> Iterator[None]:
        """Statements executed in this block are sent together, in one round trip, when a result is
        read or the block ends; the first error is raised then (the statements after a failed one
        are not run). Nested blocks ride the outer one.

        Each statement goes as the ``EXECUTE`` of a statement prepared on the session (see
        :meth:`_prepared_as`), its values bound client-side (psycopg's ``ClientCursor.mogrify``,
        which quotes by the server's own rules, so a value is never read as SQL), and the batch as
        one simple query. psycopg's pipeline mode sends, polls and answers each statement on its
        own, which costs the client about three times the CPU for the same statements
        (docs/performance.md); psycopg sends several statements in one query only when none has
        parameters, so preparing, binding and joining them is written here."""
        if self._batch is not None:
            yield
            return
        conn = self._conn if self.in_transaction else self.raw
        self._binder = psycopg.ClientCursor(conn)
        self._batch = []
        try:
            yield
        except BaseException:
            # What was queued before the error is sent all the same: the caller's clean-up (ROLLBACK
            # TO a savepoint it queued) relies on the server having seen it.
            try:
                self.send_batch()
            except psycopg.Error:
                log.debug("the batch of a failed block failed too", exc_info=True)
            raise
        else:
            self.send_batch()
        finally:
            self._batch = None
            self._binder = None

    def _queue(self, sql: str, parameters: Sequence[Any]) -> PipelinedResult:
        assert self._batch is not None and self._binder is not None
        prepared = self._prepared_as(sql, parameters)
        if prepared is not None:
            statement = self._binder.mogrify(prepared, parameters)  # type: ignore[arg-type]
        else:
            statement = self._binder.mogrify(to_postgres_sql(sql), parameters)  # type: ignore[arg-type]
        result = PipelinedResult(self)
        self._batch.append((statement, result))
        return result

    def _prepared_as(self, sql: str, parameters: Sequence[Any]) -> str | None:
        """``EXECUTE name(%s, …)`` of the statement prepared on this session for these parameter
        types (preparing it the first time), or None where it cannot be prepared: a parameter of
        another type, or a statement whose parameters the server cannot type from their context
        (and a statement without parameters, which gains nothing from it). A prepared statement is
        parsed and planned once per session, not at every run."""
        if not parameters:
            return None
        try:
            types = tuple(_PREPARED_TYPES[type(value)] for value in parameters)
        except KeyError:
            return None
        key = (sql, types)
        if key not in self._prepared:
            self._prepared[key] = self._prepare(f"lienthong_{len(self._prepared) + 1}", sql, types)
        return self._prepared[key]

    def _prepare(self, name: str, sql: str, types: tuple[str, ...]) -> str | None:
        """Prepare the statement now, after sending what is queued (so that a failure of theirs is
        theirs), within a savepoint of its own inside a transaction (so that a statement the server
        cannot prepare leaves the transaction as it was). Prepared statements outlive a rollback."""
        self.send_batch()
        text, count = to_prepared_sql(sql)
        prepare = f"PREPARE {name} ({', '.join(types)}) AS {text}"
        in_transaction = self._session_in_transaction
        try:
            if in_transaction:
                self._conn.execute(f"SAVEPOINT lienthong_prepare; {prepare}; RELEASE lienthong_prepare")  # type: ignore[call-overload]
            else:
                self._conn.execute(prepare)  # type: ignore[call-overload]
        except psycopg.DatabaseError as refused:
            if in_transaction:
                self._conn.execute("ROLLBACK TO lienthong_prepare; RELEASE lienthong_prepare")
            log.debug("statement not prepared (%s), sent with its values instead: %s", refused, text)
            return None
        return f"EXECUTE {name}({', '.join(['%s'] * count)})"

    def send_batch(self) -> None:
        """Send the open block's queued statements in one query and give each its answer."""
        if not self._batch or self._binder is None:
            return
        queued, self._batch = self._batch, []
        cursor = self._binder
        try:
            cursor.execute(";\n".join(statement for statement, _ in queued))  # type: ignore[call-overload]
        except BaseException as error:
            for _, result in queued:
                result.failed(error)
            raise
        for index, (_, result) in enumerate(queued):
            if index:
                cursor.nextset()
            result.answered(cursor.rowcount, cursor.fetchall() if cursor.description is not None else [])

    def executemany(self, sql: str, seq_of_parameters: Iterable[Sequence[Any]]) -> psycopg.Cursor[Row] | None:
        if self._batch is not None:
            for parameters in seq_of_parameters:
                self._queue(sql, parameters)
            return None
        cursor = (self._conn if self.in_transaction else self.raw).cursor()
        cursor.executemany(to_postgres_sql(sql), seq_of_parameters)  # type: ignore[arg-type]
        return cursor

    def executescript(self, script: str) -> None:
        """Statements without parameters, sent as one (psycopg allows several when none has any)."""
        if self._batch is not None:
            raise RuntimeError("executescript cannot run in a pipelined block: it would overtake the batch")
        if self.transaction_locks and _ENDS_TRANSACTION.search(script):
            self.transaction_locks.clear()
        self.raw.execute(script)  # type: ignore[call-overload]

    def close(self) -> None:
        self.pool.putconn(self._conn)
        self.pool.close()


# A statement after which the locks lock_for_transaction took may be gone: a transaction's end or
# start (the last one may have ended with its connection), or a savepoint rolled back
_ENDS_TRANSACTION = re.compile(r"\s*(BEGIN|START|COMMIT|ROLLBACK|END|ABORT)\b", re.I)


def _usable(conn: psycopg.Connection[Any]) -> bool:
    return not (conn.broken or conn.closed)


def _lock_key(location: PostgresLocation, name: str) -> int:
    """An advisory lock's number: a lock's name within its service's schema."""
    return zlib.crc32(f"{location.schema}:{name}".encode())


class AdvisoryLock:
    """A session-level advisory lock on its own connection: held until released or until the
    process holding it dies (its connection closes), so another instance can take over."""

    def __init__(self, connection: PostgresConnection, name: str) -> None:
        self._pool = connection.pool
        self._name = name
        self._key = _lock_key(connection.location, name)
        self._conn: psycopg.Connection[Row] | None = None

    def try_acquire(self) -> bool:
        """Whether this instance holds the lock now (taking it if free). A session the server ended
        (a restart, a network cut, ``pg_terminate_backend``) took its lock with it, and the client
        learns of it only by using the connection: the holder reads through :meth:`read`, which
        lets the lock go when its session is gone."""
        if self._conn is not None and _usable(self._conn):
            return True
        self.release()
        conn = self._pool.getconn()
        row = conn.execute("SELECT pg_try_advisory_lock(%s)", (self._key,)).fetchone()
        if row is not None and row[0]:
            self._conn = conn
            return True
        self._pool.putconn(conn)
        return False

    @property
    def held(self) -> bool:
        """Whether this instance took the lock (and has not seen its session end since)."""
        return self._conn is not None

    def read(self, sql: str, parameters: Sequence[Any] = ()) -> list[Row] | None:
        """Rows read on the lock's own session, so that the read itself proves the lock still held
        (no statement spent on checking it); None, and the lock let go, when that session ended or
        this instance does not hold the lock."""
        conn = self._conn
        if conn is None:
            return None
        try:
            # prepared by psycopg (the pool turns its own preparing off for the stores' sessions, whose
            # rollbacks would make it deallocate everything; this session never rolls back)
            statement = to_postgres_sql(sql)
            return conn.execute(statement, parameters, prepare=True).fetchall()  # type: ignore[arg-type]
        except psycopg.Error:
            log.warning("the session holding the %r lock ended; trying to take it again", self._name)
            self.release()
            return None

    def release(self) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        if _usable(conn):
            # a connection that fails here is dropped by the pool, and its lock with it
            with contextlib.suppress(psycopg.Error):
                conn.execute("SELECT pg_advisory_unlock(%s)", (self._key,))
        self._pool.putconn(conn)


def lock_for_transaction(conn: PostgresConnection, name: str) -> None:
    """Within the caller's open transaction: wait until no other transaction holds ``name``, and
    hold it until this one ends (the hash-chained log's head, the migrations). Taken once per
    transaction: a consumer's records share one, and the lock is held from the first of them on."""
    if name in conn.transaction_locks:
        return
    conn.execute("SELECT pg_advisory_xact_lock(?)", (_lock_key(conn.location, name),))
    conn.transaction_locks.add(name)

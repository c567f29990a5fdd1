"""Which database a store uses, the connection it gets, and its versioned schema.

``LIENTHONG_DATABASE_URL=postgresql://…`` puts every service's store in PostgreSQL (one schema per
service); unset, each keeps its SQLite file under ``LIENTHONG_DATA_DIR``, the embedded default.

A store's schema is a list of :class:`Migration` s, numbered from 1, recorded in ``schema_version``
as they are applied. On SQLite a store applies what is missing when it opens (one process owns the
file). On PostgreSQL, where several instances share the schema, ``lienthong db migrate`` applies
them, and an instance refuses to start on a schema older or newer than the one it was built for
(:class:`SchemaMismatch`): a release never runs on tables it does not know.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeAlias

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from services.runtime.storage.postgres import (
    PostgresConnection,
    PostgresLocation,
    lock_for_transaction,
    schema_name,
    to_postgres_ddl,
    to_postgres_sql,
)
from services.runtime.storage.sqlite import open_db


class DatabaseSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LIENTHONG_", extra="ignore")

    database_url: str | None = Field(
        default=None,
        description="postgresql://user:password@host:5432/db puts every store in PostgreSQL; "
        "unset, each service keeps its SQLite file in the data folder.",
    )


StoreLocation = Path | str | PostgresLocation


def store_location(data_dir: Path, name: str) -> StoreLocation:
    """Where the store ``name`` (``router``, ``connector-land``) lives under the current settings."""
    url = DatabaseSettings().database_url
    if url:
        return PostgresLocation(url, schema_name(name))
    return data_dir / f"{name}.db"


# sqlite3.Row or postgres.Row: both read by index, by column name, or unpacked.
Row: TypeAlias = Any


class Connection(Protocol):
    """What a store's code may call: the part of :class:`sqlite3.Connection` both backends offer."""

    @property
    def in_transaction(self) -> bool: ...

    def execute(self, sql: str, parameters: Sequence[Any] = ..., /) -> Any: ...

    def executemany(self, sql: str, seq_of_parameters: Iterable[Sequence[Any]], /) -> Any: ...

    def executescript(self, script: str, /) -> Any: ...

    def close(self) -> None: ...


@contextmanager
def transaction(conn: Connection) -> Iterator[Connection]:
    """BEGIN … COMMIT (SQLite: BEGIN IMMEDIATE, the write lock at once), rolled back on any exception."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def run_statements(conn: Connection, *statements: str) -> None:
    """Statements without parameters, in one round trip to PostgreSQL (its simple query protocol
    takes several at once: a record's RELEASE and the next one's SAVEPOINT cost one trip, not two),
    one by one on SQLite, whose calls stay in the process."""
    if dialect(conn) == "postgresql":
        conn.executescript("; ".join(to_postgres_sql(statement) for statement in statements))
        return
    for statement in statements:
        conn.execute(statement)


def pipelined(conn: Connection) -> AbstractContextManager[None]:
    """A block whose statements PostgreSQL receives without waiting for each other's answers
    (:meth:`PostgresConnection.pipelined`: its errors come at the block's end, or when a result is
    read); SQLite, in the process, runs each as it comes."""
    return conn.pipelined() if isinstance(conn, PostgresConnection) else nullcontext()


def dialect(conn: Connection) -> str:
    """``sqlite`` or ``postgresql``: for the few statements the two write differently."""
    return "postgresql" if isinstance(conn, PostgresConnection) else "sqlite"


@dataclass(frozen=True)
class Migration:
    """One version of a store's schema: its SQLite DDL, and PostgreSQL's where it is not the same
    DDL in PostgreSQL's types (:func:`to_postgres_ddl`)."""

    version: int
    sqlite: str
    postgresql: str | None = None

    def ddl(self, conn: Connection) -> str:
        if dialect(conn) == "sqlite":
            return self.sqlite
        return self.postgresql if self.postgresql is not None else to_postgres_ddl(self.sqlite)


class SchemaMismatch(RuntimeError):
    """The database's schema is not the version this release works on."""


_VERSION_TABLE = "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY, applied_at TEXT)"


def current_version(conn: Connection) -> int:
    if dialect(conn) == "sqlite":
        known = conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'schema_version'").fetchone()
    else:
        known = conn.execute("SELECT to_regclass('schema_version')").fetchone()
        known = known if known is not None and known[0] is not None else None
    if known is None:
        return 0
    row = conn.execute("SELECT max(version) FROM schema_version").fetchone()
    return int(row[0] or 0)


def migrate(conn: Connection, migrations: Sequence[Migration]) -> list[int]:
    """Apply the migrations the database lacks, each in its own transaction; the versions applied.
    Several instances migrating at once wait for each other (PostgreSQL: an advisory lock)."""
    _check_numbering(migrations)
    if isinstance(conn, PostgresConnection):
        conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{conn.location.schema}"')
    applied: list[int] = []
    for migration in migrations:
        if dialect(conn) == "sqlite":
            # executescript commits first and cannot take parameters: the whole step is one script.
            if current_version(conn) >= migration.version:
                continue
            conn.executescript(
                f"BEGIN IMMEDIATE; {_VERSION_TABLE}; {migration.ddl(conn)};"
                f" INSERT INTO schema_version (version, applied_at) VALUES ({migration.version},"
                " strftime('%Y-%m-%dT%H:%M:%fZ', 'now')); COMMIT;"
            )
            applied.append(migration.version)
            continue
        assert isinstance(conn, PostgresConnection)
        conn.execute("BEGIN")
        try:
            lock_for_transaction(conn, "migrations")
            conn.execute(_VERSION_TABLE)
            if current_version(conn) < migration.version:
                conn.raw.execute(migration.ddl(conn))  # type: ignore[call-overload]
                conn.execute(
                    "INSERT INTO schema_version (version, applied_at) VALUES (?, now()::text)",
                    (migration.version,),
                )
                applied.append(migration.version)
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
    return applied


def check_version(conn: Connection, migrations: Sequence[Migration], where: str) -> None:
    """Refuse a schema this release does not know (see the module's docstring)."""
    expected = migrations[-1].version if migrations else 0
    found = current_version(conn)
    if found == expected:
        return
    if found > expected:
        raise SchemaMismatch(
            f"{where} is at schema version {found}, newer than this release knows ({expected}): "
            "run the release that made it, or a newer one"
        )
    raise SchemaMismatch(
        f"{where} is at schema version {found}, this release needs {expected}: run `lienthong db migrate`"
    )


def _check_numbering(migrations: Sequence[Migration]) -> None:
    numbers = [m.version for m in migrations]
    if numbers != list(range(1, len(numbers) + 1)):
        raise ValueError(f"migrations must be numbered 1, 2, 3, … in order; got {numbers}")


def connect(
    location: StoreLocation, migrations: Sequence[Migration], *, migrate_now: bool | None = None
) -> Connection:
    """Open the store at ``location`` on its schema: migrated when ``migrate_now`` (the default on
    SQLite), else checked."""
    conn: Connection
    if isinstance(location, PostgresLocation):
        conn = PostgresConnection(location)
        where = f"schema {location.schema!r}"
    else:
        conn = open_db(location)
        where = f"{location}"
    if migrate_now if migrate_now is not None else not isinstance(location, PostgresLocation):
        migrate(conn, migrations)
    try:
        check_version(conn, migrations, where)
    except SchemaMismatch:
        conn.close()
        raise
    return conn

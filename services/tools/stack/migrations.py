"""Every service's schema in one PostgreSQL database: which there are, where each stands, migrating them.

On PostgreSQL the instances of a service share its schema, so none of them migrates it when it starts
(it only checks the version, :func:`services.runtime.storage.database.check_version`): ``lienthong db
migrate`` does, before a rollout, and the local stack does before it starts its services. Each schema
is named as :func:`services.runtime.storage.database.store_location` names it for its service: the
intake's, the router's, the tracker's, and one per agency connector (``connector_land``, …).

On SQLite none of this is needed: one process owns each file and migrates it when it opens it.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import psycopg

from schemas.agencies import Agency
from services.connector.store import ConnectorStore
from services.intake.store import IntakeStore
from services.router.store import RouterStore
from services.runtime.storage.database import Migration, current_version, migrate
from services.runtime.storage.postgres import PostgresConnection, PostgresLocation, schema_name
from services.runtime.storage.store import SqlProcessingStore
from services.tracker.store import TrackerStore

CONNECT_TIMEOUT_S = 10


@dataclass(frozen=True)
class ServiceSchema:
    """One service's schema: its name in the database and the store class whose migrations build it."""

    store_name: str  # as the service names its store: "router", "connector-land"
    store: type[SqlProcessingStore]

    @property
    def schema(self) -> str:
        return schema_name(self.store_name)

    @property
    def migrations(self) -> tuple[Migration, ...]:
        return self.store.migrations()

    @property
    def needed(self) -> int:
        """The version this release works on (its last migration's)."""
        return self.migrations[-1].version if self.migrations else 0


def service_schemas() -> list[ServiceSchema]:
    """Every service's schema: intake, router, tracker, and a connector's for every agency."""
    return [
        ServiceSchema("intake", IntakeStore),
        ServiceSchema("router", RouterStore),
        ServiceSchema("tracker", TrackerStore),
        *(ServiceSchema(f"connector-{agency.value}", ConnectorStore) for agency in Agency),
    ]


@dataclass(frozen=True)
class SchemaState:
    """Where one schema stands: its version before (and after) a migration, and the one needed."""

    schema: str
    before: int
    after: int
    needed: int

    @property
    def applied(self) -> int:
        return self.after - self.before

    @property
    def verdict(self) -> str:
        """``ok``, ``behind`` (run ``lienthong db migrate``) or ``newer`` (a later release made it)."""
        if self.after == self.needed:
            return "ok"
        return "behind" if self.after < self.needed else "newer"


class NewerSchema(RuntimeError):
    """A schema is at a version this release does not know: a later release migrated it."""


def check_reachable(url: str) -> None:
    """Fail fast (:class:`psycopg.OperationalError`) when nothing answers at ``url``, rather than
    waiting for a connection pool to give up."""
    with psycopg.connect(url, connect_timeout=CONNECT_TIMEOUT_S) as connection:
        connection.execute("SELECT 1")


@contextmanager
def _connected(url: str, schema: str) -> Iterator[PostgresConnection]:
    conn = PostgresConnection(PostgresLocation(url, schema))
    try:
        yield conn
    finally:
        conn.close()


def status(url: str, schemas: Sequence[ServiceSchema] | None = None) -> list[SchemaState]:
    """Each schema's version against the one this release needs (a missing schema is at 0)."""
    states = []
    for each in schemas if schemas is not None else service_schemas():
        with _connected(url, each.schema) as conn:
            version = current_version(conn)
        states.append(SchemaState(each.schema, version, version, each.needed))
    return states


def migrate_all(url: str, schemas: Sequence[ServiceSchema] | None = None) -> list[SchemaState]:
    """Apply every schema's missing migrations (each in its own transaction; instances or commands
    migrating at once wait for each other); idempotent. Refuses, touching nothing, when any schema is
    newer than this release knows (:class:`NewerSchema`)."""
    chosen = list(schemas if schemas is not None else service_schemas())
    newer = [s for s in status(url, chosen) if s.verdict == "newer"]
    if newer:
        raise NewerSchema(
            "; ".join(
                f"schema {s.schema!r} is at version {s.before}, newer than this release knows ({s.needed})"
                for s in newer
            )
            + ": run the release that made it, or a newer one"
        )
    states = []
    for each in chosen:
        with _connected(url, each.schema) as conn:
            before = current_version(conn)
            migrate(conn, each.migrations)
            after = current_version(conn)
        states.append(SchemaState(each.schema, before, after, each.needed))
    return states

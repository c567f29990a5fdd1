"""PostgreSQL run from the machine's own server programs (no Docker) for the local stack and the tests,
or the server a command or test is told to use instead."""

from services.tools.localpg.server import (
    LocalPostgres,
    PostgresBinaries,
    PostgresError,
    PostgresNotInstalled,
    create_database,
    database_url,
    drop_database,
    find_binaries,
    server_folder,
)

__all__ = [
    "LocalPostgres",
    "PostgresBinaries",
    "PostgresError",
    "PostgresNotInstalled",
    "create_database",
    "database_url",
    "drop_database",
    "find_binaries",
    "server_folder",
]

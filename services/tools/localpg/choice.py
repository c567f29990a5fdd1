"""Which PostgreSQL to use: a configured server, a testcontainers container, or the local server.

The same order as for Kafka (services.tools.localkafka.choice): the URL the caller was configured
with (the tests: ``LIENTHONG_TEST_DATABASE_URL``); a testcontainers PostgreSQL when a Docker engine
answers; otherwise a :class:`LocalPostgres` run from the machine's own server programs.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from services.tools.localkafka.choice import docker_engine_answers
from services.tools.localpg.server import LocalPostgres, redacted, server_folder

IMAGE = "postgres:15"  # the major version Debian 12 ships, which the local server runs


@dataclass(frozen=True)
class PostgresEndpoint:
    url: str  # a libpq URL (or key=value string) of a database on the server, with credentials
    kind: str  # "configured", "testcontainers" or "local"
    description: str  # for reports: never holds the password
    server: LocalPostgres | None = None  # set for the local server, so restart and crash tests can use it


@contextmanager
def postgres_endpoint(
    work_dir: Path,
    *,
    configured: str | None = None,
    configured_from: str = "the configured URL",
    allow_docker: bool = True,
    max_connections: int = 200,
) -> Iterator[PostgresEndpoint]:
    """The server to use, running for the time of the block (stopped at its end unless configured).

    ``configured``: the URL the caller was given, if any (``configured_from`` names where it came
    from, for the description); ``work_dir``: the local server's folder, if one is started.
    """
    if configured:
        yield PostgresEndpoint(configured, "configured", f"{configured_from} ({redacted(configured)})")
        return
    if allow_docker and docker_engine_answers():
        try:
            from testcontainers.community.postgres import PostgresContainer
        except ImportError:  # testcontainers before the community namespace
            from testcontainers.postgres import PostgresContainer

        container = PostgresContainer(IMAGE, driver=None).with_command(
            f"-c max_connections={max_connections}"
        )
        with container:
            url = container.get_connection_url(driver=None)
            yield PostgresEndpoint(url, "testcontainers", f"a testcontainers PostgreSQL at {redacted(url)}")
        return
    with server_folder(work_dir) as folder:
        server = LocalPostgres(folder, max_connections=max_connections)
        try:
            server.start()  # a start that fails stops the server again
            binaries = server.binaries
            yield PostgresEndpoint(
                server.url,
                "local",
                f"the local PostgreSQL {binaries.version} server ({binaries.bindir}, no Docker) at "
                f"{server.url}",
                server,
            )
        finally:
            server.stop()

"""Session fixtures: one real Kafka broker and one real PostgreSQL server for the whole run, and a
private topic prefix and a fresh database per test."""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Callable, Iterator
from typing import NoReturn

import pytest

from services.tools.localkafka.choice import KafkaEndpoint, kafka_endpoint
from services.tools.localpg.choice import PostgresEndpoint, postgres_endpoint
from services.tools.localpg.server import (
    PostgresBinaries,
    PostgresNotInstalled,
    create_database,
    drop_database,
    find_binaries,
)

pytest_plugins = ["tests.oidc_fixtures"]  # the real OpenID Connect provider (`oidc_provider`)

DATABASE_URL_ENV = "LIENTHONG_TEST_DATABASE_URL"
_used: list[KafkaEndpoint] = []
_used_postgres: list[PostgresEndpoint] = []


@pytest.fixture(scope="session")
def kafka(tmp_path_factory: pytest.TempPathFactory, pytestconfig: pytest.Config) -> Iterator[KafkaEndpoint]:
    """The real Kafka the run uses (see services.tools.localkafka.choice for the order of choice)."""
    with kafka_endpoint(tmp_path_factory.mktemp("kafka")) as endpoint:
        _used.append(endpoint)
        reporter = pytestconfig.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line(f"\nKafka: using {endpoint.description}")
        yield endpoint


@pytest.fixture(scope="session")
def kafka_bootstrap(kafka: KafkaEndpoint) -> str:
    return kafka.bootstrap_servers


@pytest.fixture
def topic_prefix() -> str:
    """A prefix no other test shares, so tests never see each other's records."""
    return f"t{uuid.uuid4().hex[:10]}."


def _postgres_unavailable(reason: str) -> NoReturn:
    """No server to test against: a failure under CI (.ci/run installs PostgreSQL), a skip elsewhere."""
    message = (
        f"the PostgreSQL tests need a server: set {DATABASE_URL_ENV}, run a Docker engine, or install "
        f"PostgreSQL locally. {reason}"
    )
    if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="session")
def postgres(
    tmp_path_factory: pytest.TempPathFactory, pytestconfig: pytest.Config
) -> Iterator[PostgresEndpoint]:
    """The real PostgreSQL the run uses: the server in LIENTHONG_TEST_DATABASE_URL, else a
    testcontainers one when a Docker engine answers, else a local one (services.tools.localpg)."""
    try:
        with postgres_endpoint(
            tmp_path_factory.mktemp("postgres"),
            configured=os.environ.get(DATABASE_URL_ENV) or None,
            configured_from=f"the server in {DATABASE_URL_ENV}",
        ) as endpoint:
            _used_postgres.append(endpoint)
            reporter = pytestconfig.pluginmanager.get_plugin("terminalreporter")
            if reporter is not None:
                reporter.write_line(f"\nPostgreSQL: using {endpoint.description}")
            yield endpoint
    except PostgresNotInstalled as exc:  # raised before the yield only: finding the programs
        _postgres_unavailable(str(exc))


@pytest.fixture(scope="session")
def postgres_url(postgres: PostgresEndpoint) -> str:
    """The URL of a database on the run's server, with rights to create databases."""
    return postgres.url


@pytest.fixture(scope="session")
def postgres_binaries() -> PostgresBinaries:
    """The machine's PostgreSQL server programs, for tests that start a server of their own."""
    try:
        return find_binaries()
    except PostgresNotInstalled as exc:
        _postgres_unavailable(str(exc))


@pytest.fixture
def fresh_database_factory(postgres_url: str, request: pytest.FixtureRequest) -> Iterator[Callable[[], str]]:
    """Makes a new, empty database on the run's server at each call and returns its URL; all are
    dropped when the test ends. Named after the test, so a leftover one tells whose it is."""
    slug = re.sub(r"[^a-z0-9]+", "_", request.node.name.lower()).strip("_")[:40]
    made: list[str] = []

    def make() -> str:
        name = f"t_{slug}_{uuid.uuid4().hex[:8]}"
        url = create_database(postgres_url, name)
        made.append(name)
        return url

    yield make
    for name in made:
        drop_database(postgres_url, name)


@pytest.fixture
def fresh_database_url(fresh_database_factory: Callable[[], str]) -> str:
    """The URL of a database made for this test alone, so tests never see each other's rows."""
    return fresh_database_factory()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    for endpoint in _used:
        terminalreporter.write_line(
            f"Kafka broker used by this run: {endpoint.kind} — {endpoint.description}"
        )
    for server in _used_postgres:
        terminalreporter.write_line(f"PostgreSQL used by this run: {server.kind} — {server.description}")


_KAFKA_FIXTURES = {"kafka", "kafka_bootstrap"}
_POSTGRES_FIXTURES = {
    "postgres",
    "postgres_url",
    "postgres_binaries",
    "fresh_database_factory",
    "fresh_database_url",
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # Any test that asks for the broker is a Kafka test, so `-m "not kafka"` gives a quick unit run;
    # likewise any test that asks for PostgreSQL is a `postgres` test (still part of the default run).
    for item in items:
        fixtures = set(getattr(item, "fixturenames", ()))
        if fixtures & _KAFKA_FIXTURES:
            item.add_marker(pytest.mark.kafka)
        if fixtures & _POSTGRES_FIXTURES:
            item.add_marker(pytest.mark.postgres)

"""Session fixtures: one real Kafka broker for the whole run, and a private topic prefix per test."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from services.localkafka.choice import KafkaEndpoint, kafka_endpoint

_used: list[KafkaEndpoint] = []


@pytest.fixture(scope="session")
def kafka(tmp_path_factory: pytest.TempPathFactory, pytestconfig: pytest.Config) -> Iterator[KafkaEndpoint]:
    """The real Kafka the run uses (see services.localkafka.choice for the order of choice)."""
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


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    for endpoint in _used:
        terminalreporter.write_line(
            f"Kafka broker used by this run: {endpoint.kind} — {endpoint.description}"
        )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # Any test that asks for the broker is a Kafka test, so `-m "not kafka"` gives a quick unit run.
    for item in items:
        if "kafka_bootstrap" in getattr(item, "fixturenames", ()) or "kafka" in getattr(
            item, "fixturenames", ()
        ):
            item.add_marker(pytest.mark.kafka)

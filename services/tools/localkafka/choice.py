"""Which Kafka to use: a configured cluster, a testcontainers container, or the local broker.

The tests, the benchmarks and the local stack share this choice, in this order:
``KAFKA_BOOTSTRAP_SERVERS`` if set; a testcontainers Kafka when a Docker engine answers; otherwise
the local broker run from Apache Kafka's own jars.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from services.tools.localkafka.broker import LocalKafkaBroker


@dataclass(frozen=True)
class KafkaEndpoint:
    bootstrap_servers: str
    kind: str  # "configured", "testcontainers" or "local"
    description: str
    broker: LocalKafkaBroker | None = None  # set for the local broker, so fault tests can kill it


def docker_engine_answers() -> bool:
    try:
        import docker

        client = docker.from_env(timeout=3)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except Exception:
        return False


@contextmanager
def kafka_endpoint(work_dir: Path, *, allow_docker: bool = True) -> Iterator[KafkaEndpoint]:
    configured = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if configured:
        yield KafkaEndpoint(
            configured, "configured", f"the cluster in KAFKA_BOOTSTRAP_SERVERS ({configured})"
        )
        return
    if allow_docker and docker_engine_answers():
        from testcontainers.kafka import KafkaContainer

        with KafkaContainer().with_kraft() as container:
            bootstrap = container.get_bootstrap_server()
            yield KafkaEndpoint(
                bootstrap, "testcontainers", f"a testcontainers Kafka container at {bootstrap}"
            )
        return
    broker = LocalKafkaBroker(work_dir)
    try:
        broker.start()  # inside: a start interrupted half way still stops the JVM
        dist = broker.distribution
        yield KafkaEndpoint(
            broker.bootstrap_servers,
            "local",
            f"the local Kafka broker (Apache Kafka {dist.version} jars from {dist.source}, no Docker) "
            f"at {broker.bootstrap_servers}",
            broker,
        )
    finally:
        broker.stop()

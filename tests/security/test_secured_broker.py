"""The broker with SASL/SCRAM and ACLs: the land connector's principal reads land requests and writes
outcomes, is refused tax requests and another connector's consumer group; a wrong password is refused."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import (
    GroupAuthorizationFailedError,
    KafkaConnectionError,
    KafkaError,
    TopicAuthorizationFailedError,
)

from schemas.agencies import Agency
from schemas.topics import HANDOFF_OUTCOME, requests_topic
from services.runtime.shell.settings import KafkaSettings, client_security_options
from services.tools.localkafka.access import connector_principal, service_acls
from services.tools.localkafka.broker import LocalKafkaBroker

pytestmark = pytest.mark.kafka  # its own broker, started here

PREFIX = "sec."
LAND, TAX, OUTCOME = (
    requests_topic(Agency.LAND, PREFIX),
    requests_topic(Agency.TAX, PREFIX),
    PREFIX + HANDOFF_OUTCOME,
)
PASSWORDS = {connector_principal(a): secrets.token_urlsafe(12) for a in (Agency.LAND, Agency.TAX)}


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalKafkaBroker]:
    broker = LocalKafkaBroker(tmp_path_factory.mktemp("secured"), sasl=True, scram_users=PASSWORDS)
    broker.start()
    try:
        acls = service_acls(PREFIX)
        asyncio.run(
            broker.add_acls(acls[connector_principal(Agency.LAND)] + acls[connector_principal(Agency.TAX)])
        )
        asyncio.run(_seed(broker))
        yield broker
    finally:
        broker.stop()


async def _seed(broker: LocalKafkaBroker) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=broker.bootstrap_servers, **broker.client_options())
    await admin.start()
    try:
        await admin.create_topics([NewTopic(t, 1, 1) for t in (LAND, TAX, OUTCOME)])
    finally:
        await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap_servers, **broker.client_options())
    await producer.start()
    try:
        await producer.send_and_wait(LAND, b"a land request", key=b"d1")
        await producer.send_and_wait(TAX, b"a tax request", key=b"d2")
    finally:
        await producer.stop()


def land_options(broker: LocalKafkaBroker, password: str | None = None) -> dict[str, object]:
    """The land connector's access, exactly as a service builds it from its settings."""
    settings = KafkaSettings(
        bootstrap_servers=broker.bootstrap_servers,
        security_protocol="SASL_PLAINTEXT",
        sasl_mechanism="SCRAM-SHA-512",
        sasl_username=connector_principal(Agency.LAND),
        sasl_password=password or PASSWORDS[connector_principal(Agency.LAND)],  # type: ignore[arg-type]
    )
    return {"bootstrap_servers": broker.bootstrap_servers, **client_security_options(settings)}


@pytest.fixture
async def land_consumer_factory(secured: LocalKafkaBroker) -> AsyncIterator[list[AIOKafkaConsumer]]:
    made: list[AIOKafkaConsumer] = []
    yield made
    for consumer in made:
        await consumer.stop()


async def first_value(consumer: AIOKafkaConsumer, within_s: float = 20.0) -> bytes | None:
    record = await asyncio.wait_for(consumer.getone(), within_s)
    value: bytes | None = record.value
    return value


async def test_the_land_principal_reads_land_requests_and_writes_outcomes(
    secured: LocalKafkaBroker, land_consumer_factory: list[AIOKafkaConsumer]
) -> None:
    consumer = AIOKafkaConsumer(
        LAND, group_id=PREFIX + "connector-land", auto_offset_reset="earliest", **land_options(secured)
    )
    land_consumer_factory.append(consumer)
    await consumer.start()
    assert await first_value(consumer) == b"a land request"

    producer = AIOKafkaProducer(enable_idempotence=True, acks="all", **land_options(secured))
    await producer.start()
    try:
        metadata = await producer.send_and_wait(OUTCOME, b"an outcome", key=b"d1")
        assert metadata.offset >= 0
    finally:
        await producer.stop()


async def test_the_land_principal_is_refused_tax_requests_and_other_groups(
    secured: LocalKafkaBroker, land_consumer_factory: list[AIOKafkaConsumer]
) -> None:
    reader = AIOKafkaConsumer(
        TAX, group_id=PREFIX + "connector-land", auto_offset_reset="earliest", **land_options(secured)
    )
    land_consumer_factory.append(reader)
    with pytest.raises(TopicAuthorizationFailedError):
        await reader.start()
        await first_value(reader)

    other_group = AIOKafkaConsumer(
        LAND, group_id=PREFIX + "connector-tax", auto_offset_reset="earliest", **land_options(secured)
    )
    land_consumer_factory.append(other_group)
    with pytest.raises(GroupAuthorizationFailedError):
        await other_group.start()
        await first_value(other_group)

    producer = AIOKafkaProducer(**land_options(secured))
    await producer.start()
    try:
        with pytest.raises(TopicAuthorizationFailedError):
            await producer.send_and_wait(TAX, b"a forged tax request", key=b"d3")
    finally:
        await producer.stop()


async def test_a_wrong_password_is_refused(secured: LocalKafkaBroker) -> None:
    producer = AIOKafkaProducer(request_timeout_ms=5000, **land_options(secured, password="not-the-password"))
    with pytest.raises((KafkaError, KafkaConnectionError)):
        try:
            await producer.start()
        finally:
            await producer.stop()


def test_client_security_options_for_a_real_cluster(tmp_path: Path) -> None:
    settings = KafkaSettings(security_protocol="SASL_SSL", sasl_username="router", sasl_password="s3cret")  # type: ignore[arg-type]
    options = client_security_options(settings)
    assert options["security_protocol"] == "SASL_SSL" and options["sasl_mechanism"] == "SCRAM-SHA-512"
    assert options["sasl_plain_username"] == "router" and "ssl_context" in options
    assert client_security_options(KafkaSettings()) == {"security_protocol": "PLAINTEXT"}
    assert "s3cret" not in repr(settings), "the password never shows in logs or errors"

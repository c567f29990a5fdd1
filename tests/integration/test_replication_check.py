"""The start-up check that names a service's topics kept in one copy, on the real (single) broker."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from aiokafka.admin import AIOKafkaAdminClient

from schemas.topics import DOSSIER_RECEIVED, HANDOFF_OUTCOME, TopicSpec, all_topics
from services.router.app import RouterSettings
from services.router.app import build_app as build_router
from services.runtime.shell.replication import single_copy_topics
from services.runtime.shell.settings import KafkaSettings
from services.runtime.shell.topics_admin import ensure_topics, replication_factors
from tests.stack_helpers import wait_for

pytestmark = pytest.mark.kafka


async def topics_on_cluster(bootstrap: str) -> dict[str, int]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        return replication_factors(await admin.describe_topics())
    finally:
        await admin.close()


async def create_visibly(bootstrap: str, specs: list[TopicSpec]) -> None:
    """Create the topics and wait until the broker's metadata shows them (it follows the controller)."""
    await ensure_topics(bootstrap, specs)

    async def visible() -> bool:
        return {s.name for s in specs} <= (await topics_on_cluster(bootstrap)).keys()

    await wait_for(visible, 30, "the new topics in the broker's metadata")


async def test_topics_in_one_copy_are_named_in_one_warning(
    kafka_bootstrap: str, topic_prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    specs = [s for s in all_topics(topic_prefix) if s.name.endswith((DOSSIER_RECEIVED, HANDOFF_OUTCOME))]
    await create_visibly(kafka_bootstrap, specs)
    used = [s.name for s in specs]
    missing = topic_prefix + "not.created"

    with caplog.at_level(logging.WARNING, logger="services.runtime.shell.replication"):
        found = await single_copy_topics(KafkaSettings(bootstrap_servers=kafka_bootstrap), [*used, missing])

    assert found == sorted(used)
    [warning] = [r for r in caplog.records if r.name == "services.runtime.shell.replication"]
    assert warning.levelno == logging.WARNING
    message = warning.getMessage()
    assert all(name in message for name in used) and missing not in message
    assert "--replication-factor 3" in message and "LIENTHONG_LOCAL_STACK" in message
    assert warning.topics == sorted(used)  # type: ignore[attr-defined]

    # Asking about a topic the cluster lacks did not create it (the broker auto-creates topics).
    assert missing not in await topics_on_cluster(kafka_bootstrap)


async def test_the_local_stack_is_not_warned(
    kafka_bootstrap: str, topic_prefix: str, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    specs = [s for s in all_topics(topic_prefix) if s.name.endswith(DOSSIER_RECEIVED)]
    await create_visibly(kafka_bootstrap, specs)
    monkeypatch.setenv("LIENTHONG_LOCAL_STACK", "1")
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", kafka_bootstrap)
    settings = KafkaSettings()
    assert settings.local_stack

    with caplog.at_level(logging.WARNING, logger="services.runtime.shell.replication"):
        assert await single_copy_topics(settings, [s.name for s in specs]) == []
    assert not [r for r in caplog.records if r.name == "services.runtime.shell.replication"]


async def test_an_unreachable_cluster_is_said_and_does_not_stop_the_service(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, logger="services.runtime.shell.replication"):
        found = await single_copy_topics(
            KafkaSettings(bootstrap_servers="127.0.0.1:1"), ["dossier.received"], timeout_s=5
        )
    assert found == []
    [warning] = [r for r in caplog.records if r.name == "services.runtime.shell.replication"]
    assert "could not check" in warning.getMessage()


async def test_a_running_service_warns_at_start_about_its_topics_in_one_copy(
    kafka_bootstrap: str, topic_prefix: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    await create_visibly(kafka_bootstrap, all_topics(topic_prefix))
    settings = RouterSettings(bootstrap_servers=kafka_bootstrap, topic_prefix=topic_prefix, data_dir=tmp_path)
    assert not settings.local_stack
    app = build_router(settings)

    def warned() -> list[logging.LogRecord]:
        return [r for r in caplog.records if r.name == "services.runtime.shell.replication"]

    async def said() -> bool:
        return bool(warned())

    with caplog.at_level(logging.WARNING, logger="services.runtime.shell.replication"):
        async with app.router.lifespan_context(app):
            await wait_for(said, 30, "the router's warning about its single-copy topics")
    (warning,) = warned()
    assert topic_prefix + DOSSIER_RECEIVED in warning.topics  # type: ignore[attr-defined]
    assert topic_prefix + HANDOFF_OUTCOME in warning.topics  # type: ignore[attr-defined]

"""Creating the declared topics on a real broker: only missing ones, with their retention."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from schemas.topics import DLQ_RETENTION_MS, DOSSIER_RETENTION_MS, all_topics, requests_topic
from services.runtime.shell.topics_admin import TopicAction, describe_topic_configs, ensure_topics
from services.tools.cli.topics_cmd import app

pytestmark = pytest.mark.kafka


async def test_create_topics_is_idempotent_and_sets_retention(
    kafka_bootstrap: str, topic_prefix: str
) -> None:
    specs = all_topics(topic_prefix)
    names = [spec.name for spec in specs]

    dry = await ensure_topics(kafka_bootstrap, specs, dry_run=True)
    assert dry.created == names  # "would create", nothing touched yet

    first = await ensure_topics(kafka_bootstrap, specs)
    assert first.created == names
    assert first.existing == []

    second = await ensure_topics(kafka_bootstrap, specs)
    assert second.created == []
    assert second.existing == names
    assert {t.action for t in second.topics} == {TopicAction.EXISTS}

    received = topic_prefix + "dossier.received"
    dlq = requests_topic("tax", topic_prefix) + ".dlq"
    configs = await describe_topic_configs(kafka_bootstrap, [received, dlq])
    assert configs[received]["retention.ms"] == str(DOSSIER_RETENTION_MS)
    assert configs[received]["cleanup.policy"] == "delete"
    assert configs[dlq]["retention.ms"] == str(DLQ_RETENTION_MS)


def test_topics_create_command_prints_what_it_did(kafka_bootstrap: str, topic_prefix: str) -> None:
    runner = CliRunner()
    args = ["create", "--bootstrap-servers", kafka_bootstrap, "--prefix", topic_prefix]
    total = len(all_topics())

    first = runner.invoke(app, args)
    assert first.exit_code == 0, first.output
    row = next(
        line for line in first.output.splitlines() if line.startswith(f"{topic_prefix}dossier.received ")
    )
    assert row.split()[1:] == ["6", "1", "1", "14d", "delete", "create"]
    assert f"created {total}, already present 0" in first.output
    assert "replication factor 1, min.insync.replicas 1 (1 brokers)" in first.output

    second = runner.invoke(app, args)
    assert second.exit_code == 0, second.output
    assert f"created 0, already present {total}" in second.output


def test_more_copies_than_the_cluster_has_brokers_is_refused_in_one_sentence(
    kafka_bootstrap: str, topic_prefix: str
) -> None:
    args = ["create", "--bootstrap-servers", kafka_bootstrap, "--prefix", topic_prefix]
    refused = CliRunner().invoke(app, [*args, "--replication-factor", "3"])
    assert refused.exit_code == 1
    assert refused.output.strip() == (
        "A replication factor of 3 needs at least 3 brokers, but the cluster has 1: ask for 1 or fewer"
        " copies, or add brokers."
    )
    listed = CliRunner().invoke(app, [*args, "--dry-run"])
    assert f"would create {len(all_topics())}, already present 0" in listed.output, "nothing was created"

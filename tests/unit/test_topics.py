"""The topic registry: names, prefixes, and a full set of topics for every agency."""

from __future__ import annotations

from datetime import timedelta

import pytest
from typer.testing import CliRunner

from schemas.agencies import Agency
from schemas.topics import (
    RETRY_TIERS,
    CleanupPolicy,
    Replication,
    ReplicationError,
    TopicSpec,
    all_topics,
    choose_replication,
    dlq_topic,
    requests_topic,
    retry_topic,
)
from services.runtime.shell.topics_admin import TopicAction, plan_topics, replication_factors
from services.tools.cli.topics_cmd import app, human_duration, render_table, under_replicated_report

DAY_MS = 86_400_000


def test_topic_names() -> None:
    assert requests_topic(Agency.TAX) == "handoff.tax.requested"
    assert retry_topic(Agency.TAX, "1m") == "handoff.tax.requested.retry.1m"
    assert dlq_topic(requests_topic("land")) == "handoff.land.requested.dlq"


def test_prefix_isolates_every_topic() -> None:
    assert requests_topic("land", prefix="t1234.") == "t1234.handoff.land.requested"
    assert retry_topic("land", RETRY_TIERS[0], prefix="t1234.") == "t1234.handoff.land.requested.retry.10s"
    names = [spec.name for spec in all_topics("t1234.")]
    assert all(name.startswith("t1234.") for name in names)
    assert [name.removeprefix("t1234.") for name in names] == [spec.name for spec in all_topics()]


def test_retry_tiers_are_declared_once_in_increasing_delay() -> None:
    assert [(t.name, t.delay) for t in RETRY_TIERS] == [
        ("10s", timedelta(seconds=10)),
        ("1m", timedelta(minutes=1)),
        ("10m", timedelta(minutes=10)),
    ]


def test_unknown_tier_or_agency_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown retry tier '5m'"):
        retry_topic(Agency.LAND, "5m")
    with pytest.raises(ValueError):
        requests_topic("post_office")


@pytest.mark.parametrize("agency", list(Agency))
def test_every_agency_has_requests_retry_tiers_and_dlq(agency: Agency) -> None:
    specs = {spec.name: spec for spec in all_topics()}
    requests = specs[f"handoff.{agency.value}.requested"]
    assert requests.partitions == 6
    assert requests.retention_ms == 14 * DAY_MS
    for tier in RETRY_TIERS:
        retry = specs[f"handoff.{agency.value}.requested.retry.{tier.name}"]
        assert retry.partitions == 3
        assert retry.retention_ms < requests.retention_ms
    dlq = specs[f"handoff.{agency.value}.requested.dlq"]
    assert (dlq.partitions, dlq.retention_ms) == (3, 30 * DAY_MS)


def test_dossier_topics_and_their_dead_letters() -> None:
    specs = {spec.name: spec for spec in all_topics()}
    for name in ("dossier.received", "dossier.status", "dossier.closed", "handoff.outcome"):
        assert specs[name].partitions == 6
        assert specs[name].retention_ms == 14 * DAY_MS
    assert {
        "dossier.received.dlq",
        "dossier.status.dlq",
        "dossier.closed.dlq",
        "handoff.outcome.dlq",
    } <= specs.keys()
    assert len(specs) == len(all_topics()), "topic names are unique"
    replay_log = specs.pop("dlq.replays")
    assert replay_log.cleanup_policy is CleanupPolicy.COMPACT, "one entry per replayed dead letter, kept"
    heads = specs.pop("audit.heads")
    assert heads.cleanup_policy is CleanupPolicy.COMPACT, "the newest anchored head of each chain, kept"
    assert specs["operator.actions"].retention_ms == -1, "every operator action is kept"
    assert all(spec.cleanup_policy is CleanupPolicy.DELETE for spec in specs.values())
    assert specs["dossier.received"].configs() == {
        "retention.ms": str(14 * DAY_MS),
        "cleanup.policy": "delete",
        "min.insync.replicas": "1",
    }


@pytest.mark.parametrize(
    ("brokers", "expected"),
    [(1, Replication(1, 1)), (2, Replication(2, 2)), (3, Replication(3, 2)), (7, Replication(3, 2))],
)
def test_default_replication_is_three_copies_two_in_sync_or_what_the_cluster_has(
    brokers: int, expected: Replication
) -> None:
    assert choose_replication(brokers) == expected


def test_requested_replication_overrides_the_default() -> None:
    assert choose_replication(5, 5) == Replication(5, 2)
    assert choose_replication(3, 3, 3) == Replication(3, 3)
    assert choose_replication(3, 2, 1) == Replication(2, 1)


def test_more_copies_than_brokers_is_one_clear_sentence() -> None:
    with pytest.raises(ReplicationError) as refused:
        choose_replication(1, 3)
    message = str(refused.value)
    assert message == (
        "A replication factor of 3 needs at least 3 brokers, but the cluster has 1: ask for 1 or fewer"
        " copies, or add brokers."
    )
    with pytest.raises(ReplicationError, match=r"min\.insync\.replicas must be between 1 and the"):
        choose_replication(3, 2, 3)
    with pytest.raises(ReplicationError, match="at least 1"):
        choose_replication(3, 0)


def test_replication_is_stamped_on_every_topic() -> None:
    specs = all_topics("p.", choose_replication(3))
    assert {(s.replication_factor, s.min_insync) for s in specs} == {(3, 2)}
    assert all(s.configs()["min.insync.replicas"] == "2" for s in specs)
    assert [s.name for s in specs] == [s.name for s in all_topics("p.")]
    assert {s.replication_factor for s in all_topics("p.")} == {1}, "one copy unless chosen"


def test_a_topic_declared_with_more_in_sync_replicas_than_copies_is_refused() -> None:
    with pytest.raises(ValueError, match="exceeds the replication factor"):
        TopicSpec(
            name="x",
            partitions=1,
            replication_factor=2,
            min_insync_replicas=3,
            retention_ms=1,
            description="x",
        )
    assert (
        TopicSpec(name="x", partitions=1, replication_factor=3, retention_ms=1, description="x").min_insync
        == 2
    )


def test_plan_reports_existing_topics_with_fewer_copies() -> None:
    specs = all_topics("p.", choose_replication(3))
    plan = plan_topics(specs, {"p.dossier.received": 1, "p.dossier.status": 3}, brokers=3)
    [short] = plan.under_replicated
    assert (short.spec.name, short.current_replication_factor, short.action) == (
        "p.dossier.received",
        1,
        TopicAction.EXISTS,
    )
    assert len(plan.created) == len(specs) - 2
    report = under_replicated_report(plan.under_replicated)
    assert "1 existing topics keep fewer than 3 copies" in report
    assert "p.dossier.received (1)" in report
    table = render_table([(t.spec, t.action.value) for t in plan.topics], replication=True)
    assert table.splitlines()[0].split() == [
        "topic", "partitions", "replicas", "min.isr", "retention", "cleanup", "action",
    ]  # fmt: skip
    row = next(line for line in table.splitlines() if line.startswith("p.dossier.status "))
    assert row.split()[1:] == ["6", "3", "2", "14d", "delete", "exists"]


def test_replication_factor_of_a_topic_is_its_fewest_replicas() -> None:
    metadata = [
        {"error_code": 0, "topic": "a", "partitions": [{"replicas": [1, 2, 3]}, {"replicas": [2, 3]}]},
        {"error_code": 0, "topic": "b", "partitions": [{"replicas": [1]}]},
        {"error_code": 3, "topic": "gone", "partitions": []},
    ]
    assert replication_factors(metadata) == {"a": 2, "b": 1}


def test_plan_creates_only_missing_topics() -> None:
    specs = all_topics("p.")
    plan = plan_topics(specs, ["p.dossier.received", "someone.else"])
    assert plan.existing == ["p.dossier.received"]
    assert len(plan.created) == len(specs) - 1
    assert all(t.action is TopicAction.CREATE for t in plan.topics if t.spec.name != "p.dossier.received")


@pytest.mark.parametrize(
    ("ms", "text"),
    [(14 * DAY_MS, "14d"), (3_600_000, "1h"), (90_000, "90s"), (1500, "1500ms"), (-1, "forever")],
)
def test_human_retention(ms: int, text: str) -> None:
    assert human_duration(ms) == text


def test_topics_list_prints_a_table_without_a_cluster() -> None:
    result = CliRunner().invoke(app, ["list", "--prefix", "t9."])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].split() == ["topic", "partitions", "retention", "cleanup", "action"]
    assert "t9.handoff.tax.requested.dlq" in result.output
    row = next(line for line in lines if line.startswith("t9.dossier.received "))
    assert row.split()[1:4] == ["6", "14d", "delete"]


def test_topics_create_reports_an_unreachable_cluster() -> None:
    # Only creating needs the cluster: a dry run prints the plan without one (test_kafka_discovery).
    result = CliRunner().invoke(app, ["create", "--bootstrap-servers", "127.0.0.1:1"])
    assert result.exit_code == 1
    assert "cannot reach Kafka at 127.0.0.1:1" in result.output

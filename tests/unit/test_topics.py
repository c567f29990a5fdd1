"""The topic registry: names, prefixes, and a full set of topics for every agency."""

from __future__ import annotations

from datetime import timedelta

import pytest
from typer.testing import CliRunner

from schemas.agencies import Agency
from schemas.topics import (
    RETRY_TIERS,
    CleanupPolicy,
    all_topics,
    dlq_topic,
    requests_topic,
    retry_topic,
)
from services.cli.topics_cmd import app, human_duration
from services.runtime.topics_admin import TopicAction, plan_topics

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
    assert all(spec.cleanup_policy is CleanupPolicy.DELETE for spec in specs.values())
    assert specs["dossier.received"].configs() == {
        "retention.ms": str(14 * DAY_MS),
        "cleanup.policy": "delete",
    }


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
    result = CliRunner().invoke(app, ["create", "--dry-run", "--bootstrap-servers", "127.0.0.1:1"])
    assert result.exit_code == 1
    assert "cannot reach Kafka at 127.0.0.1:1" in result.output

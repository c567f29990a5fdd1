"""Every Kafka topic of the bus, declared once: names, partitions, retention.

Topics are created by ``lienthong topics create``, never by broker auto-creation, so that their
partitions and retention are the ones below. A ``prefix`` (e.g. ``t1234.``) lets a test or a second
environment share a cluster without seeing anyone else's messages.

Partitions: the main flow topics have 6, so up to 6 consumers of one group share the load (every
record is keyed by dossier id, so one dossier's events stay in order on one partition). Retry and
dead-letter topics carry a small share of the traffic and order is not kept across a retry anyway,
so 3 partitions are enough there and cost the broker less.
"""

from __future__ import annotations

from datetime import timedelta
from enum import StrEnum
from typing import Final

from pydantic import BaseModel, ConfigDict, Field

from schemas.agencies import Agency

DOSSIER_RECEIVED: Final = "dossier.received"
DOSSIER_STATUS: Final = "dossier.status"
DOSSIER_CLOSED: Final = "dossier.closed"
HANDOFF_OUTCOME: Final = "handoff.outcome"
DLQ_REPLAYS: Final = "dlq.replays"  # one record per replayed dead letter, keyed by its id
DLQ_SUFFIX: Final = ".dlq"

MAIN_PARTITIONS: Final = 6
SIDE_PARTITIONS: Final = 3  # retry tiers and dead-letter topics

_DAY_MS: Final = 24 * 60 * 60 * 1000
DOSSIER_RETENTION_MS: Final = 14 * _DAY_MS
DLQ_RETENTION_MS: Final = 30 * _DAY_MS  # an operator has a month to inspect and replay
# Long enough for a retry worker that is down over a weekend; the delays themselves are minutes.
RETRY_RETENTION_MS: Final = 3 * _DAY_MS


class CleanupPolicy(StrEnum):
    """Kafka ``cleanup.policy``."""

    DELETE = "delete"
    COMPACT = "compact"


class TopicSpec(BaseModel):
    """A topic as it should exist on the cluster."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, max_length=249, pattern=r"^[A-Za-z0-9._-]+$")
    partitions: int = Field(ge=1)
    replication_factor: int = Field(default=1, ge=1)
    retention_ms: int = Field(ge=-1, description="retention.ms; -1 keeps records forever.")
    cleanup_policy: CleanupPolicy = CleanupPolicy.DELETE
    description: str

    def configs(self) -> dict[str, str]:
        """Topic-level configs to create the topic with."""
        return {"retention.ms": str(self.retention_ms), "cleanup.policy": self.cleanup_policy.value}


class RetryTier(BaseModel):
    """A delayed-retry tier: a failed handoff waits ``delay`` before its next attempt."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[0-9]+[smh]$")
    delay: timedelta


RETRY_TIERS: Final[tuple[RetryTier, ...]] = (
    RetryTier(name="10s", delay=timedelta(seconds=10)),
    RetryTier(name="1m", delay=timedelta(minutes=1)),
    RetryTier(name="10m", delay=timedelta(minutes=10)),
)
"""The delayed retry tiers, in the order a failing handoff goes through them."""


def requests_topic(agency: Agency | str, prefix: str = "") -> str:
    """Topic of handoff requests for one agency: ``handoff.<agency>.requested``."""
    return f"{prefix}handoff.{Agency(agency).value}.requested"


def retry_topic(agency: Agency | str, tier: RetryTier | str, prefix: str = "") -> str:
    """Delayed retry topic of one agency and tier: ``handoff.<agency>.requested.retry.<tier>``."""
    name = tier.name if isinstance(tier, RetryTier) else tier
    if name not in {t.name for t in RETRY_TIERS}:
        raise ValueError(f"unknown retry tier {name!r}; tiers: {', '.join(t.name for t in RETRY_TIERS)}")
    return f"{requests_topic(agency, prefix)}.retry.{name}"


def dlq_topic(topic: str) -> str:
    """Dead-letter topic of a consumed topic (already prefixed): ``<topic>.dlq``."""
    return topic + DLQ_SUFFIX


def _flow(name: str, description: str) -> TopicSpec:
    return TopicSpec(
        name=name, partitions=MAIN_PARTITIONS, retention_ms=DOSSIER_RETENTION_MS, description=description
    )


def _dlq(topic: str) -> TopicSpec:
    return TopicSpec(
        name=dlq_topic(topic),
        partitions=SIDE_PARTITIONS,
        retention_ms=DLQ_RETENTION_MS,
        description=f"Dead letters of {topic}: poison messages and handoffs that exhausted their retries.",
    )


def agency_topics(agency: Agency | str, prefix: str = "") -> list[TopicSpec]:
    """Request, retry-tier and dead-letter topics of one agency."""
    requests = requests_topic(agency, prefix)
    specs = [_flow(requests, f"Handoff requests for the {Agency(agency).value} connector.")]
    specs += [
        TopicSpec(
            name=retry_topic(agency, tier, prefix),
            partitions=SIDE_PARTITIONS,
            retention_ms=RETRY_RETENTION_MS,
            description=f"Requests to retry after {tier.name} (transient failure or open circuit).",
        )
        for tier in RETRY_TIERS
    ]
    specs.append(_dlq(requests))
    return specs


def all_topics(prefix: str = "") -> list[TopicSpec]:
    """Every topic of the bus, with ``prefix`` in front of each name."""
    received = prefix + DOSSIER_RECEIVED
    outcome = prefix + HANDOFF_OUTCOME
    specs = [
        _flow(received, "Dossiers accepted by intake (DossierReceived)."),
        _dlq(received),
        _flow(prefix + DOSSIER_STATUS, "National status changes (DossierStatusChanged)."),
        _dlq(prefix + DOSSIER_STATUS),
        _flow(prefix + DOSSIER_CLOSED, "Closed dossiers (DossierClosed)."),
        _dlq(prefix + DOSSIER_CLOSED),
        _flow(outcome, "Outcomes of handoffs, from connectors to the router (HandoffOutcome)."),
        _dlq(outcome),
    ]
    for agency in Agency:
        specs += agency_topics(agency, prefix)
    specs.append(
        TopicSpec(
            name=prefix + DLQ_REPLAYS,
            partitions=1,
            retention_ms=-1,
            cleanup_policy=CleanupPolicy.COMPACT,
            description="The replay log: which dead letters an operator replayed, when and where to.",
        )
    )
    return specs

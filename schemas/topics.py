"""Every Kafka topic of the bus, declared once: names, partitions, retention.

Topics are created by ``lienthong topics create``, never by broker auto-creation, so that their
partitions and retention are the ones below. A ``prefix`` (e.g. ``t1234.``) lets a test or a second
environment share a cluster without seeing anyone else's messages.

Partitions: the main flow topics have 6, so up to 6 consumers of one group share the load (every
record is keyed by dossier id, so one dossier's events stay in order on one partition). Retry and
dead-letter topics carry a small share of the traffic and order is not kept across a retry anyway,
so 3 partitions are enough there and cost the broker less.

Replication is a deployment choice, not part of a topic's declaration: :func:`choose_replication` is
the one place that decides it (by default three copies, or one per broker on a smaller cluster, and
``min.insync.replicas`` two, so that ``acks=all`` means a write survives the loss of one broker), and
:func:`all_topics` stamps the choice on every topic.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum
from typing import Final, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from schemas.agencies import Agency

DOSSIER_RECEIVED: Final = "dossier.received"
DOSSIER_STATUS: Final = "dossier.status"
DOSSIER_CLOSED: Final = "dossier.closed"
HANDOFF_OUTCOME: Final = "handoff.outcome"
DLQ_REPLAYS: Final = "dlq.replays"  # one record per replayed dead letter, keyed by its id
DLQ_SUFFIX: Final = ".dlq"
# What people did (replays, unmasks), one OperatorActionRecorded each, projected into the handoff log.
OPERATOR_ACTIONS: Final = "operator.actions"
# The handoff log's anchored head, keyed by the chain's name: the latest signed head of each chain.
AUDIT_HEADS: Final = "audit.heads"

MAIN_PARTITIONS: Final = 6
SIDE_PARTITIONS: Final = 3  # retry tiers and dead-letter topics

_DAY_MS: Final = 24 * 60 * 60 * 1000
DOSSIER_RETENTION_MS: Final = 14 * _DAY_MS
DLQ_RETENTION_MS: Final = 30 * _DAY_MS  # an operator has a month to inspect and replay
# Long enough for a retry worker that is down over a weekend; the delays themselves are minutes.
RETRY_RETENTION_MS: Final = 3 * _DAY_MS

MAX_DEFAULT_REPLICATION_FACTOR: Final = 3
MAX_DEFAULT_MIN_INSYNC_REPLICAS: Final = 2


def default_replication_factor(brokers: int) -> int:
    """Three copies of every record, or one per broker on a cluster of fewer than three."""
    return max(1, min(MAX_DEFAULT_REPLICATION_FACTOR, brokers))


def default_min_insync_replicas(replication_factor: int) -> int:
    """Replicas that must have a record before ``acks=all`` acknowledges it: 2 (1 without copies)."""
    return max(1, min(MAX_DEFAULT_MIN_INSYNC_REPLICAS, replication_factor))


class ReplicationError(ValueError):
    """A replication that the cluster cannot give (the message is one sentence an operator acts on)."""


@dataclass(frozen=True)
class Replication:
    """How many copies of each topic the cluster keeps, and how many must have a write (``acks=all``)."""

    factor: int
    min_insync: int


def choose_replication(
    brokers: int, replication_factor: int | None = None, min_insync_replicas: int | None = None
) -> Replication:
    """The replication of a deployment's topics on a cluster of ``brokers`` brokers: the requested
    factor or :func:`default_replication_factor`, and the requested ``min.insync.replicas`` or
    :func:`default_min_insync_replicas`. Raises :class:`ReplicationError` for one the cluster cannot give.
    """
    factor = default_replication_factor(brokers) if replication_factor is None else replication_factor
    if factor < 1:
        raise ReplicationError(f"The replication factor must be at least 1, not {factor}.")
    if factor > brokers:
        raise ReplicationError(
            f"A replication factor of {factor} needs at least {factor} brokers, but the cluster has "
            f"{brokers}: ask for {brokers} or fewer copies, or add brokers."
        )
    min_insync = default_min_insync_replicas(factor) if min_insync_replicas is None else min_insync_replicas
    if not 1 <= min_insync <= factor:
        raise ReplicationError(
            f"min.insync.replicas must be between 1 and the replication factor ({factor}), not "
            f"{min_insync}: with more, no write would ever be acknowledged."
        )
    return Replication(factor, min_insync)


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
    min_insync_replicas: int | None = Field(
        default=None, ge=1, description="min.insync.replicas; None: min(2, replication_factor)."
    )
    retention_ms: int = Field(ge=-1, description="retention.ms; -1 keeps records forever.")
    cleanup_policy: CleanupPolicy = CleanupPolicy.DELETE
    description: str

    @model_validator(mode="after")
    def _min_insync_within_replicas(self) -> Self:
        if self.min_insync_replicas is not None and self.min_insync_replicas > self.replication_factor:
            raise ValueError(
                f"min_insync_replicas ({self.min_insync_replicas}) exceeds the replication factor"
                f" ({self.replication_factor}): no write would ever be acknowledged"
            )
        return self

    @property
    def min_insync(self) -> int:
        """The ``min.insync.replicas`` the topic is created with."""
        if self.min_insync_replicas is not None:
            return self.min_insync_replicas
        return default_min_insync_replicas(self.replication_factor)

    def configs(self) -> dict[str, str]:
        """Topic-level configs to create the topic with."""
        return {
            "retention.ms": str(self.retention_ms),
            "cleanup.policy": self.cleanup_policy.value,
            "min.insync.replicas": str(self.min_insync),
        }

    def replicated(self, replication: Replication) -> TopicSpec:
        """This topic with ``replication`` (validated like any declaration)."""
        return TopicSpec.model_validate(
            self.model_dump()
            | {"replication_factor": replication.factor, "min_insync_replicas": replication.min_insync}
        )


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


def all_topics(prefix: str = "", replication: Replication | None = None) -> list[TopicSpec]:
    """Every topic of the bus, with ``prefix`` in front of each name, and ``replication`` (see
    :func:`choose_replication`; without it one copy, as on a single local broker)."""
    received = prefix + DOSSIER_RECEIVED
    outcome = prefix + HANDOFF_OUTCOME
    specs = [
        _flow(received, "Dossiers accepted by intake (DossierReceived)."),
        _dlq(received),
        _flow(prefix + DOSSIER_STATUS, "National status changes (DossierStatusChanged)."),
        _dlq(prefix + DOSSIER_STATUS),
        _flow(prefix + DOSSIER_CLOSED, "Closed dossiers (DossierClosed)."),
        _dlq(prefix + DOSSIER_CLOSED),
        _flow(outcome, "Outcomes of handoffs, from connectors to the router (HandoffReported)."),
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
    specs += [
        # A log of actions, not a state: every record stays (no key to compact on), and for good, as
        # the handoff log it feeds does: a tracker rebuilt from the topics appends every action again.
        # Few records (people acting by hand), so one partition keeps them in the order they happened.
        TopicSpec(
            name=prefix + OPERATOR_ACTIONS,
            partitions=1,
            retention_ms=-1,
            description="Operator actions (OperatorActionRecorded): who replayed or unmasked what, and why.",
        ),
        _dlq(prefix + OPERATOR_ACTIONS),
        # Only the newest head of a chain matters: compacted, keyed by the chain's name.
        TopicSpec(
            name=prefix + AUDIT_HEADS,
            partitions=1,
            retention_ms=-1,
            cleanup_policy=CleanupPolicy.COMPACT,
            description="The handoff log's anchored head (chain, seq, hash, at), signed by the tracker.",
        ),
    ]
    if replication is not None:
        specs = [spec.replicated(replication) for spec in specs]
    return specs

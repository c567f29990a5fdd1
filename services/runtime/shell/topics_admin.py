"""Create the declared topics on a Kafka cluster: only the missing ones, so running it twice is harmless.

Existing topics are left as they are (their partitions, replicas and configs are not altered): changing
a live topic is a deliberate operator action, not something a deploy step should do silently. Those
kept in fewer copies than requested are reported instead (:attr:`TopicPlanResult.under_replicated`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import TopicAlreadyExistsError, for_code

from schemas.topics import TopicSpec, all_topics, choose_replication


class TopicAction(StrEnum):
    """What ``ensure_topics`` does (or would do) with one topic."""

    CREATE = "create"
    EXISTS = "exists"


@dataclass(frozen=True)
class PlannedTopic:
    """One declared topic and its action (for an existing topic, its replication factor when known)."""

    spec: TopicSpec
    action: TopicAction
    current_replication_factor: int | None = None

    @property
    def under_replicated(self) -> bool:
        """An existing topic kept in fewer copies than its declaration asks for."""
        current = self.current_replication_factor
        return current is not None and current < self.spec.replication_factor


@dataclass(frozen=True)
class TopicPlanResult:
    """The plan (or its outcome): which topics were created and which were already there.

    ``brokers``: how many brokers the cluster reported, when it was asked.
    """

    topics: list[PlannedTopic] = field(default_factory=list)
    brokers: int | None = None

    @property
    def created(self) -> list[str]:
        return [t.spec.name for t in self.topics if t.action is TopicAction.CREATE]

    @property
    def existing(self) -> list[str]:
        return [t.spec.name for t in self.topics if t.action is TopicAction.EXISTS]

    @property
    def under_replicated(self) -> list[PlannedTopic]:
        """Existing topics with fewer replicas than declared (left as they are)."""
        return [t for t in self.topics if t.under_replicated]


class TopicCreationError(RuntimeError):
    """The broker refused to create some topics."""

    def __init__(self, failures: dict[str, str]) -> None:
        self.failures = failures
        super().__init__("; ".join(f"{name}: {why}" for name, why in sorted(failures.items())))


def plan_topics(
    specs: Sequence[TopicSpec], existing: Mapping[str, int] | Iterable[str], brokers: int | None = None
) -> TopicPlanResult:
    """Which of ``specs`` are to be created, given the topics already on the cluster: their names, or
    a mapping of name to replication factor (then under-replicated ones are marked)."""
    factors: Mapping[str, int | None] = (
        existing if isinstance(existing, Mapping) else dict.fromkeys(existing, None)
    )
    return TopicPlanResult(
        [
            PlannedTopic(s, TopicAction.EXISTS, factors[s.name])
            if s.name in factors
            else PlannedTopic(s, TopicAction.CREATE)
            for s in specs
        ],
        brokers,
    )


def replication_factors(topics: Iterable[Mapping[str, Any]]) -> dict[str, int]:
    """Each topic's replication factor (the fewest replicas of any of its partitions), from the
    ``topics`` of a metadata response; topics the cluster answered with an error are left out."""
    factors: dict[str, int] = {}
    for topic in topics:
        if topic["error_code"] or not topic["partitions"]:
            continue
        factors[topic["topic"]] = min(len(p["replicas"]) for p in topic["partitions"])
    return factors


async def _admin(bootstrap: str, client_options: dict[str, Any]) -> AIOKafkaAdminClient:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, client_id="lienthong-topics", **client_options)
    await admin.start()
    return admin


async def _cluster(admin: AIOKafkaAdminClient) -> tuple[int, dict[str, int]]:
    """How many brokers the cluster reports, and every topic's replication factor."""
    brokers = len((await admin.describe_cluster())["brokers"])
    # Describing every topic (no names) never auto-creates one, as naming a missing topic might.
    return brokers, replication_factors(await admin.describe_topics())


async def ensure_topics(
    bootstrap: str, specs: Sequence[TopicSpec], *, dry_run: bool = False, **client_options: Any
) -> TopicPlanResult:
    """Create the topics of ``specs`` that the cluster lacks, and say what was done.

    ``dry_run`` only describes the cluster's topics. ``client_options`` go to the admin client
    (security protocol, SASL, TLS context). Raises :class:`~schemas.topics.ReplicationError` when a
    spec asks for more replicas than the cluster has brokers, and :class:`TopicCreationError` when the
    broker refuses a topic; a topic created concurrently by someone else counts as existing.
    """
    admin = await _admin(bootstrap, client_options)
    try:
        brokers, existing = await _cluster(admin)
        if specs:  # the same sentence as for a requested factor the cluster cannot give
            choose_replication(brokers, max(s.replication_factor for s in specs))
        return await _ensure(admin, plan_topics(specs, existing, brokers), dry_run=dry_run)
    finally:
        await admin.close()


async def ensure_declared_topics(
    bootstrap: str,
    prefix: str = "",
    *,
    replication_factor: int | None = None,
    min_insync_replicas: int | None = None,
    dry_run: bool = False,
    **client_options: Any,
) -> TopicPlanResult:
    """:func:`ensure_topics` for every declared topic (:func:`~schemas.topics.all_topics`), with the
    replication :func:`~schemas.topics.choose_replication` gives for this cluster's broker count and
    the requested factor and ``min.insync.replicas`` (each None for the default: at most 3 copies,
    one per broker, and 2 in sync)."""
    admin = await _admin(bootstrap, client_options)
    try:
        brokers, existing = await _cluster(admin)
        replication = choose_replication(brokers, replication_factor, min_insync_replicas)
        plan = plan_topics(all_topics(prefix, replication), existing, brokers)
        return await _ensure(admin, plan, dry_run=dry_run)
    finally:
        await admin.close()


async def _ensure(admin: AIOKafkaAdminClient, plan: TopicPlanResult, *, dry_run: bool) -> TopicPlanResult:
    missing = [t.spec for t in plan.topics if t.action is TopicAction.CREATE]
    if dry_run or not missing:
        return plan
    response = await admin.create_topics(
        [NewTopic(s.name, s.partitions, s.replication_factor, topic_configs=s.configs()) for s in missing]
    )
    failures: dict[str, str] = {}
    raced: set[str] = set()
    for entry in response.to_object()["topic_errors"]:
        code = entry["error_code"]
        if code == 0:
            continue
        if code == TopicAlreadyExistsError.errno:
            raced.add(entry["topic"])
            continue
        message = entry.get("error_message") or for_code(code).__name__
        failures[entry["topic"]] = str(message)
    if failures:
        raise TopicCreationError(failures)
    return TopicPlanResult(
        [PlannedTopic(t.spec, TopicAction.EXISTS) if t.spec.name in raced else t for t in plan.topics],
        plan.brokers,
    )


async def describe_topic_configs(
    bootstrap: str, names: Sequence[str], **client_options: Any
) -> dict[str, dict[str, str]]:
    """The current configs (``retention.ms``, ``cleanup.policy``, ...) of each named topic."""
    admin = await _admin(bootstrap, client_options)
    try:
        responses = await admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, name) for name in names]
        )
    finally:
        await admin.close()
    configs: dict[str, dict[str, str]] = {}
    for response in responses:
        for resource in response.to_object()["resources"]:
            if resource["error_code"]:
                raise for_code(resource["error_code"])(resource.get("error_message"))
            configs[resource["resource_name"]] = {
                entry.get("config_names", entry.get("config_name")): entry["config_value"]
                for entry in resource["config_entries"]
            }
    return configs

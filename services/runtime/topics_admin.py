"""Create the declared topics on a Kafka cluster: only the missing ones, so running it twice is harmless.

Existing topics are left as they are (their partitions and configs are not altered): changing a
live topic is a deliberate operator action, not something a deploy step should do silently.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import TopicAlreadyExistsError, for_code

from schemas.topics import TopicSpec


class TopicAction(StrEnum):
    """What ``ensure_topics`` does (or would do) with one topic."""

    CREATE = "create"
    EXISTS = "exists"


@dataclass(frozen=True)
class PlannedTopic:
    """One declared topic and its action."""

    spec: TopicSpec
    action: TopicAction


@dataclass(frozen=True)
class TopicPlanResult:
    """The plan (or its outcome): which topics were created and which were already there."""

    topics: list[PlannedTopic] = field(default_factory=list)

    @property
    def created(self) -> list[str]:
        return [t.spec.name for t in self.topics if t.action is TopicAction.CREATE]

    @property
    def existing(self) -> list[str]:
        return [t.spec.name for t in self.topics if t.action is TopicAction.EXISTS]


class TopicCreationError(RuntimeError):
    """The broker refused to create some topics."""

    def __init__(self, failures: dict[str, str]) -> None:
        self.failures = failures
        super().__init__("; ".join(f"{name}: {why}" for name, why in sorted(failures.items())))


def plan_topics(specs: Sequence[TopicSpec], existing: Iterable[str]) -> TopicPlanResult:
    """Which of ``specs`` are to be created, given the names already on the cluster."""
    present = set(existing)
    return TopicPlanResult(
        [PlannedTopic(s, TopicAction.EXISTS if s.name in present else TopicAction.CREATE) for s in specs]
    )


async def _admin(bootstrap: str, client_options: dict[str, Any]) -> AIOKafkaAdminClient:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, client_id="lienthong-topics", **client_options)
    await admin.start()
    return admin


async def ensure_topics(
    bootstrap: str, specs: Sequence[TopicSpec], *, dry_run: bool = False, **client_options: Any
) -> TopicPlanResult:
    """Create the topics of ``specs`` that the cluster lacks, and say what was done.

    ``dry_run`` only lists the cluster's topics. ``client_options`` go to the admin client
    (security protocol, SASL, TLS context). Raises :class:`TopicCreationError` when the broker
    refuses a topic; a topic created concurrently by someone else counts as existing.
    """
    admin = await _admin(bootstrap, client_options)
    try:
        plan = plan_topics(specs, await admin.list_topics())
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
            [PlannedTopic(t.spec, TopicAction.EXISTS) if t.spec.name in raced else t for t in plan.topics]
        )
    finally:
        await admin.close()


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

"""Which member of a consumer group holds which partitions, as the group's coordinator says.

The services do not expose their consumers' assignment, and every instance of a service connects with
the same client id (``router``), so the membership alone does not say which process a member is: the
local stack tells its instances apart by when each member joined (:class:`MemberNames`). Kafka's
``DescribeGroups`` (aiokafka's admin client) gives, per member, its member id, client id, host and
the assignment the group's leader gave it, which :func:`describe_groups` decodes.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections import defaultdict
from collections.abc import Coroutine, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.coordinator.protocol import ConsumerProtocolMemberAssignment

T = TypeVar("T")


@dataclass(frozen=True)
class Member:
    """One member of a consumer group and the partitions it holds, by topic."""

    group: str
    member_id: str
    client_id: str
    host: str
    partitions: Mapping[str, tuple[int, ...]]

    @property
    def holds(self) -> int:
        return sum(len(p) for p in self.partitions.values())


@dataclass(frozen=True)
class Group:
    """A consumer group as its coordinator describes it (``Stable`` once a rebalance is over)."""

    group: str
    state: str
    members: tuple[Member, ...]


def _partitions(assignment: bytes) -> dict[str, tuple[int, ...]]:
    if not assignment:  # a member whose rebalance is not over has no assignment yet
        return {}
    decoded = ConsumerProtocolMemberAssignment.decode(assignment)
    return {topic: tuple(sorted(partitions)) for topic, partitions in decoded.assignment if partitions}


async def describe_groups(
    bootstrap_servers: str, groups: Sequence[str], client_options: Mapping[str, Any] | None = None
) -> dict[str, Group]:
    """Every group in ``groups`` with its state and members (a group nobody joined is ``Dead`` or
    ``Empty`` with no member)."""
    admin = AIOKafkaAdminClient(
        bootstrap_servers=bootstrap_servers, client_id="lienthong-membership", **(client_options or {})
    )
    await admin.start()
    try:
        # One group per request: aiokafka misreads the answer to a request naming several groups (the
        # connection is then closed), seen against this project's Kafka 4 broker.
        answers = await asyncio.gather(*(admin.describe_consumer_groups([group]) for group in groups))
    finally:
        await admin.close()
    found: dict[str, Group] = {}
    for response in (response for answer in answers for response in answer):
        for described in response.to_object()["groups"]:
            members = tuple(
                Member(
                    described["group"],
                    m["member_id"],
                    m["client_id"],
                    m["client_host"].lstrip("/"),
                    _partitions(m["member_assignment"]),
                )
                for m in described["members"]
            )
            found[described["group"]] = Group(described["group"], described["state"], members)
    return found


def run_sync(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run ``coroutine`` to its end from synchronous code, also when an event loop runs in this
    thread (it then runs in a thread of its own)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coroutine)
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


@dataclass
class MemberNames:
    """Which instance each member id is, per group: learnt when an instance is the one member that
    joined its group since the last look (:meth:`learn`), or by elimination later (a member that came
    back with a new id after its process restarted its consumer)."""

    known: dict[str, dict[str, str]] = field(default_factory=lambda: defaultdict(dict))

    def learn(self, group: Group, instance: str) -> bool:
        """Name ``instance`` the one member of ``group`` not known yet; False if there is not one."""
        new = [m for m in group.members if m.member_id not in self.known[group.group]]
        if len(new) != 1:
            return False
        self.known[group.group][new[0].member_id] = instance
        return True

    def forget(self, instance: str) -> None:
        for members in self.known.values():
            for member_id in [m for m, name in members.items() if name == instance]:
                del members[member_id]

    def name(self, group: Group, member: Member, instances: Sequence[str], running: Iterable[str]) -> str:
        """The instance ``member`` is (``instances``: those of the group's service): the only one; the
        one whose client id it carries; the one learnt; or the one running instance that none of the
        group's current members is known as, when this member is the only unknown one. Else the
        member's client id and the end of its member id, as Kafka gives them."""
        known = self.known[group.group]
        if len(instances) == 1:
            return instances[0]
        if member.client_id in instances:
            return member.client_id
        if member.member_id in known:
            return known[member.member_id]
        unknown = [m for m in group.members if m.member_id not in known and m.client_id not in instances]
        present = {known[m.member_id] for m in group.members if m.member_id in known}
        candidates = [i for i in running if i in instances and i not in present]
        if len(unknown) == 1 and len(candidates) == 1:
            known[member.member_id] = candidates[0]
            return candidates[0]
        return f"{member.client_id}?{member.member_id[-6:]}"


def partitions_text(partitions: Mapping[str, Sequence[int]], prefix: str = "") -> str:
    """``dossier.received[0,2,4] handoff.outcome[1]`` (topic names without the environment's prefix)."""
    if not partitions:
        return "no partition"
    return " ".join(
        f"{topic.removeprefix(prefix)}[{','.join(map(str, parts))}]"
        for topic, parts in sorted(partitions.items())
    )

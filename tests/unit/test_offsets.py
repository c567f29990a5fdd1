"""Background offset commits: never past a stored record, never one round trip per record."""

from __future__ import annotations

import asyncio

from aiokafka import TopicPartition
from aiokafka.errors import IllegalStateError

from services.runtime.consume.offsets import BackgroundCommitter

A = TopicPartition("t", 0)
B = TopicPartition("t", 1)


class SlowConsumer:
    """Each commit is a round trip that takes until the test releases it."""

    def __init__(self, assigned: set[TopicPartition]) -> None:
        self.assigned = assigned
        self.commits: list[dict[TopicPartition, int]] = []
        self.release = asyncio.Event()
        self.fail_next = False

    def assignment(self) -> set[TopicPartition]:
        return self.assigned

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        self.commits.append(dict(offsets))
        await self.release.wait()
        if self.fail_next:
            self.fail_next = False
            raise IllegalStateError("rebalanced")


async def test_marks_made_during_a_commit_go_out_together_in_the_next() -> None:
    consumer = SlowConsumer({A, B})
    committer = BackgroundCommitter(consumer, gather_s=0)

    committer.mark("t", 0, 10)
    await asyncio.sleep(0.01)  # the first commit is in flight
    for offset in range(11, 20):
        committer.mark("t", 0, offset)
    committer.mark("t", 1, 3)
    consumer.release.set()
    await asyncio.wait_for(committer.flush(), timeout=5)

    assert consumer.commits == [{A: 11}, {A: 20, B: 4}]  # the next record to read, per partition


async def test_a_revoked_partition_is_not_committed_and_a_refused_commit_does_not_stop_the_next() -> None:
    consumer = SlowConsumer({A})
    committer = BackgroundCommitter(consumer)
    consumer.fail_next = True
    consumer.release.set()

    committer.mark("t", 1, 5)  # B is no longer assigned: nothing to commit
    committer.mark("t", 0, 1)
    await asyncio.wait_for(committer.flush(), timeout=5)
    committer.mark("t", 0, 2)
    await asyncio.wait_for(committer.flush(), timeout=5)

    assert consumer.commits == [{A: 2}, {A: 3}]


async def test_a_trickle_of_records_within_the_gathering_time_costs_one_commit() -> None:
    consumer = SlowConsumer({A})
    consumer.release.set()
    committer = BackgroundCommitter(consumer, gather_s=0.2)

    for offset in range(5):
        committer.mark("t", 0, offset)
        await asyncio.sleep(0.01)
    await asyncio.wait_for(committer.flush(), timeout=5)

    assert consumer.commits == [{A: 5}]

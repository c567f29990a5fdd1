"""Offset commits that never hold up consumption: marked per record, committed in the background.

A record's offset is marked only once the record is in the store (processed, deduplicated, its
outbox written), so a committed offset never passes an unprocessed record. The commit itself — a
broker round trip, eight times the cost of handling a record — runs beside the consumer: marks
gather for a moment and while a commit is in flight, and the next commit covers all of them.

Hand-written because neither FastStream (its ``ack`` awaits a commit of each message or batch) nor
aiokafka (``enable_auto_commit`` commits what was fetched, not what was stored) commits this way.

A commit lost to a rebalance or a crash only means the records since the last commit come again;
every consumer deduplicates them by event id.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Protocol

from aiokafka import TopicPartition
from aiokafka.errors import KafkaError

log = logging.getLogger(__name__)


class CommittingConsumer(Protocol):
    def assignment(self) -> set[TopicPartition]: ...

    async def commit(self, offsets: dict[TopicPartition, int]) -> None: ...


class BackgroundCommitter:
    """Commits the marked offsets of one consumer, one commit at a time, coalescing the marks."""

    def __init__(self, consumer: CommittingConsumer, *, gather_s: float = 0.05) -> None:
        """``gather_s``: how long marks gather before a commit, so that a trickle of records does not
        cost a commit each (a lost commit costs only redeliveries, which are deduplicated)."""
        self.consumer = consumer
        self.gather_s = gather_s
        self._marked: dict[TopicPartition, int] = {}
        self._task: asyncio.Task[None] | None = None

    def mark(self, topic: str, partition: int, offset: int) -> None:
        """The record at ``offset`` is stored: the group may resume after it."""
        if not hasattr(self.consumer, "assignment"):
            return  # FastStream's in-memory test broker: there is no group to commit to
        self._marked[TopicPartition(topic, partition)] = offset + 1
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._commit_marked())

    async def _commit_marked(self) -> None:
        while self._marked:
            await asyncio.sleep(self.gather_s)
            marked, self._marked = self._marked, {}
            assigned = self.consumer.assignment()
            offsets = {partition: offset for partition, offset in marked.items() if partition in assigned}
            if not offsets:
                continue
            try:
                await self.consumer.commit(offsets)
            except (KafkaError, AssertionError) as error:
                # A partition revoked by a rebalance (aiokafka raises IllegalStateError, a KafkaError,
                # or asserts on a stopped consumer): its new owner starts from the last commit.
                log.info("offset commit skipped (%s); those records may come again", type(error).__name__)

    async def flush(self) -> None:
        """Until every marked offset has been committed (or skipped)."""
        while self._task is not None and not self._task.done():
            await asyncio.shield(self._task)

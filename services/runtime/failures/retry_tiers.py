"""Consumers of the delayed retry tiers: each partition is paused until its next record is due.

Written by hand on aiokafka because FastStream has no delayed consumption (its Kafka ``nack`` seeks
back at once, a hot loop) and exposes no partition pause. Records on a tier topic all wait the same
delay, so they come due in offset order: pausing the partition at the first record that is not due
yet, and resuming when it is, delays every record by its tier without blocking anything else — the
main request topic has its own consumer and keeps flowing.

A rebalance may take a partition away while a record of it is being handled (a slow agency past
``max_poll_interval_ms`` is enough): seeking or pausing a partition this consumer no longer holds is
skipped, since its new owner resumes from the last committed offset. Should the loop die anyway, the
service shell restarts it (:func:`services.runtime.shell.service.supervised`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import IllegalStateError

from services.runtime.consume import headers
from services.runtime.consume.offsets import BackgroundCommitter
from services.runtime.consume.records import ReceivedRecord

log = logging.getLogger(__name__)

Process = Callable[[ReceivedRecord], Awaitable[None]]


def due_at(record: ReceivedRecord) -> float:
    """Epoch seconds from which the record may run (0 when it carries no due time)."""
    return record.header_int(headers.RETRY_DUE_MS) / 1000


class DelayedRetryConsumer:
    def __init__(
        self,
        *,
        bootstrap_servers: str,
        topics: Sequence[str],
        group_id: str,
        process: Process,
        clock: Callable[[], float] = time.time,
        client_options: dict[str, Any] | None = None,
        watch: Callable[[AIOKafkaConsumer, str, Sequence[str]], None] | None = None,
        unwatch: Callable[[AIOKafkaConsumer], None] | None = None,
    ) -> None:
        """``watch`` is told of the consumer once it started (the consumer-lag gauge follows it), and
        ``unwatch`` once it stopped."""
        self.bootstrap_servers = bootstrap_servers
        self.topics = list(topics)
        self.group_id = group_id
        self.process = process
        self.clock = clock
        self.client_options = client_options or {}
        self.paused_until: dict[TopicPartition, float] = {}
        self.watch = watch
        self.unwatch = unwatch

    def _resume_due(self, consumer: AIOKafkaConsumer) -> None:
        now = self.clock()
        assigned = consumer.assignment()
        for partition, due in list(self.paused_until.items()):
            if due <= now or partition not in assigned:
                self.paused_until.pop(partition)
                if partition in assigned:
                    consumer.resume(partition)

    async def _drain(
        self,
        consumer: AIOKafkaConsumer,
        committer: BackgroundCommitter,
        partition: TopicPartition,
        records: list[Any],
    ) -> None:
        for raw in records:
            record = ReceivedRecord.from_consumer_record(raw, self.group_id)
            due = due_at(record)
            if due > self.clock():
                if _holds(consumer, partition):
                    consumer.seek(partition, raw.offset)
                    consumer.pause(partition)
                    self.paused_until[partition] = due
                return
            try:
                await self.process(record)
            except Exception:
                log.exception("retry of %s@%d failed; it will run again", partition, raw.offset)
                if _holds(consumer, partition):
                    consumer.seek(partition, raw.offset)
                await asyncio.sleep(1.0)
                return
            committer.mark(partition.topic, partition.partition, raw.offset)
            if not _holds(consumer, partition):
                return  # revoked while the record was handled: the rest of the batch is its new owner's

    async def run(self) -> None:
        consumer = AIOKafkaConsumer(
            *self.topics,
            bootstrap_servers=self.bootstrap_servers,
            group_id=self.group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            **self.client_options,
        )
        await consumer.start()
        if self.watch is not None:
            self.watch(consumer, self.group_id, self.topics)
        committer = BackgroundCommitter(consumer)
        try:
            while True:
                self._resume_due(consumer)
                batches = await consumer.getmany(timeout_ms=200, max_records=100)
                for partition, records in batches.items():
                    await self._drain(consumer, committer, partition, records)
        finally:
            with contextlib.suppress(Exception):
                await committer.flush()
            with contextlib.suppress(Exception):
                await consumer.stop()
            self.paused_until.clear()
            if self.unwatch is not None:
                self.unwatch(consumer)


def _holds(consumer: AIOKafkaConsumer, partition: TopicPartition) -> bool:
    """Whether ``partition`` is still assigned to this consumer (a seek or pause of one that is not
    raises ``IllegalStateError``)."""
    try:
        return partition in consumer.assignment()
    except IllegalStateError:
        return False

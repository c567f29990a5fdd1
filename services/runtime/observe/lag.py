"""Consumer lag of this process: records not yet consumed, per consumer group and topic.

Every few seconds, for each consumer of the service's broker (its FastStream subscribers, plus any
aiokafka consumer registered with :meth:`LagMonitor.watch`), lag = end offset − committed offset,
per partition assigned to this process, summed per (group, topic), into
``lienthong_consumer_lag_records``. A partition never committed counts from its beginning offset.
A subscribed topic with no partition assigned here reports 0, so the series exists from start-up.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from faststream.kafka import KafkaBroker

from services.runtime.observe.metrics import METRICS, Metrics

log = logging.getLogger(__name__)

DEFAULT_INTERVAL_S = 5.0


@dataclass(frozen=True)
class Watched:
    consumer: AIOKafkaConsumer
    group_id: str
    topics: tuple[str, ...]


def broker_consumers(broker: KafkaBroker) -> list[Watched]:
    """The running aiokafka consumers of ``broker``'s subscribers (none before the broker started)."""
    found = []
    for subscriber in broker.subscribers:
        consumer = getattr(subscriber, "consumer", None)
        group_id = getattr(subscriber, "group_id", None)
        if consumer is None or not group_id:
            continue
        names = getattr(subscriber, "topic_names_for_subscribe", None)
        if names is None:
            names = [getattr(t, "name", t) for t in getattr(subscriber, "topics", ())]
        found.append(Watched(consumer, str(group_id), tuple(str(n) for n in names)))
    return found


async def measure(watched: Watched) -> dict[str, int]:
    """Lag per topic of one consumer (only the partitions assigned to it)."""
    consumer = watched.consumer
    assigned = sorted(consumer.assignment(), key=lambda tp: (tp.topic, tp.partition))
    lag: dict[str, int] = defaultdict(int)
    for topic in watched.topics:
        lag[topic] = 0
    if not assigned:
        return dict(lag)
    ends = await consumer.end_offsets(assigned)
    committed = await asyncio.gather(*(consumer.committed(tp) for tp in assigned))
    never = [tp for tp, offset in zip(assigned, committed, strict=True) if offset is None]
    beginnings = await consumer.beginning_offsets(never) if never else {}
    for tp, offset in zip(assigned, committed, strict=True):
        start = offset if offset is not None else beginnings.get(tp, 0)
        lag[tp.topic] += max(int(ends.get(tp, start)) - int(start), 0)
    return dict(lag)


@dataclass
class LagMonitor:
    """The lag loop of one service process (``loops=[monitor.run]`` in :func:`build_service_app`)."""

    broker: KafkaBroker
    interval_s: float = DEFAULT_INTERVAL_S
    metrics: Metrics = field(default_factory=lambda: METRICS)
    _extra: list[Watched] = field(default_factory=list)

    def watch(self, consumer: AIOKafkaConsumer, group_id: str, topics: Iterable[str]) -> None:
        """Also measure a consumer that is not a FastStream subscriber (e.g. a delayed-retry tier)."""
        self._extra.append(Watched(consumer, group_id, tuple(topics)))

    def unwatch(self, consumer: AIOKafkaConsumer) -> None:
        self._extra = [w for w in self._extra if w.consumer is not consumer]

    def consumers(self) -> list[Watched]:
        return broker_consumers(self.broker) + list(self._extra)

    async def refresh(self) -> dict[tuple[str, str], int]:
        """Measures every consumer once and sets the gauge; returns (group, topic) → records."""
        totals: dict[tuple[str, str], int] = defaultdict(int)
        for watched in self.consumers():
            try:
                per_topic = await measure(watched)
            except asyncio.CancelledError:
                raise
            except Exception as error:  # a rebalance or a broker blip: measure again next round
                log.debug("lag of %s not measured: %s", watched.group_id, error)
                continue
            for topic, records in per_topic.items():
                totals[(watched.group_id, topic)] += records
        for (group, topic), records in totals.items():
            try:
                self.metrics.set_consumer_lag(group, topic, records)
            except ValueError:
                log.warning("lag of group %r on topic %r not exported: not a valid label", group, topic)
        return dict(totals)

    async def run(self) -> None:
        while True:
            try:
                await self.refresh()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("consumer lag refresh failed; trying again")
            await asyncio.sleep(self.interval_s)


def consumers_joined(broker: KafkaBroker) -> tuple[bool, str]:
    """Whether every subscriber's consumer is running and has its assignment from the group."""
    for subscriber in broker.subscribers:
        consumer: Any = getattr(subscriber, "consumer", None)
        if consumer is None:
            return False, "a consumer is not started"
        if consumer.assignment():
            continue
        # A group member may legitimately own no partition (more instances than partitions): it is
        # ready once the group gave it its (empty) assignment.
        state = getattr(consumer, "_subscription", None)
        subscription = getattr(state, "subscription", None)
        if subscription is None or getattr(subscription, "assignment", None) is None:
            return False, f"waiting for the partitions of group {getattr(subscriber, 'group_id', '?')}"
    return True, "ok"


__all__ = ["LagMonitor", "TopicPartition", "Watched", "broker_consumers", "consumers_joined", "measure"]

"""Dead letters for operators: list them, inspect one, replay a selection — the code behind
``lienthong dlq`` and the supervision page's replay button.

A replay puts the original record back on the topic it failed on (a handoff that failed on a delay tier
goes back to its agency's request topic), with the ``lienthong-replay-id`` header naming the dead letter.
The replay id stays on the copies a failing replay sends through the delay tiers, so a replay always
ends as a new outcome: completed, rejected, or dead-lettered again (a new dead letter, replayable).
Each replay is recorded, keyed by that id, on the compacted ``dlq.replays`` topic: replaying the same
dead letter again is skipped, and consumers dedupe a replayed delivery by that id as well.

The replay id gives the record a fresh dedupe key and lets an event older than the age window through,
so the replayer signs it (:mod:`services.runtime.trust.header_signing`) with its own key: the
dead-letter tool's (producer ``dlq-tool``) or the tracker's; a consumer refuses a replay header
without that signature.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from schemas.envelope import CE_ID
from schemas.topics import DLQ_REPLAYS, DLQ_SUFFIX, TopicSpec, all_topics
from services.runtime.consume import headers
from services.runtime.consume.records import ReceivedRecord
from services.runtime.failures import dead_letter_records
from services.runtime.trust import header_signing
from services.runtime.trust.signing import Signer

_RETRY_SUFFIX = re.compile(r"\.retry\.[0-9]+[smh]$")
_AGENCY_TOPIC = re.compile(r"handoff\.([a-z_]+)\.requested")


@dataclass(frozen=True)
class DeadLetter(ReceivedRecord):
    """A record read back from a dead-letter topic (read without a consumer group)."""

    group_id: str = ""

    @property
    def id(self) -> str:
        return f"{self.topic}/{self.partition}/{self.offset}"

    @property
    def original_topic(self) -> str:
        return self.headers.get(dead_letter_records.ORIGINAL_TOPIC, self.topic.removesuffix(DLQ_SUFFIX))

    @property
    def replay_topic(self) -> str:
        """Where a replay goes: the topic it failed on, but never back onto a delay tier."""
        return _RETRY_SUFFIX.sub("", self.original_topic)

    @property
    def agency(self) -> str | None:
        match = _AGENCY_TOPIC.search(self.topic)
        return match.group(1) if match else None

    @property
    def error_class(self) -> str:
        return self.headers.get(dead_letter_records.ERROR_CLASS, "unknown")

    @property
    def message(self) -> str:
        return self.headers.get(dead_letter_records.EXCEPTION_MESSAGE, "")

    @property
    def attempts(self) -> int:
        value = self.headers.get(dead_letter_records.ATTEMPTS, "1")
        return int(value) if value.isdigit() else 1

    @property
    def original_partition(self) -> int | None:
        return dead_letter_records.original_number(self.raw_headers, dead_letter_records.ORIGINAL_PARTITION)

    @property
    def original_offset(self) -> int | None:
        return dead_letter_records.original_number(self.raw_headers, dead_letter_records.ORIGINAL_OFFSET)

    def context(self) -> Mapping[str, str]:
        """Every header as text for a person (the numeric context decoded)."""
        return dead_letter_records.readable_context(self.raw_headers)

    def replay_headers(self, signer: Signer | None = None) -> list[tuple[str, bytes]]:
        """The original record's headers, as they came (bytes intact), and the replay's id, signed by
        ``signer`` over the event id (unsigned without one: only a consumer that verifies nothing
        accepts it)."""
        kept = [
            (k, v or b"")
            for k, v in self.raw_headers
            if not k.startswith("kafka_dlt-") and k not in headers.RUNTIME_HEADERS
        ]
        replay = {headers.REPLAY_ID: self.id}
        if signer is not None:
            replay |= header_signing.sign_headers(signer, self.headers.get(CE_ID, ""), replay)
        return [*kept, *((k, v.encode()) for k, v in replay.items())]


def dlq_topics(prefix: str = "") -> list[TopicSpec]:
    return [spec for spec in all_topics(prefix) if spec.name.endswith(DLQ_SUFFIX)]


async def read_records(bootstrap: str, topics: Sequence[TopicSpec], **options: Any) -> list[Any]:
    """Every record now on ``topics``, read without a consumer group (reading commits nothing).

    Partitions come from the topic registry: a consumer that has not subscribed knows none."""
    partitions = [TopicPartition(spec.name, p) for spec in topics for p in range(spec.partitions)]
    if not partitions:
        return []
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, **options)
    try:
        await consumer.start()
        consumer.assign(partitions)
        ends = await consumer.end_offsets(partitions)
        starts = await consumer.beginning_offsets(partitions)
        remaining = {p for p in partitions if ends[p] > starts[p]}
        for partition in remaining:
            consumer.seek(partition, starts[partition])
        records: list[Any] = []
        deadline = time.monotonic() + 30
        while remaining and time.monotonic() < deadline:
            for found in (await consumer.getmany(*remaining, timeout_ms=500)).values():
                records += found
            for partition in list(remaining):  # past the end (transaction markers take offsets too)
                if await consumer.position(partition) >= ends[partition]:
                    remaining.discard(partition)
        if remaining:
            raise TimeoutError(f"could not read {len(remaining)} partition(s) to their end")
        return records
    finally:
        await consumer.stop()


async def read_dead_letters(bootstrap: str, prefix: str = "", **options: Any) -> list[DeadLetter]:
    raw = await read_records(bootstrap, dlq_topics(prefix), **options)
    letters = [DeadLetter.from_consumer_record(r, group_id="") for r in raw]
    return sorted(letters, key=lambda letter: letter.timestamp)


async def replayed_ids(bootstrap: str, prefix: str = "", **options: Any) -> set[str]:
    log_topic = [spec for spec in all_topics(prefix) if spec.name == prefix + DLQ_REPLAYS]
    return {r.key.decode() for r in await read_records(bootstrap, log_topic, **options) if r.key}


def select(
    letters: Iterable[DeadLetter],
    *,
    ids: Sequence[str] = (),
    agency: str | None = None,
    error_class: str | None = None,
    since: datetime | None = None,
) -> list[DeadLetter]:
    return [
        letter
        for letter in letters
        if (not ids or letter.id in ids)
        and (agency is None or letter.agency == agency)
        and (error_class is None or letter.error_class == error_class)
        and (since is None or letter.timestamp >= since)
    ]


@dataclass(frozen=True)
class ReplayReport:
    replayed: list[str]
    skipped: list[str]  # replayed before


async def replay(
    bootstrap: str,
    letters: Sequence[DeadLetter],
    *,
    prefix: str = "",
    rate_per_s: float = 20.0,
    operator: str = "cli",
    signer: Signer | None = None,
    **options: Any,
) -> ReplayReport:
    """Replays ``letters`` at most ``rate_per_s`` a second; each dead letter at most once. ``signer``:
    the replayer's key (a producer of :data:`~services.runtime.trust.header_signing.REPLAYERS`), which
    signs each replay header; without one the replays go out unsigned, for a setup that verifies
    nothing."""
    if signer is not None and signer.key.producer not in header_signing.REPLAYERS:
        raise ValueError(
            f"the key of {signer.key.producer!r} cannot sign replays: only "
            f"{', '.join(sorted(header_signing.REPLAYERS))} replay"
        )
    done = await replayed_ids(bootstrap, prefix, **options)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, **options)
    await producer.start()
    replayed: list[str] = []
    skipped: list[str] = []
    try:
        for letter in letters:
            if letter.id in done:
                skipped.append(letter.id)
                continue
            record_headers = letter.replay_headers(signer)
            await producer.send_and_wait(
                letter.replay_topic, letter.value, key=letter.key, headers=record_headers
            )
            log_entry = {
                "replayed_at": datetime.now(UTC).isoformat(),
                "to_topic": letter.replay_topic,
                "error_class": letter.error_class,
                "operator": operator,
            }
            await producer.send_and_wait(
                prefix + DLQ_REPLAYS, json.dumps(log_entry).encode(), key=letter.id.encode()
            )
            replayed.append(letter.id)
            await asyncio.sleep(1.0 / rate_per_s)
    finally:
        await producer.stop()
    return ReplayReport(replayed, skipped)

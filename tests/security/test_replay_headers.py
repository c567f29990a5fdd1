"""A replay or retry header added to an old record does not give it a fresh dedupe key, on the real
broker and the whole stack: an outcome the router already applied, produced again with a hand-added
replay id (or retry attempt), or with a replay id signed by a connector (trusted, but no replayer), is
dead-lettered with class ``signature`` / ``authorization``; so is an outcome older than the age window.
The dossier is unaffected: the tracker, which read past every one of them, shows it as before."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from schemas.agencies import Agency
from schemas.authority import connector_producer
from schemas.events import HandoffReported, parse_event
from schemas.topics import HANDOFF_OUTCOME, all_topics
from services.runtime.consume import headers
from services.runtime.failures import dead_letter_replay
from services.runtime.trust import keys
from services.runtime.trust.header_signing import sign_headers
from services.runtime.trust.signing import Signer
from services.tools.stack.stack import LocalStack
from services.tools.stack.traffic import Traffic
from tests.security.test_signed_events import as_record
from tests.stack_helpers import tracker_detail, wait_for, wait_until_closed

pytestmark = pytest.mark.kafka

MARK = "test-replay-headers"


async def records_of(stack: LocalStack, topic: str, key: bytes) -> list[Any]:
    """Every record of ``topic`` now there under ``key``, read without a consumer group."""
    spec = next(t for t in all_topics(stack.topic_prefix) if t.name == topic)
    return [r for r in await dead_letter_replay.read_records(stack.bootstrap_servers, [spec]) if r.key == key]


async def committed(stack: LocalStack, group: str) -> dict[TopicPartition, int]:
    admin = AIOKafkaAdminClient(bootstrap_servers=stack.bootstrap_servers)
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(group)
    finally:
        await admin.close()
    return {partition: meta.offset for partition, meta in offsets.items()}


async def test_an_old_outcome_with_a_hand_added_replay_header_is_dead_lettered_and_changes_nothing(
    stack: LocalStack, traffic: Traffic
) -> None:
    dossier = await traffic.marriage()  # one leg, at the civil-status registry
    before = (await wait_until_closed(traffic, stack.tracker_url, [dossier], within_s=90))[dossier.dossier_id]
    topic = stack.topic_prefix + HANDOFF_OUTCOME
    [applied] = await records_of(stack, topic, dossier.dossier_id.encode())
    original = {k: v.decode() for k, v in applied.headers}
    outcome = parse_event(applied.value, original)
    assert isinstance(outcome, HandoffReported) and outcome.producer == connector_producer(
        Agency.CIVIL_STATUS
    )
    connector = Signer(keys.load_signing_key(keys.private_key_path(stack.private_keys_dir, outcome.producer)))

    by_connector = {headers.REPLAY_ID: f"{stack.topic_prefix}dlq/0/1"}
    by_connector |= sign_headers(connector, outcome.event_id, by_connector)
    # The same outcome as a new event, validly signed by its connector, dated 8 days before it was.
    stale = HandoffReported.create(
        data=outcome.data,
        producer=outcome.producer,
        dossier_id=outcome.dossier_id,
        occurred_at=outcome.occurred_at - timedelta(days=8),
    )
    _, stale_value, stale_headers = as_record(connector.sign(stale))
    variants: dict[str, tuple[bytes, dict[str, str]]] = {
        "hand_added_replay": (applied.value, original | {headers.REPLAY_ID: f"{stack.topic_prefix}dlq/0/1"}),
        "hand_added_retry": (applied.value, original | {headers.RETRY_ATTEMPT: "1"}),
        "replay_signed_by_a_connector": (applied.value, original | by_connector),
        "too_old": (stale_value, stale_headers),
    }
    producer = AIOKafkaProducer(bootstrap_servers=stack.bootstrap_servers)
    await producer.start()
    last: dict[TopicPartition, int] = {}
    try:
        for name, (value, record_headers) in variants.items():
            marked = record_headers | {MARK: name}
            sent = await producer.send_and_wait(
                topic, value, key=applied.key, headers=[(k, v.encode()) for k, v in marked.items()]
            )
            last[TopicPartition(sent.topic, sent.partition)] = sent.offset
    finally:
        await producer.stop()

    async def letters() -> dict[str, dead_letter_replay.DeadLetter]:
        found = await dead_letter_replay.read_dead_letters(stack.bootstrap_servers, stack.topic_prefix)
        return {x.headers[MARK]: x for x in found if MARK in x.headers}

    async def all_refused() -> bool:
        return set(variants) <= set(await letters())

    await wait_for(all_refused, 30, "dead-lettering of the re-produced outcomes")
    refused = await letters()
    expected = {
        "hand_added_replay": ("signature", "unsigned lienthong-replay-id header"),
        "hand_added_retry": ("signature", "unsigned lienthong-retry-attempt header"),
        "replay_signed_by_a_connector": ("authorization", "only dlq-tool, tracker replay"),
        "too_old": ("authorization", "beyond the 7-day window"),
    }
    seen = {name: (letter.error_class, letter.message) for name, letter in refused.items()}
    for name, (error_class, reason) in expected.items():
        assert seen[name][0] == error_class and reason in seen[name][1], (name, seen[name])

    async def tracker_read_past_them() -> bool:
        offsets = await committed(stack, f"{stack.topic_prefix}tracker")
        return all(offsets.get(partition, -1) > offset for partition, offset in last.items())

    await wait_for(tracker_read_past_them, 30, "the tracker reading past the re-produced outcomes")
    assert await tracker_detail(stack.tracker_url, dossier.dossier_id) == before, "the dossier is unaffected"

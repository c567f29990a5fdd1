"""Reliability under faults, against the real broker and real sandbox processes: agency outages shorter
and longer than the retry tiers, dead-letter replay, poison records among healthy traffic, and one
failing agency not slowing the others. Retry tiers are shortened to seconds (1 s, 2 s, 3 s)."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer

from schemas.agencies import Agency
from schemas.envelope import event_headers, event_key, event_value
from schemas.events import DossierClosed
from schemas.topics import DOSSIER_RECEIVED, DOSSIER_STATUS, HANDOFF_OUTCOME, requests_topic
from services.runtime.failures import dead_letter_records
from services.tools.stack.stack import LocalStack
from services.tools.stack.traffic import Submitted, Traffic
from tests.factories import dossier_received
from tests.stack_helpers import (
    SHORT_TIERS,
    assert_all_running,
    clear_faults,
    dead_letters_of,
    lienthong_dlq_replay,
    records,
    running_stack,
    sample_traffic,
    set_faults,
    tracker_detail,
    wait_for,
    wait_until_closed,
)

pytestmark = [pytest.mark.kafka, pytest.mark.faults]


@pytest.fixture(scope="module")
def stack(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    with running_stack(kafka_bootstrap, tmp_path_factory, "faults", **SHORT_TIERS) as running:
        yield running


@pytest.fixture
async def traffic(stack: LocalStack) -> AsyncIterator[Traffic]:
    async with sample_traffic(stack) as generator:
        yield generator


async def test_outage_shorter_than_the_tiers_completes_everything_without_dead_letters(
    stack: LocalStack, traffic: Traffic
) -> None:
    before = len(await dead_letters_of(stack, "tax"))
    await set_faults(stack, Agency.TAX, down_for_s=4)
    transfers = [await traffic.land_transfer() for _ in range(4)]
    details = await wait_until_closed(traffic, stack.tracker_url, transfers, within_s=90)
    assert all(d["result"] == "completed" for d in details.values())
    assert len(await dead_letters_of(stack, "tax")) == before, "no dead letter: the tiers bridged the outage"
    notices = await records(stack, Agency.TAX, "notices")
    slips = [n["so_phieu"] for n in notices]
    assert len(slips) == len(set(slips)), "one notice per cadastral slip: no duplicate side effect"
    assert_all_running(stack)


async def test_outage_longer_than_the_tiers_dead_letters_then_replay_completes(
    stack: LocalStack, traffic: Traffic
) -> None:
    await set_faults(stack, Agency.CIVIL_STATUS, down_for_s=30)
    down_since = time.monotonic()
    marriages = [await traffic.marriage() for _ in range(3)]
    transfers = [await traffic.land_transfer() for _ in range(2)]

    # The other agencies are unaffected: the land transfers complete while civil status is down.
    await wait_until_closed(traffic, stack.tracker_url, transfers, within_s=60)

    async def all_stuck() -> bool:
        details = [await tracker_detail(stack.tracker_url, m.dossier_id) for m in marriages]
        return all(d["stuck"] for d in details)

    await wait_for(all_stuck, 60, "dead-lettering of every marriage")
    stuck = [await tracker_detail(stack.tracker_url, m.dossier_id) for m in marriages]
    assert all(not d["closed"] for d in stuck)
    reasons = [leg["reason"] for d in stuck for leg in d["legs"] if leg["stuck"]]
    assert all("civil_status" in r for r in reasons), reasons
    letters = await dead_letters_of(stack, "civil_status")
    everything = await dead_letters_of(stack)
    assert len(letters) >= 3, [(x.id, x.agency, x.error_class) for x in everything]
    assert all(letter.error_class == "transient" for letter in letters)
    assert all(int(letter.headers[dead_letter_records.ATTEMPTS]) == 4 for letter in letters)

    await asyncio.sleep(max(0.0, 31 - (time.monotonic() - down_since)))  # the registry is back
    replay = await lienthong_dlq_replay(stack, "--agency", "civil_status")
    assert replay.returncode == 0, replay.stderr
    assert "replayed 3," in replay.stdout, replay.stdout
    details = await wait_until_closed(traffic, stack.tracker_url, marriages, within_s=60)
    assert all(d["result"] == "completed" for d in details.values())

    again = await lienthong_dlq_replay(stack, "--agency", "civil_status")
    assert "replayed 0, skipped 3" in again.stdout, f"a second replay is idempotent: {again.stdout}"
    wives = [m.form["wife"]["citizen_id"] for m in marriages]
    registered = [
        r for r in await records(stack, Agency.CIVIL_STATUS, "marriages") if r["vo_so_dinh_danh"] in wives
    ]
    assert len(registered) == 3, "each marriage registered exactly once"
    assert_all_running(stack)


def poison_catalogue(prefix: str) -> list[tuple[str, str, bytes, dict[str, str], str]]:
    """(name, topic, value, headers, key) of records no consumer may act on: in CloudEvents binary
    content mode (the envelope in the headers, the data as the value), and a few in the whole-event
    form written before, which consumers still read."""
    event = dossier_received("9.900005")
    key, value, headers = event_key(event), event_value(event), event_headers(event)
    whole = event.model_dump_json().encode()  # the form written before
    data = json.loads(value)
    received, outcome = prefix + DOSSIER_RECEIVED, prefix + HANDOFF_OUTCOME
    land, status = requests_topic(Agency.LAND, prefix), prefix + DOSSIER_STATUS

    def changed(**fields: Any) -> bytes:
        return json.dumps(data | fields).encode()

    closed_example = DossierClosed.model_json_schema()["examples"][0]
    closed = DossierClosed.model_validate_json(json.dumps(closed_example))
    k = key.decode()
    husband_is_a_number = changed(form=data["form"] | {"husband": 5})
    return [
        ("bad_json", received, b"{not json", headers, k),
        ("truncated", received, value[: len(value) // 2], headers, k),
        ("json_array", outcome, b"[1, 2, 3]", headers, k),
        ("empty_value", outcome, b"", headers, k),
        ("wrong_types", received, value, headers | {"ce_subject": "12345"}, k),
        ("unknown_event_type", received, value, headers | {"ce_type": "vn.lienthong.dossier.teleported"}, k),
        ("unknown_version", outcome, value, headers | {"ce_schemaversion": "99"}, k),
        ("missing_headers", land, value, {}, k),
        ("header_disagrees_with_body", received, whole, headers | {"ce_id": str(uuid.uuid4())}, k),
        ("oversized", received, value + b" " * (1_020_000 - len(value)), headers, k),  # < broker limit
        ("wrong_key", received, value, headers, "not-the-dossier-id"),
        ("naive_datetime", received, value, headers | {"ce_time": "2026-11-23T09:00:00"}, k),
        ("unknown_field", status, changed(favourite_colour="blue"), headers, k),
        ("not_utf8", status, b"\xff\xfe\x00garbage", headers, k),
        (
            "event_not_for_this_topic",
            received,
            event_value(closed),
            event_headers(closed),
            str(closed.dossier_id),
        ),
        ("form_of_another_kind", received, changed(form={"parcel_id": "TD-1-1"}), headers, k),
        ("husband_is_a_number", received, husband_is_a_number, headers, k),
        ("whole_event_of_a_wrong_form", received, whole.replace(b'"husband"', b'"hubsand"'), headers, k),
    ]


async def test_poison_records_are_dead_lettered_with_their_reason_and_traffic_flows(
    stack: LocalStack, traffic: Traffic
) -> None:
    catalogue = poison_catalogue(stack.topic_prefix)
    assert len(catalogue) >= 15
    producer = AIOKafkaProducer(bootstrap_servers=stack.bootstrap_servers, max_request_size=2_000_000)
    await producer.start()
    healthy: list[Submitted] = []
    try:
        for index, (name, topic, value, headers, key) in enumerate(catalogue):
            marked = headers | {"test-poison": name}
            await producer.send_and_wait(
                topic, value, key=key.encode(), headers=[(k, v.encode()) for k, v in marked.items()]
            )
            if index % 4 == 0:
                healthy.append(await traffic.marriage())
    finally:
        await producer.stop()
    healthy.append(await traffic.land_transfer())

    details = await wait_until_closed(traffic, stack.tracker_url, healthy, within_s=60)
    assert all(d["result"] == "completed" for d in details.values())

    async def all_dead_lettered() -> bool:
        found = {letter.headers.get("test-poison") for letter in await dead_letters_of(stack)}
        return {name for name, *_ in catalogue} <= found

    await wait_for(all_dead_lettered, 30, "dead-lettering of every poison record")
    letters = {letter.headers.get("test-poison"): letter for letter in await dead_letters_of(stack)}
    for name, topic, *_ in catalogue:
        letter = letters[name]
        assert letter.error_class == "poison", name
        assert letter.message, f"{name} carries no reason"
        assert letter.headers[dead_letter_records.ORIGINAL_TOPIC] == topic
    assert letters["oversized"].message.startswith("record of")
    assert "dossier_id" in letters["wrong_key"].message
    assert "ce_" in letters["missing_headers"].message
    assert_all_running(stack)


async def completion_rate(traffic: Traffic, stack: LocalStack, count: int, per_second: float) -> float:
    """Marriages handed in at a fixed rate; completed per second, from the first hand-in to the last close."""
    started = time.monotonic()
    submitted = []
    for index in range(count):
        submitted.append(await traffic.marriage())
        await asyncio.sleep(max(0.0, started + (index + 1) / per_second - time.monotonic()))
    await wait_until_closed(traffic, stack.tracker_url, submitted, within_s=120)
    return count / (time.monotonic() - started)


async def test_one_failing_agency_does_not_slow_the_others(stack: LocalStack, traffic: Traffic) -> None:
    baseline = await completion_rate(traffic, stack, count=60, per_second=10)
    await set_faults(stack, Agency.TAX, failure_rate=1.0)
    try:
        failing = [asyncio.create_task(traffic.land_transfer()) for _ in range(10)]
        during = await completion_rate(traffic, stack, count=60, per_second=10)
        await asyncio.gather(*failing)
    finally:
        await clear_faults(stack, Agency.TAX)
    print(f"civil-status completion rate: {baseline:.2f}/s alone, {during:.2f}/s while tax fails every call")
    assert during >= 0.9 * baseline, (baseline, during)
    assert_all_running(stack)

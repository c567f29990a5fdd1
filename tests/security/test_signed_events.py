"""Signed events against the real broker and the whole stack: a forged event, an event signed by an
unknown key, a tampered event and an unsigned one are each quarantined (dead-lettered with error class
``signature`` and the reason), never handled, counted in ``lienthong_dead_letters_total``; healthy
traffic keeps completing meanwhile."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import httpx
import pytest
from aiokafka import AIOKafkaProducer

from schemas.envelope import Event, event_headers, event_key, event_value
from schemas.topics import DOSSIER_RECEIVED
from services.runtime.failures import dead_letter_records, dead_letter_replay
from services.runtime.trust import keys
from services.runtime.trust.signing import CE_KEYID, CE_SIGNATURE, Signer, canonical_form
from services.tools.stack.stack import LocalStack
from services.tools.stack.traffic import Traffic
from tests.factories import dossier_received
from tests.stack_helpers import wait_for, wait_until_closed

pytestmark = pytest.mark.kafka

PROCEDURE = "9.900005"  # a marriage registration


def as_record(event: Event) -> tuple[bytes, bytes, dict[str, str]]:
    headers = event_headers(event)
    if event.signature is not None and event.key_id is not None:
        headers |= {CE_SIGNATURE: event.signature, CE_KEYID: event.key_id}
    return event_key(event), event_value(event), headers


def bad_events(stack: LocalStack, outsider_dir: Path) -> dict[str, tuple[bytes, bytes, dict[str, str]]]:
    """Records the router must refuse, by name; each claims to come from the intake."""
    intake = Signer(keys.load_signing_key(keys.private_key_path(stack.private_keys_dir, "intake")))
    outsider = keys.new_key("intake", outsider_dir / "private", outsider_dir / "trusted")  # never trusted

    claimed = dossier_received(PROCEDURE).model_copy(update={"key_id": intake.key.key_id})
    forged_signature = base64.b64encode(outsider.private_key.sign(canonical_form(claimed))).decode()
    forged = claimed.model_copy(update={"signature": forged_signature})

    unknown = Signer(outsider).sign(dossier_received(PROCEDURE))

    key, value, headers = as_record(intake.sign(dossier_received(PROCEDURE)))
    document = json.loads(value)
    document["applicant"]["full_name"] = "Someone Else"  # one field of the data changed after signing
    tampered = (key, json.dumps(document).encode(), headers)

    return {
        "forged": as_record(forged),
        "unknown_key": as_record(unknown),
        "tampered": tampered,
        "unsigned": as_record(dossier_received(PROCEDURE)),
    }


async def dead_letter_count(url: str) -> float:
    async with httpx.AsyncClient(timeout=5.0) as http:
        text = (await http.get(f"{url}/metrics")).text
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("lienthong_dead_letters_total{") and 'error_class="signature"' in line
    )


async def test_forged_unknown_tampered_and_unsigned_events_are_quarantined_while_traffic_flows(
    stack: LocalStack, traffic: Traffic, tmp_path: Path
) -> None:
    router_url = stack.url(stack.ports.router)
    before = await dead_letter_count(router_url)
    bad = bad_events(stack, tmp_path)
    topic = stack.topic_prefix + DOSSIER_RECEIVED
    producer = AIOKafkaProducer(bootstrap_servers=stack.bootstrap_servers)
    await producer.start()
    healthy = [await traffic.marriage()]
    try:
        for name, (key, value, headers) in bad.items():
            marked = headers | {"test-signature": name}
            await producer.send_and_wait(
                topic, value, key=key, headers=[(k, v.encode()) for k, v in marked.items()]
            )
            healthy.append(await traffic.marriage())
    finally:
        await producer.stop()

    details = await wait_until_closed(traffic, stack.tracker_url, healthy, within_s=90)
    assert all(d["result"] == "completed" for d in details.values()), "healthy traffic completes"

    async def letters() -> dict[str, dead_letter_replay.DeadLetter]:
        found = await dead_letter_replay.read_dead_letters(stack.bootstrap_servers, stack.topic_prefix)
        return {x.headers["test-signature"]: x for x in found if "test-signature" in x.headers}

    async def all_quarantined() -> bool:
        return set(bad) <= set(await letters())

    await wait_for(all_quarantined, 30, "dead-lettering of every badly signed event")
    quarantined = await letters()
    for name in bad:
        letter = quarantined[name]
        assert letter.error_class == "signature", (name, letter.error_class, letter.message)
        assert letter.headers[dead_letter_records.ORIGINAL_TOPIC] == topic
        assert letter.value == bad[name][1], "the record is kept whole for inspection"
    assert "does not match" in quarantined["forged"].message
    assert "unknown key" in quarantined["unknown_key"].message
    assert "does not match" in quarantined["tampered"].message
    assert "unsigned" in quarantined["unsigned"].message

    # Never handled: the router routed none of them, so the tracker knows none of these dossiers.
    async with httpx.AsyncClient(timeout=5.0) as http:
        for name, (key, *_rest) in bad.items():
            answer = await http.get(f"{stack.tracker_url}/dossiers/{key.decode()}")
            assert answer.status_code == 404, f"{name} reached a handler"
    assert await dead_letter_count(router_url) - before == len(bad)
    crashed = [name for name, process in stack.processes.items() if not process.is_running()]
    assert not crashed, crashed

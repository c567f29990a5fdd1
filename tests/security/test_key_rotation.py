"""Key rotation takes effect without a restart, on the real broker and the running stack: after
``lienthong keys rotate intake`` the running intake signs with the new key and the running router
accepts it (the old key stays trusted meanwhile); after ``lienthong keys remove`` of the old key, an
event signed with it is dead-lettered with class ``signature`` while new dossiers keep completing."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaProducer
from typer.testing import CliRunner

from schemas.topics import DOSSIER_RECEIVED
from services.runtime.failures import dead_letter_replay
from services.runtime.trust import keys
from services.runtime.trust.signing import Signer
from services.tools.cli.main import app as cli
from services.tools.stack.stack import LocalStack
from services.tools.stack.traffic import Traffic
from tests.factories import dossier_received
from tests.security.test_replay_headers import records_of
from tests.security.test_signed_events import as_record
from tests.stack_helpers import tracker_knows, wait_for, wait_until_closed

pytestmark = pytest.mark.kafka

PROCEDURE = "9.900005"  # a marriage registration
MARK = "test-key-rotation"


def lienthong_keys(stack: LocalStack, *arguments: str) -> str:
    places = ["--trust-store", str(stack.trust_store)]
    if arguments[0] == "rotate":
        places += ["--private-dir", str(stack.private_keys_dir)]
    result = CliRunner().invoke(cli, ["keys", *arguments, *places])
    assert result.exit_code == 0, result.output
    return result.output


async def tracker_detail_or_none(stack: LocalStack, dossier_id: str) -> dict[str, Any] | None:
    async with httpx.AsyncClient(timeout=5.0) as http:
        answer = await http.get(f"{stack.tracker_url}/dossiers/{dossier_id}")
    return answer.json() if answer.status_code == 200 else None  # type: ignore[no-any-return]


async def signed_with(stack: LocalStack, dossier_id: str) -> str:
    """The key id the intake signed the dossier's received event with."""
    [record] = await records_of(stack, stack.topic_prefix + DOSSIER_RECEIVED, dossier_id.encode())
    return str(dict(record.headers)["ce_keyid"].decode())


async def test_a_rotated_key_is_used_and_trusted_and_the_removed_one_refused_without_restarts(
    stack: LocalStack, traffic: Traffic
) -> None:
    path = keys.private_key_path(stack.private_keys_dir, "intake")
    old = Signer(keys.load_signing_key(path))
    pids = {name: process.pid for name, process in stack.processes.items()}

    lienthong_keys(stack, "rotate", "intake")
    new = keys.load_signing_key(path)
    assert new.key_id != old.key.key_id

    # The running intake follows its key file; the running router re-reads the trust store.
    async def intake_signs_with_the_new_key() -> bool:
        dossier = await traffic.marriage()
        await tracker_knows(stack.tracker_url, dossier.dossier_id)
        return await signed_with(stack, dossier.dossier_id) == new.key_id

    await wait_for(intake_signs_with_the_new_key, 30, "the intake signing with the rotated key", 1.0)
    rotated = await traffic.marriage()
    closed = await wait_until_closed(traffic, stack.tracker_url, [rotated], within_s=90)
    at = datetime.fromisoformat(closed[rotated.dossier_id]["received_at"])  # the stack's own time

    topic = stack.topic_prefix + DOSSIER_RECEIVED
    producer = AIOKafkaProducer(bootstrap_servers=stack.bootstrap_servers)
    await producer.start()
    try:
        # Until it is removed, the old key is still trusted (what it signed before the rotation drains).
        drained = old.sign(dossier_received(PROCEDURE, received_at=at))
        key, value, record_headers = as_record(drained)
        await producer.send_and_wait(
            topic, value, key=key, headers=[(k, v.encode()) for k, v in record_headers.items()]
        )

        async def drained_closed() -> bool:
            answer = await tracker_detail_or_none(stack, str(drained.dossier_id))
            return answer is not None and answer["closed"]

        await wait_for(drained_closed, 90, "the dossier signed with the old key before its removal")

        # Once removed, an event signed with it is refused.
        lienthong_keys(stack, "remove", old.key.key_id)
        refused = old.sign(dossier_received(PROCEDURE, received_at=at))
        key, value, record_headers = as_record(refused)
        marked = [(k, v.encode()) for k, v in (record_headers | {MARK: "removed"}).items()]

        async def old_key_refused() -> bool:
            # Sent again until the router's verifier re-read the trust store: each copy before that
            # was a valid event (one dossier, deduplicated by its id); the first after is refused.
            await producer.send_and_wait(topic, value, key=key, headers=marked)
            letters = await dead_letter_replay.read_dead_letters(stack.bootstrap_servers, stack.topic_prefix)
            return any(x.headers.get(MARK) == "removed" for x in letters)

        await wait_for(old_key_refused, 30, "the removed key's event being dead-lettered", 1.0)
    finally:
        await producer.stop()
    letters = await dead_letter_replay.read_dead_letters(stack.bootstrap_servers, stack.topic_prefix)
    [letter] = [x for x in letters if x.headers.get(MARK) == "removed"][:1]
    assert letter.error_class == "signature" and "unknown key" in letter.message, letter.message

    after = await traffic.marriage()
    await wait_until_closed(traffic, stack.tracker_url, [after], within_s=90)
    assert await signed_with(stack, after.dossier_id) == new.key_id
    assert {name: process.pid for name, process in stack.processes.items()} == pids, "nothing restarted"

"""Agencies speak only for themselves, on the real broker and the whole stack: the land connector,
which sees every land-transfer dossier, signs (with its own, trusted key) a "completed" outcome for the
dossier's tax leg while the citizen has not paid. The router dead-letters it with error class
``authorization``, the tracker neither shows the tax leg completed nor logs the outcome in the handoff
log, and the dossier completes only once the tax authority's own outcome (the payment) arrives."""

from __future__ import annotations

import sqlite3
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from aiokafka import AIOKafkaProducer

from schemas.agencies import Agency
from schemas.authority import connector_producer
from schemas.events import HandoffOutcomeData, HandoffReported, OutcomeKind
from schemas.topics import HANDOFF_OUTCOME
from services.runtime.failures import dead_letter_records, dead_letter_replay
from services.runtime.trust import keys
from services.runtime.trust.signing import Signer
from services.tools.stack.stack import LocalStack
from services.tools.stack.traffic import Traffic
from tests.security.test_handoff_log import snapshot
from tests.security.test_signed_events import as_record
from tests.stack_helpers import tracker_detail, tracker_knows, wait_for, wait_until_closed

pytestmark = pytest.mark.kafka

MARK = "test-authorization"


def tax_leg(detail: dict[str, Any]) -> dict[str, Any]:
    return next(leg for leg in detail["legs"] if leg["agency"] == "tax")


def land_signed(dossier_id: str, leg: dict[str, Any], claimed: Agency, at: datetime, signer: Signer) -> Any:
    """A completed outcome for the tax leg, signed with the land connector's key, naming ``claimed``."""
    action = leg["action"] if claimed is Agency.TAX else "check_transfer"
    data = HandoffOutcomeData(
        handoff_id=UUID(leg["handoff_id"]),
        step_id=leg["step_id"],
        agency=claimed,
        action=action,
        kind=OutcomeKind.COMPLETED,
        result={"paid": True},
    )
    outcome = HandoffReported.create(
        data=data, producer=connector_producer(Agency.LAND), dossier_id=UUID(dossier_id), occurred_at=at
    )
    return signer.sign(outcome)


async def test_a_land_signed_tax_outcome_is_refused_and_the_dossier_waits_for_the_real_one(
    stack: LocalStack, traffic: Traffic, tmp_path: Path
) -> None:
    dossier = await traffic.land_transfer()
    await tracker_knows(stack.tracker_url, dossier.dossier_id)

    async def waiting_on_payment() -> bool:
        detail = await tracker_detail(stack.tracker_url, dossier.dossier_id)
        return any(leg["agency"] == "tax" and leg["state"] == "waiting_on_citizen" for leg in detail["legs"])

    await wait_for(waiting_on_payment, 60, "the tax notice (the tax leg waiting on the payment)")
    leg = tax_leg(await tracker_detail(stack.tracker_url, dossier.dossier_id))
    notified = datetime.fromisoformat(leg["requested_at"]) + timedelta(seconds=1)  # the stack's own times

    land = Signer(
        keys.load_signing_key(keys.private_key_path(stack.private_keys_dir, connector_producer(Agency.LAND)))
    )
    forged = {
        "names_tax": land_signed(dossier.dossier_id, leg, Agency.TAX, notified, land),
        "names_land": land_signed(dossier.dossier_id, leg, Agency.LAND, notified, land),
    }
    topic = stack.topic_prefix + HANDOFF_OUTCOME
    producer = AIOKafkaProducer(
        bootstrap_servers=stack.bootstrap_servers, **stack.client_options("connector-land")
    )
    await producer.start()
    try:
        for name, event in forged.items():
            key, value, headers = as_record(event)
            marked = headers | {MARK: name}
            await producer.send_and_wait(
                topic, value, key=key, headers=[(k, v.encode()) for k, v in marked.items()]
            )
    finally:
        await producer.stop()

    async def letters() -> dict[str, dead_letter_replay.DeadLetter]:
        found = await dead_letter_replay.read_dead_letters(
            stack.bootstrap_servers, stack.topic_prefix, **stack.client_options()
        )
        return {x.headers[MARK]: x for x in found if MARK in x.headers}

    async def all_refused() -> bool:
        return set(forged) <= set(await letters())

    await wait_for(all_refused, 30, "dead-lettering of the land-signed tax outcomes")
    refused = await letters()
    for name, event in forged.items():
        letter = refused[name]
        assert letter.error_class == "authorization", (name, letter.error_class, letter.message)
        assert letter.headers[dead_letter_records.ORIGINAL_TOPIC] == topic
        assert "only connector.tax speaks for tax" in letter.message, letter.message
        assert letter.value == as_record(event)[1], "the record is kept whole for inspection"

    detail = await tracker_detail(stack.tracker_url, dossier.dossier_id)
    assert tax_leg(detail)["state"] == "waiting_on_citizen", "the payment was not skipped"
    assert not any(leg["step_id"] == "register_transfer" for leg in detail["legs"]), detail["legs"]

    # The citizen pays: the tax authority's own outcome completes the leg and the dossier.
    closed = (await wait_until_closed(traffic, stack.tracker_url, [dossier], within_s=90))[dossier.dossier_id]
    assert closed["result"] == "completed"
    leg = tax_leg(closed)
    assert leg["state"] == "completed" and datetime.fromisoformat(leg["settled_at"]) != notified
    forged_ids = {str(event.event_id) for event in forged.values()}
    assert not forged_ids & {entry["event_id"] for entry in closed["timeline"]}, "never projected"

    log = sqlite3.connect(snapshot(stack, tmp_path / "tracker.db"))
    try:
        logged = {
            row[0]
            for row in log.execute(
                "SELECT event_id FROM handoff_log WHERE dossier_id = ?", (dossier.dossier_id,)
            )
        }
    finally:
        log.close()
    assert logged and not forged_ids & logged, "never written to the handoff log"

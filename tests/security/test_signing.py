"""Signed events without a broker: what event_record emits, what EventConsumer.parse accepts, keys
and rotation, and the cost of signing and verifying."""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import pytest

from schemas.events import DossierReceived
from services.runtime.consume.consumer import EventConsumer
from services.runtime.consume.records import ReceivedRecord, event_record
from services.runtime.trust import keys, signing
from services.runtime.trust.signing import SignatureError, Signer, Verifier
from tests.factories import dossier_received

PROCEDURE = "9.900005"


@pytest.fixture
def key_dirs(tmp_path: Path) -> tuple[Path, Path]:
    return tmp_path / "private", tmp_path / "trusted"


@pytest.fixture
def intake_signer(key_dirs: tuple[Path, Path]) -> Iterator[Signer]:
    private, trusted = key_dirs
    key = keys.new_key("intake", private, trusted)
    signer = Signer(key)
    signing.configure(signer=signer, verifier=None)
    yield signer
    signing.configure()


async def refuse_to_handle(event: object, ctx: object) -> Any:
    raise AssertionError("these tests only parse")


def consumer(trust_store: Path) -> EventConsumer:
    return EventConsumer(
        store=cast(Any, None),
        relay=cast(Any, None),
        group_id="t.router",
        handlers={DossierReceived: refuse_to_handle},
        verifier=Verifier(trust_store, recheck_s=0.0),
    )


def received(value: bytes, headers: dict[str, str], key: bytes) -> ReceivedRecord:
    return ReceivedRecord("t.dossier.received", 0, 0, datetime.now(UTC), key, value, headers, "t.router")


def emitted() -> ReceivedRecord:
    record = event_record(dossier_received(PROCEDURE), "t.dossier.received")
    return received(record.value, record.headers, record.key or b"")


def test_every_emitted_event_is_signed_and_verifies(
    intake_signer: Signer, key_dirs: tuple[Path, Path]
) -> None:
    record = emitted()
    assert record.headers[signing.CE_KEYID] == intake_signer.key.key_id
    assert record.headers[signing.CE_SIGNATURE]
    event = consumer(key_dirs[1]).parse(record)
    assert event.signature == record.headers[signing.CE_SIGNATURE]
    assert event.key_id == intake_signer.key.key_id


def test_tampered_forged_unknown_and_unsigned_events_are_refused(
    intake_signer: Signer, key_dirs: tuple[Path, Path], tmp_path: Path
) -> None:
    check = consumer(key_dirs[1])
    record = emitted()
    body = json.loads(record.value)

    tampered = body | {"applicant": body["applicant"] | {"full_name": "Someone Else"}}  # the data
    with pytest.raises(SignatureError, match="does not match"):
        check.parse(received(json.dumps(tampered).encode(), record.headers, record.key or b""))

    # Forged: signed by a key that is not trusted, presenting the trusted key's id.
    impostor = keys.new_key("intake", tmp_path / "x", tmp_path / "x-trusted")
    claimed = dossier_received(PROCEDURE).model_copy(update={"key_id": intake_signer.key.key_id})
    raw = impostor.private_key.sign(signing.canonical_form(claimed))
    forged_event = claimed.model_copy(update={"signature": base64.b64encode(raw).decode()})
    signing.configure(signer=None, verifier=None)
    forged = event_record(forged_event, "t")
    with pytest.raises(SignatureError, match="does not match"):
        check.parse(received(forged.value, forged.headers, forged.key or b""))

    unknown = event_record(Signer(impostor).sign(dossier_received(PROCEDURE)), "t")
    with pytest.raises(SignatureError, match="unknown key"):
        check.parse(received(unknown.value, unknown.headers, unknown.key or b""))

    unsigned_record = event_record(dossier_received(PROCEDURE), "t")
    with pytest.raises(SignatureError, match="unsigned"):
        check.parse(received(unsigned_record.value, unsigned_record.headers, unsigned_record.key or b""))


def test_a_key_speaks_only_for_its_own_producer(key_dirs: tuple[Path, Path]) -> None:
    private, trusted = key_dirs
    router = Signer(keys.new_key("router", private, trusted))
    with pytest.raises(signing.SigningMismatch):
        router.sign(dossier_received(PROCEDURE))  # an intake event
    # A trusted router key presented on an intake event is refused by the consumer.
    event = dossier_received(PROCEDURE).model_copy(update={"producer": "router"})
    signed = router.sign(event).model_copy(update={"producer": "intake"})
    signing.configure(signer=None, verifier=None)
    try:
        record = event_record(signed, "t")
    finally:
        signing.configure()
    with pytest.raises(SignatureError, match="belongs to 'router'"):
        consumer(trusted).parse(received(record.value, record.headers, record.key or b""))


def test_rotation_keeps_old_and_new_keys_valid_until_the_old_is_removed(key_dirs: tuple[Path, Path]) -> None:
    private, trusted = key_dirs
    old = Signer(keys.new_key("intake", private, trusted))
    before = old.sign(dossier_received(PROCEDURE))
    new = Signer(keys.new_key("intake", private, trusted))  # the rotation
    assert keys.load_signing_key(keys.private_key_path(private, "intake")).key_id == new.key.key_id
    after = new.sign(dossier_received(PROCEDURE))
    verifier = Verifier(trusted, recheck_s=0.0)
    verifier.verify(before)
    verifier.verify(after)
    assert keys.remove_key(trusted, old.key.key_id)
    with pytest.raises(SignatureError, match="unknown key"):
        verifier.verify(before)
    verifier.verify(after)


def test_signing_and_verifying_cost(key_dirs: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    private, trusted = key_dirs
    signer = Signer(keys.new_key("intake", private, trusted))
    verifier = Verifier(trusted)
    base = dossier_received(PROCEDURE)
    events = [base.model_copy(update={"event_id": uuid.uuid4()}) for _ in range(2000)]
    started = time.perf_counter()
    signed = [signer.sign(e) for e in events]
    sign_us = (time.perf_counter() - started) / len(events) * 1e6
    started = time.perf_counter()
    for e in signed:
        verifier.verify(e)
    verify_us = (time.perf_counter() - started) / len(events) * 1e6
    with capsys.disabled():
        print(f"\nsigning {sign_us:.0f} µs/event, verifying {verify_us:.0f} µs/event")
    assert sign_us + verify_us < 2_000, "signing must stay far below a handoff's cost"

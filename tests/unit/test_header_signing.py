"""The headers that change deduplication (a replay id, a retry attempt) count only when signed by who may
set them, and an event older than the age window is refused unless an operator replays it.

Through the consumer's real path (parse, dedupe, store) on a SQLite store, with a trust store of real
keys and an injected clock: nothing here reads the machine's date."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from schemas.envelope import Event, event_headers, event_key, event_value
from schemas.events import DossierReceived
from services.runtime.consume import headers
from services.runtime.consume.consumer import Context, Effect, EventConsumer
from services.runtime.consume.records import ReceivedRecord
from services.runtime.failures import dead_letter_records
from services.runtime.failures.dead_letter_replay import DeadLetter
from services.runtime.failures.table import FailureClass, classify
from services.runtime.shell.settings import SigningSettings
from services.runtime.storage.outbox import OutboxRelay
from services.runtime.storage.store import SqlProcessingStore
from services.runtime.trust import keys
from services.runtime.trust.header_signing import (
    REPLAY_TOOL,
    EventTooOld,
    HeaderSignatureError,
    NotAllowedToRedeliver,
    sign_headers,
    verify_headers,
)
from services.runtime.trust.signing import CE_KEYID, CE_SIGNATURE, Signer, Verifier
from services.tools.cli.main import app as cli
from tests.factories import dossier_received

PROCEDURE = "9.900005"
TOPIC = "t.dossier.received"
RECEIVED = datetime.fromisoformat("2026-11-23T02:00:00+00:00")  # the factories' dossiers' time
RETRIER = "router"  # the consuming service in these tests, sending its own records through delay tiers


class Keys:
    def __init__(self, root: Path) -> None:
        self.private, self.trusted = root / "private", root / "trusted"
        self.signers: dict[str, Signer] = {}

    def signer(self, producer: str) -> Signer:
        if producer not in self.signers:
            self.signers[producer] = Signer(keys.new_key(producer, self.private, self.trusted))
        return self.signers[producer]

    def verifier(self) -> Verifier:
        return Verifier(self.trusted, recheck_s=0.0)


@pytest.fixture
def trust(tmp_path: Path) -> Keys:
    found = Keys(tmp_path / "keys")
    for producer in ("intake", REPLAY_TOOL, "tracker", "connector.land", RETRIER):
        found.signer(producer)
    return found


def record_of(event: Event, extra: dict[str, str] | None = None, *, offset: int = 0) -> ReceivedRecord:
    record_headers = event_headers(event) | {
        CE_SIGNATURE: event.signature or "",
        CE_KEYID: event.key_id or "",
    }
    return ReceivedRecord(
        TOPIC, 0, offset, RECEIVED, event_key(event), event_value(event), record_headers | (extra or {}), "t"
    )


def signed_by(signer: Signer, event: Event, values: dict[str, str]) -> dict[str, str]:
    return values | sign_headers(signer, event.event_id, values)


# --- the header signature ---------------------------------------------------------------------------


def test_a_replay_signed_by_the_dead_letter_tool_or_the_tracker_verifies(trust: Keys) -> None:
    event = trust.signer("intake").sign(dossier_received(PROCEDURE))
    for replayer in (REPLAY_TOOL, "tracker"):
        replay = signed_by(trust.signer(replayer), event, {headers.REPLAY_ID: "t.dlq/0/7"})
        assert verify_headers(trust.verifier(), event.event_id, replay, retriers={RETRIER}) is True


def test_a_hand_added_replay_or_retry_header_is_a_signature_failure(trust: Keys) -> None:
    event = trust.signer("intake").sign(dossier_received(PROCEDURE))
    for added in ({headers.REPLAY_ID: "t.dlq/0/7"}, {headers.RETRY_ATTEMPT: "1"}):
        with pytest.raises(HeaderSignatureError, match="unsigned") as refused:
            verify_headers(trust.verifier(), event.event_id, added, retriers={RETRIER})
        assert classify(refused.value).failure_class is FailureClass.SIGNATURE


def test_a_signed_replay_header_changed_moved_or_signed_by_an_outsider_is_refused(
    trust: Keys, tmp_path: Path
) -> None:
    event = trust.signer("intake").sign(dossier_received(PROCEDURE))
    other = trust.signer("intake").sign(dossier_received(PROCEDURE))
    replay = signed_by(trust.signer(REPLAY_TOOL), event, {headers.REPLAY_ID: "t.dlq/0/7"})
    outsider = Signer(keys.new_key(REPLAY_TOOL, tmp_path / "x", tmp_path / "never-trusted"))
    cases: dict[str, tuple[Any, dict[str, str]]] = {
        "changed": (event.event_id, replay | {headers.REPLAY_ID: "t.dlq/0/8"}),
        "a retry attempt added": (event.event_id, replay | {headers.RETRY_ATTEMPT: "1"}),
        "moved to another event": (other.event_id, replay),
        "unknown key": (event.event_id, signed_by(outsider, event, {headers.REPLAY_ID: "t.dlq/0/7"})),
        "not base64": (event.event_id, replay | {headers.HEADERS_SIGNATURE: "%%%"}),
    }
    for name, (event_id, values) in cases.items():
        with pytest.raises(HeaderSignatureError):
            verify_headers(trust.verifier(), event_id, values, retriers={RETRIER})
            pytest.fail(name)


def test_a_trusted_key_that_may_not_set_the_header_is_an_authorization_failure(trust: Keys) -> None:
    event = trust.signer("intake").sign(dossier_received(PROCEDURE))
    land = trust.signer("connector.land")
    cases = {
        "a connector's replay": signed_by(land, event, {headers.REPLAY_ID: "t.dlq/0/7"}),
        "another service's retry": signed_by(land, event, {headers.RETRY_ATTEMPT: "1"}),
        "a replayer's retry": signed_by(trust.signer(REPLAY_TOOL), event, {headers.RETRY_ATTEMPT: "1"}),
    }
    for name, values in cases.items():
        with pytest.raises(NotAllowedToRedeliver) as refused:
            verify_headers(trust.verifier(), event.event_id, values, retriers={RETRIER})
        assert classify(refused.value).failure_class is FailureClass.AUTHORIZATION, name


def test_the_service_signs_its_own_retry_attempt_and_the_replay_id_it_carries(trust: Keys) -> None:
    event = trust.signer("intake").sign(dossier_received(PROCEDURE))
    own = trust.signer(RETRIER)
    first_pass = signed_by(own, event, {headers.RETRY_ATTEMPT: "2"})
    assert verify_headers(trust.verifier(), event.event_id, first_pass, retriers={RETRIER}) is False
    of_a_replay = signed_by(own, event, {headers.REPLAY_ID: "t.dlq/0/7", headers.RETRY_ATTEMPT: "1"})
    assert verify_headers(trust.verifier(), event.event_id, of_a_replay, retriers={RETRIER}) is True


def test_the_replay_tool_signs_what_it_replays_and_drops_the_old_signature(trust: Keys) -> None:
    event = trust.signer("intake").sign(dossier_received(PROCEDURE))
    stale = signed_by(trust.signer(RETRIER), event, {headers.RETRY_ATTEMPT: "3"})
    original = record_of(event, stale)
    raw = [(k, v.encode()) for k, v in original.headers.items()]
    letter = DeadLetter(
        "t.dlq", 0, 5, RECEIVED, original.key, original.value, original.headers, raw_headers=raw
    )
    replayed = {k: v.decode() for k, v in letter.replay_headers(trust.signer(REPLAY_TOOL))}
    assert headers.RETRY_ATTEMPT not in replayed and replayed[headers.REPLAY_ID] == letter.id
    assert verify_headers(trust.verifier(), event.event_id, replayed, retriers={RETRIER}) is True


# --- through the consumer: the dedupe key and the age window ------------------------------------------


class Harness:
    def __init__(self, trust: Keys, tmp_path: Path, now: datetime) -> None:
        self.now = now
        self.handled: list[tuple[str, str | None]] = []
        self.store = SqlProcessingStore(tmp_path / "consumer.db")

        async def unused(record: Any) -> Any:
            raise AssertionError("the test reads the outbox")

        async def handle(event: DossierReceived, ctx: Context[Any]) -> Effect:
            self.handled.append((str(event.event_id), ctx.delivery.replay_id))
            return Effect()

        self.consumer = EventConsumer(
            store=self.store,
            relay=OutboxRelay(self.store.outbox, unused),
            group_id="t.router",
            handlers={DossierReceived: handle},
            verifier=trust.verifier(),
            retriers={RETRIER},
            max_event_age=timedelta(days=7),
            clock=lambda: self.now,
        )

    def dead_letters(self) -> list[tuple[str, str]]:
        return [
            (r.headers[dead_letter_records.ERROR_CLASS], r.headers[dead_letter_records.EXCEPTION_MESSAGE])
            for _, r in self.store.outbox.pending()
        ]


@pytest.fixture
def harness(trust: Keys, tmp_path: Path) -> Iterator[Callable[[datetime], Harness]]:
    made: list[Harness] = []

    def make(now: datetime) -> Harness:
        made.append(Harness(trust, tmp_path / str(len(made)), now))
        return made[-1]

    yield make
    for each in made:
        each.store.close()


async def test_an_old_processed_event_with_a_hand_added_replay_header_is_dead_lettered_not_handled(
    trust: Keys, harness: Callable[[datetime], Harness]
) -> None:
    h = harness(RECEIVED + timedelta(hours=1))
    event = trust.signer("intake").sign(dossier_received(PROCEDURE))
    await h.consumer.process(record_of(event))
    assert h.handled == [(str(event.event_id), None)]

    await h.consumer.process(record_of(event, {headers.REPLAY_ID: "t.dlq/0/1"}, offset=1))
    forged = signed_by(trust.signer("connector.land"), event, {headers.REPLAY_ID: "t.dlq/0/2"})
    await h.consumer.process(record_of(event, forged, offset=2))
    assert len(h.handled) == 1, "no second effect"
    (first, why_first), (second, why_second) = h.dead_letters()
    assert first == "signature" and "unsigned lienthong-replay-id header" in why_first
    assert second == "authorization" and "only dlq-tool, tracker replay" in why_second

    replay = signed_by(trust.signer(REPLAY_TOOL), event, {headers.REPLAY_ID: "t.dlq/0/3"})
    await h.consumer.process(record_of(event, replay, offset=3))
    await h.consumer.process(record_of(event, replay, offset=3))  # redelivered: deduplicated by the replay id
    assert h.handled[1:] == [(str(event.event_id), "t.dlq/0/3")], "the tool's replay is a new delivery"


async def test_an_event_older_than_the_window_is_refused_unless_replayed_by_the_tool(
    trust: Keys, harness: Callable[[datetime], Harness]
) -> None:
    intake = trust.signer("intake")
    in_time = intake.sign(dossier_received(PROCEDURE, received_at=RECEIVED - timedelta(days=6, hours=23)))
    stale = intake.sign(dossier_received(PROCEDURE, received_at=RECEIVED - timedelta(days=7, minutes=1)))
    h = harness(RECEIVED)
    await h.consumer.process(record_of(in_time))
    await h.consumer.process(record_of(stale, offset=1))
    await h.consumer.process(record_of(stale, offset=1))  # redelivered: dead-lettered once
    assert h.handled == [(str(in_time.event_id), None)]
    [(error_class, why)] = h.dead_letters()
    assert error_class == "authorization" and "7.0 days ago, beyond the 7-day window" in why, why
    assert classify(EventTooOld("")).failure_class is FailureClass.AUTHORIZATION

    retried = signed_by(trust.signer(RETRIER), stale, {headers.RETRY_ATTEMPT: "1"})
    await h.consumer.process(record_of(stale, retried, offset=2))
    assert len(h.handled) == 1, "a retry attempt does not lift the window: only a replay does"

    replay = signed_by(trust.signer(REPLAY_TOOL), stale, {headers.REPLAY_ID: "t.dlq/0/9"})
    await h.consumer.process(record_of(stale, replay, offset=3))
    assert h.handled[1:] == [(str(stale.event_id), "t.dlq/0/9")]


async def test_an_old_event_processed_in_time_and_redelivered_is_skipped_not_dead_lettered(
    trust: Keys, harness: Callable[[datetime], Harness], tmp_path: Path
) -> None:
    """A consumer whose offsets went back (expired, reset) reads what it processed days ago again."""
    event = trust.signer("intake").sign(dossier_received(PROCEDURE))
    h = harness(RECEIVED)
    await h.consumer.process(record_of(event))
    h.now = RECEIVED + timedelta(days=10)
    await h.consumer.process(record_of(event))
    h.consumer.lookup_before_handling = False  # the tracker's way: the commit dedupes
    await h.consumer.process(record_of(event))
    assert len(h.handled) == 1 and h.dead_letters() == []


def test_the_window_is_a_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    assert SigningSettings().max_event_age == timedelta(days=7)
    monkeypatch.setenv("LIENTHONG_MAX_EVENT_AGE", "PT36H")
    assert SigningSettings().max_event_age == timedelta(hours=36)


# --- who signs: the CLI, the process's signer after a rotation -----------------------------------------


def test_dlq_replay_refuses_without_the_tools_key_and_with_another_producers(
    trust: Keys, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("LIENTHONG_SIGNING_KEY", raising=False)
    base = ["dlq", "replay", "--all", "--bootstrap-servers", "127.0.0.1:1", "--prefix", "t."]
    missing = CliRunner().invoke(cli, base)
    assert missing.exit_code == 2 and "no dlq-tool key to sign the replays with" in missing.output
    intake_key = keys.private_key_path(trust.private, "intake")
    wrong = CliRunner().invoke(cli, [*base, "--signing-key", str(intake_key)])
    assert wrong.exit_code == 2 and "is the key of 'intake'" in wrong.output


def test_a_signer_made_from_its_key_file_follows_a_rotation_without_a_restart(trust: Keys) -> None:
    path = keys.private_key_path(trust.private, "intake")
    signer = Signer.from_file(path, recheck_s=0.0)
    before = signer.sign(dossier_received(PROCEDURE))
    rotated = keys.new_key("intake", trust.private, trust.trusted)  # `lienthong keys rotate intake`
    after = signer.sign(dossier_received(PROCEDURE))
    assert before.key_id != rotated.key_id and after.key_id == rotated.key_id
    trust.verifier().verify(after)


def test_a_verifier_looks_at_once_for_a_key_it_does_not_know_yet(trust: Keys) -> None:
    """A producer may sign with its rotated key before the verifier's next periodic look."""
    verifier = Verifier(trust.trusted, recheck_s=3600.0)
    rotated = Signer(keys.new_key("intake", trust.private, trust.trusted))
    verifier.verify(rotated.sign(dossier_received(PROCEDURE)))
    keys.remove_key(trust.trusted, rotated.key.key_id)
    verifier.verify(rotated.sign(dossier_received(PROCEDURE)))  # removal: seen at the next look

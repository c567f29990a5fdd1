"""Secure by default, fail closed.

- A service given a broker but no trust store (or, for a producer, no signing key) refuses to start,
  with one sentence on stderr and a non-zero exit, unless the development switch
  ``LIENTHONG_INSECURE_DEV`` says otherwise (and then it says so, loudly).
- ``lienthong run`` runs its broker with SASL/SCRAM and ACLs, each service as its own principal with its
  own key. On that stack, as ``lienthong run`` starts it: the land connector's principal is refused the
  tax requests; an unsigned record and one signed by an unknown producer's key, written by a principal
  allowed to write there, are dead-lettered with error class ``signature`` and never handled; a
  dossier completes; and the tracker's replay button works under the tracker's own ACLs.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import stat
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import TopicAuthorizationFailedError
from typer.testing import CliRunner

from schemas.agencies import Agency
from schemas.envelope import Event, event_headers, event_key, event_value
from schemas.topics import DOSSIER_RECEIVED, requests_topic
from services.runtime.failures import dead_letter_records, dead_letter_replay
from services.runtime.trust import keys
from services.runtime.trust.signing import CE_KEYID, CE_SIGNATURE, Signer
from services.tools.cli.main import app as lienthong
from services.tools.localkafka.process import free_port
from services.tools.stack import run as run_module
from services.tools.stack.run import RunOptions, run_kafka
from services.tools.stack.secured import PASSWORDS_FILE, principal_passwords
from services.tools.stack.stack import DEFAULT_AGENCIES, LocalStack, StackPorts
from services.tools.stack.traffic import Traffic
from tests.factories import dossier_received
from tests.stack_helpers import clear_faults, sample_traffic, set_faults, wait_for, wait_until_closed

REPO = Path(__file__).resolve().parents[2]
REFUSAL_WITHIN_S = 30.0  # an import and a check: far less than a start, which never ends
TRUST_VARIABLES = ("LIENTHONG_TRUST_STORE", "LIENTHONG_SIGNING_KEY", "LIENTHONG_INSECURE_DEV")


def _service_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """A deployed service's environment: a broker URL (nothing answers there), no trust settings."""
    env = {k: v for k, v in os.environ.items() if k not in TRUST_VARIABLES and not k.startswith("KAFKA_")}
    return env | {
        "KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{free_port()}",
        "LIENTHONG_PORT": str(free_port()),
        "LIENTHONG_DATA_DIR": str(tmp_path / "data"),
        "LIENTHONG_DATABASE_URL": "",
        "LIENTHONG_AGENCY": "land",
        **extra,
    }


def _start(module: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(
            [sys.executable, "-m", module],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=REFUSAL_WITHIN_S,
            check=False,
        )
    except subprocess.TimeoutExpired as started:
        raise AssertionError(f"{module} started instead of refusing: {started.stderr!r}") from None


def _one_sentence(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, f"one sentence on stderr, not: {stderr!r}"
    return lines[0]


def test_the_router_with_a_broker_but_no_trust_store_refuses_to_start(tmp_path: Path) -> None:
    private, trusted = tmp_path / "private", tmp_path / "trusted"
    router_key = keys.new_key("router", private, trusted)
    del router_key
    started = _start(
        "services.router",
        _service_env(tmp_path, LIENTHONG_SIGNING_KEY=str(keys.private_key_path(private, "router"))),
    )
    assert started.returncode != 0
    sentence = _one_sentence(started.stderr)
    assert sentence.startswith("router refuses to start: no trust store (LIENTHONG_TRUST_STORE)"), sentence
    assert "LIENTHONG_INSECURE_DEV=1" in sentence, "it names the way out for development"


def test_the_intake_without_a_signing_key_refuses_to_start(tmp_path: Path) -> None:
    started = _start("services.intake", _service_env(tmp_path))
    assert started.returncode != 0
    sentence = _one_sentence(started.stderr)
    assert sentence.startswith("intake refuses to start: no signing key (LIENTHONG_SIGNING_KEY)"), sentence


def test_a_connector_with_another_producers_key_refuses_to_start(tmp_path: Path) -> None:
    private, trusted = tmp_path / "private", tmp_path / "trusted"
    keys.new_key("connector.tax", private, trusted)
    env = _service_env(
        tmp_path,
        LIENTHONG_SIGNING_KEY=str(keys.private_key_path(private, "connector.tax")),
        LIENTHONG_TRUST_STORE=str(trusted),
    )
    started = _start("services.connector", env)
    assert started.returncode != 0
    sentence = _one_sentence(started.stderr)
    assert sentence.startswith("connector-land refuses to start: its signing key"), sentence
    assert "'connector.tax'" in sentence and "'connector.land'" in sentence


@pytest.mark.parametrize("module", ["services.tracker", "services.router", "services.intake"])
def test_the_development_switch_lets_a_service_start_and_says_so(module: str, tmp_path: Path) -> None:
    port = free_port()
    env = _service_env(tmp_path, LIENTHONG_INSECURE_DEV="1", LIENTHONG_PORT=str(port))
    process = subprocess.Popen(
        [sys.executable, "-m", module], cwd=REPO, env=env, stderr=subprocess.PIPE, text=True
    )
    try:
        assert process.stderr is not None
        first = process.stderr.readline()  # the warning comes before anything else
        # A JSON line like every other (stderr is not a terminal), also for what is said at start.
        message = json.loads(first)["message"]
        assert "INSECURE" in message and "LIENTHONG_INSECURE_DEV" in message, first
        assert "never in a deployment" in message, first
        if module == "services.intake":  # and the warnings of building the app, no issuer given
            assert "not authenticated" in json.loads(process.stderr.readline())["message"]
    finally:
        process.terminate()
        process.wait(timeout=30)


# --- `lienthong run` is secured by default ----------------------------------------------------------


def test_lienthong_run_asks_for_the_secured_broker_unless_told_insecure(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    asked: list[RunOptions] = []

    def fake_run(options: RunOptions, echo: Any) -> None:
        asked.append(options)

    monkeypatch.setattr(run_module, "run", fake_run)
    assert CliRunner().invoke(lienthong, ["run", "--duration", "1"]).exit_code == 0
    assert CliRunner().invoke(lienthong, ["run", "--insecure"]).exit_code == 0
    assert [options.secure for options in asked] == [True, False]
    assert RunOptions(work_dir=Path("w")).secure, "secured by default, also for code that runs the stack"


def test_the_principals_passwords_are_drawn_once_and_kept_private(tmp_path: Path) -> None:
    first, drawn = principal_passwords(tmp_path)
    again, drawn_again = principal_passwords(tmp_path)
    assert drawn and not drawn_again and first == again
    assert {"intake", "router", "tracker", "connector-land", "connector-tax"} <= set(first)
    assert stat.S_IMODE((tmp_path / PASSWORDS_FILE).stat().st_mode) == 0o600


@pytest.fixture(scope="module")
def secured_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    """The stack as `lienthong run` starts it: its broker from run_kafka with the run's defaults (the
    tests' own PLAINTEXT broker is not used), every agency, on free ports."""
    work_dir = tmp_path_factory.mktemp("secure-default")
    with contextlib.ExitStack() as running:
        with pytest.MonkeyPatch.context() as env:
            env.delenv("KAFKA_BOOTSTRAP_SERVERS", raising=False)  # as a newcomer's shell
            kafka, access = running.enter_context(run_kafka(work_dir))
        assert access is not None, "lienthong run secures its broker by default"
        stack = LocalStack(
            kafka.bootstrap_servers,
            work_dir / "stack",
            agencies=DEFAULT_AGENCIES,
            ports=StackPorts.free(DEFAULT_AGENCIES),
            access=access,
            sign_in=False,  # the broker's security is the point here; sign-in has tests of its own
        )
        running.enter_context(stack)
        yield stack


@pytest.fixture
async def secured_traffic(secured_stack: LocalStack) -> AsyncIterator[Traffic]:
    async with sample_traffic(secured_stack) as generator:
        yield generator


@pytest.mark.kafka
def test_every_service_connects_as_its_own_principal_with_its_own_key(secured_stack: LocalStack) -> None:
    for kind in secured_stack.kinds():
        env = secured_stack.processes[kind].env
        assert env["LIENTHONG_SECURITY_PROTOCOL"] == "SASL_PLAINTEXT", kind
        assert env["LIENTHONG_SASL_USERNAME"] == kind
        assert env["LIENTHONG_INSECURE_DEV"] == "0"
        assert env["LIENTHONG_TRUST_STORE"] == str(secured_stack.trust_store)
        if kind != "tracker":  # the tracker emits no events of its own
            assert Path(env["LIENTHONG_SIGNING_KEY"]).exists(), kind


@pytest.mark.kafka
async def test_the_land_connector_is_refused_when_it_reads_tax_requests(secured_stack: LocalStack) -> None:
    land = {
        "bootstrap_servers": secured_stack.bootstrap_servers,
        **secured_stack.client_options("connector-land"),
    }
    own = TopicPartition(requests_topic(Agency.LAND), 0)
    checker = AIOKafkaConsumer(enable_auto_commit=False, **land)
    await checker.start()
    try:
        assert (await checker.end_offsets([own]))[own] >= 0, "its credentials work on its own topic"
    finally:
        await checker.stop()

    # Its own consumer groups' prefix, so that the running land connector's group is left alone.
    reader = AIOKafkaConsumer(
        requests_topic(Agency.TAX), group_id="connector-land.probe", auto_offset_reset="earliest", **land
    )
    try:
        with pytest.raises(TopicAuthorizationFailedError):
            await reader.start()
            await asyncio.wait_for(reader.getone(), 20)
    finally:
        await reader.stop()

    producer = AIOKafkaProducer(**land)
    await producer.start()
    try:
        with pytest.raises(TopicAuthorizationFailedError):
            await producer.send_and_wait(requests_topic(Agency.TAX), b"a forged tax request", key=b"d")
    finally:
        await producer.stop()


def _record(event: Event, name: str) -> tuple[bytes, bytes, list[tuple[str, bytes]]]:
    headers = event_headers(event) | {"test-case": name}
    if event.signature is not None and event.key_id is not None:
        headers |= {CE_SIGNATURE: event.signature, CE_KEYID: event.key_id}
    return event_key(event), event_value(event), [(k, v.encode()) for k, v in headers.items()]


@pytest.mark.kafka
async def test_unsigned_and_unknown_producers_records_are_dead_lettered_and_dossiers_still_complete(
    secured_stack: LocalStack, secured_traffic: Traffic, tmp_path: Path
) -> None:
    stranger = keys.new_key("stranger", tmp_path / "private", tmp_path / "trusted")  # never trusted
    bad = {
        "unsigned": _record(dossier_received("9.900005"), "unsigned"),
        "unknown producer": _record(
            Signer(stranger).sign(dossier_received("9.900005").model_copy(update={"producer": "stranger"})),
            "unknown producer",
        ),
    }
    topic = DOSSIER_RECEIVED  # the run's topics have no prefix
    # Written by a principal the ACLs let write there: the intake's.
    producer = AIOKafkaProducer(
        bootstrap_servers=secured_stack.bootstrap_servers, **secured_stack.client_options("intake")
    )
    await producer.start()
    try:
        for key, value, headers in bad.values():
            await producer.send_and_wait(topic, value, key=key, headers=headers)
    finally:
        await producer.stop()
    healthy = await secured_traffic.marriage()

    async def letters() -> dict[str, dead_letter_replay.DeadLetter]:
        found = await dead_letter_replay.read_dead_letters(
            secured_stack.bootstrap_servers, "", **secured_stack.client_options()
        )
        return {x.headers["test-case"]: x for x in found if "test-case" in x.headers}

    async def all_dead_lettered() -> bool:
        return set(bad) <= set(await letters())

    await wait_for(all_dead_lettered, 60, "dead-lettering of the unsigned and the unknown producer's records")
    found = await letters()
    for name, (_key, value, _headers) in bad.items():
        letter = found[name]
        assert letter.error_class == "signature", (name, letter.error_class, letter.message)
        assert letter.headers[dead_letter_records.ORIGINAL_TOPIC] == topic
        assert letter.value == value
    assert "unsigned" in found["unsigned"].message
    assert "unknown key" in found["unknown producer"].message

    details = await wait_until_closed(secured_traffic, secured_stack.tracker_url, [healthy], within_s=90)
    assert details[healthy.dossier_id]["result"] == "completed", "signed traffic flows under the ACLs"
    async with httpx.AsyncClient(timeout=5.0) as http:
        for name, (key, *_rest) in bad.items():
            answer = await http.get(f"{secured_stack.tracker_url}/dossiers/{key.decode()}")
            assert answer.status_code == 404, f"the {name} record reached a handler"
    crashed = [name for name, process in secured_stack.processes.items() if not process.is_running()]
    assert not crashed, crashed


@pytest.mark.kafka
async def test_the_trackers_replay_button_works_under_the_trackers_acls(
    secured_stack: LocalStack, secured_traffic: Traffic
) -> None:
    # An answer that does not fit the outcome contract: the handoff is dead-lettered after one call.
    await set_faults(secured_stack, Agency.CIVIL_STATUS, reply_patch={"so_dang_ky": "KH-" + "9" * 300})
    try:
        marriage = await secured_traffic.marriage()

        async def stuck() -> bool:
            async with httpx.AsyncClient(timeout=5.0) as http:
                answer = await http.get(f"{secured_stack.tracker_url}/dossiers/{marriage.dossier_id}")
            return answer.status_code == 200 and any(leg["stuck"] for leg in answer.json()["legs"])

        await wait_for(stuck, 60, "the marriage's civil-status handoff dead-lettered")
    finally:
        await clear_faults(secured_stack, Agency.CIVIL_STATUS)

    async with httpx.AsyncClient(timeout=30.0, base_url=secured_stack.tracker_url) as http:
        answer = await http.post(
            f"/giam-sat/ho-so/{marriage.dossier_id}/replay/civil_status?lang=en",
            data={"reason": "the civil-status registry is back"},
        )
    assert answer.status_code == 303
    location = answer.headers["location"]
    assert "replayed=1" in location and "error" not in location, location
    (detail,) = (
        await wait_until_closed(secured_traffic, secured_stack.tracker_url, [marriage], within_s=90)
    ).values()
    assert detail["result"] == "completed", "the replayed handoff went through"

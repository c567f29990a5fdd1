"""The CLI's operator commands take a staff token from the real provider (client credentials for a
script here), check its role, and record who acted and why: the replay reaches the handoff log with
the service account's subject. Without a token, or with one lacking the role, they refuse."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Mapping
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer
from typer.testing import CliRunner, Result

from schemas.events import OperatorActionRecorded, parse_event
from schemas.topics import OPERATOR_ACTIONS, all_topics, requests_topic
from services.runtime.auth.bearer import BearerVerifier
from services.runtime.auth.staff import STAFF_AUDIENCE
from services.runtime.failures import dead_letter_records
from services.runtime.failures.dead_letter_replay import read_records
from services.runtime.shell.topics_admin import ensure_topics
from services.runtime.trust import keys
from services.runtime.trust.header_signing import REPLAY_TOOL
from services.runtime.trust.signing import Verifier
from services.tools.cli.audit_cmd import app as audit_cli
from services.tools.cli.dlq_cmd import LOCAL_ADMIN
from services.tools.cli.dlq_cmd import app as dlq_cli
from services.tools.stack.discovery import StackState, recorded
from services.tracker import projection
from services.tracker.store import TrackerStore
from tests.oidc_fixtures import OidcProvider
from tests.unit.test_audit_trail import log

pytestmark = pytest.mark.kafka
AUTOMATION = "operations-automation"


async def dead_letter(bootstrap: str, prefix: str, dossier: uuid.UUID) -> str:
    """A dead letter of the tax agency's requests for ``dossier``; its id as `dlq list` prints it."""
    topic = requests_topic("tax", prefix)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        sent = await producer.send_and_wait(
            topic + ".dlq",
            b"{}",
            key=str(dossier).encode(),
            headers=[(dead_letter_records.ORIGINAL_TOPIC, topic.encode())],
        )
    finally:
        await producer.stop()
    return f"{topic}.dlq/{sent.partition}/{sent.offset}"


async def cli(command: object, args: list[str], env: Mapping[str, str | None]) -> Result:
    """A command of ``lienthong`` (in a thread: it runs its own event loop)."""
    result = await asyncio.to_thread(CliRunner().invoke, command, args, env=env)  # type: ignore[arg-type]
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    return result


async def test_a_replay_with_a_token_is_in_the_log_with_the_service_accounts_subject_and_no_token_is_refused(
    oidc_provider: OidcProvider, kafka_bootstrap: str, topic_prefix: str, tmp_path: Path
) -> None:
    await ensure_topics(kafka_bootstrap, all_topics(topic_prefix))
    private, trusted = tmp_path / "keys" / "private", tmp_path / "keys" / "trusted"
    keys.new_key(REPLAY_TOOL, private, trusted)
    dossier = uuid.uuid4()
    letter = await dead_letter(kafka_bootstrap, topic_prefix, dossier)
    where = ["--bootstrap-servers", kafka_bootstrap, "--prefix", topic_prefix]
    replay = ["replay", letter, *where, "--signing-key", str(keys.private_key_path(private, REPLAY_TOOL))]
    # No stored token, no discovered stack: only what each case gives.
    base = {
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
        "LIENTHONG_OIDC_ISSUER": oidc_provider.issuer,
        "LIENTHONG_SECURITY_PROTOCOL": "PLAINTEXT",
        "LIENTHONG_STACK_STATE_DIR": str(tmp_path / "state"),
        "LIENTHONG_INSECURE_DEV": "0",
        "LIENTHONG_TOKEN": "",
        "LIENTHONG_OIDC_CLIENT_ID": "",
        "LIENTHONG_OIDC_CLIENT_SECRET": "",
    }
    script = base | {
        "LIENTHONG_OIDC_CLIENT_ID": AUTOMATION,
        "LIENTHONG_OIDC_CLIENT_SECRET": oidc_provider.secrets[AUTOMATION],
    }

    refused = await cli(dlq_cli, [*replay, "--reason", "tax is back"], base)
    assert refused.exit_code == 1, refused.output
    assert "needs a staff token with the operator role" in refused.output
    unexplained = await cli(dlq_cli, replay, script)
    assert unexplained.exit_code == 2 and "needs --reason" in unexplained.output, unexplained.output
    intake_token = base | {"LIENTHONG_TOKEN": oidc_provider.client_token("counter-app")}
    wrong = await cli(dlq_cli, [*replay, "--reason", "tax is back"], intake_token)
    assert wrong.exit_code == 1 and "is refused" in wrong.output, wrong.output
    not_auditor = await cli(dlq_cli, ["show", letter, *where, "--unmask", "--reason", "look"], script)
    assert not_auditor.exit_code == 1 and "needs the auditor role" in not_auditor.output, not_auditor.output

    replayed = await cli(dlq_cli, [*replay, "--reason", "tax is back"], script)
    assert replayed.exit_code == 0, replayed.output
    assert "replayed 1" in replayed.output

    # What the tracker appends: the recorded action, signed by the dead-letter tool.
    subject = (await BearerVerifier(oidc_provider.issuer, STAFF_AUDIENCE).verify(
        oidc_provider.client_token(AUTOMATION)
    )).subject  # fmt: skip
    specs = [spec for spec in all_topics(topic_prefix) if spec.name == topic_prefix + OPERATOR_ACTIONS]
    records = await read_records(kafka_bootstrap, specs)
    assert len(records) == 1
    event = parse_event(records[0].value, {k: v for k, v in records[0].headers})
    assert isinstance(event, OperatorActionRecorded)
    Verifier(trusted).verify(event)
    assert (event.producer, event.data.subject, event.data.targets) == (REPLAY_TOOL, subject, [letter])
    store = TrackerStore(tmp_path / "tracker.db")
    effect = await projection.on_operator_action(event, None)  # type: ignore[arg-type]
    assert effect.write is not None
    log(store, event)
    store.conn.close()
    shown = await cli(audit_cli, ["show", str(dossier), "--db", str(tmp_path / "tracker.db")], base)
    assert shown.exit_code == 0, shown.output
    assert f"replay by {subject} via cli" in shown.output and "reason: 'tax is back'" in shown.output


async def test_without_a_token_on_the_local_stack_the_replay_acts_as_its_admin_and_says_so(
    kafka_bootstrap: str, topic_prefix: str, tmp_path: Path
) -> None:
    await ensure_topics(kafka_bootstrap, all_topics(topic_prefix))
    private, trusted = tmp_path / "keys" / "private", tmp_path / "keys" / "trusted"
    keys.new_key(REPLAY_TOOL, private, trusted)
    letter = await dead_letter(kafka_bootstrap, topic_prefix, uuid.uuid4())
    state = StackState.of_this_process(
        kafka_bootstrap, topic_prefix, tmp_path, tmp_path / "data", "http://127.0.0.1:1"
    )
    env: dict[str, str | None] = {
        "LIENTHONG_STACK_STATE_DIR": str(tmp_path / "state"),
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
        "LIENTHONG_INSECURE_DEV": "0",
        "LIENTHONG_OIDC_ISSUER": None,
        "LIENTHONG_TOKEN": None,
        "LIENTHONG_OIDC_CLIENT_ID": None,
        "KAFKA_BOOTSTRAP_SERVERS": None,
        "LIENTHONG_BOOTSTRAP_SERVERS": None,
        "LIENTHONG_TOPIC_PREFIX": None,
    }
    key = str(keys.private_key_path(private, REPLAY_TOOL))
    with recorded(state, tmp_path / "state"):
        replayed = await cli(dlq_cli, ["replay", letter, "--signing-key", key, "--reason", "trying"], env)
    assert replayed.exit_code == 0, replayed.output
    assert "acting as the local stack's admin" in replayed.output and "replayed 1" in replayed.output
    specs = [spec for spec in all_topics(topic_prefix) if spec.name == topic_prefix + OPERATOR_ACTIONS]
    (record,) = await read_records(kafka_bootstrap, specs)
    event = parse_event(record.value, dict(record.headers))
    assert isinstance(event, OperatorActionRecorded) and event.data.subject == LOCAL_ADMIN

"""On a running stack: the tracker appends a recorded operator action to its handoff log with the
person's subject and reason (`lienthong audit show` prints it), dead-letters one recorded by a
connector (class authorization, no entry), and anchors its head, which `lienthong audit verify`
then finds and checks."""

from __future__ import annotations

import asyncio
import sqlite3
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from schemas.topics import OPERATOR_ACTIONS
from services.runtime.failures import dead_letter_replay
from services.runtime.failures.operator_actions import OperatorAction, record_action
from services.runtime.trust.keys import private_key_path
from services.runtime.trust.signing import Signer
from services.tools.cli.audit_cmd import app as audit_cli
from services.tools.stack.stack import LocalStack
from services.tracker import anchor
from tests.stack_helpers import running_stack, wait_for

pytestmark = pytest.mark.kafka


@pytest.fixture(scope="module")
def stack(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    with running_stack(
        kafka_bootstrap, tmp_path_factory, "auditstack", LIENTHONG_AUDIT_ANCHOR_INTERVAL_S="1"
    ) as running:
        yield running


async def cli(args: list[str], env: dict[str, str]) -> Result:
    result = await asyncio.to_thread(CliRunner().invoke, audit_cli, args, env=env)
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    return result


def copy_of(stack: LocalStack, into: Path) -> Path:
    with sqlite3.connect(stack.work_dir / "data" / "tracker.db") as source, sqlite3.connect(into) as copy:
        source.backup(copy)
    return into


async def test_the_tracker_logs_who_did_it_refuses_an_outsiders_action_and_anchors_its_head(
    stack: LocalStack, tmp_path: Path
) -> None:
    dossier = str(uuid.uuid4())
    action = OperatorAction(
        action="replay",  # type: ignore[arg-type]
        subject="sub-of-operator1",
        reason="tax service back after the outage",
        via="cli",  # type: ignore[arg-type]
        dossier_id=dossier,
        targets=["x.handoff.tax.requested.dlq/0/1"],
        at=datetime.now(UTC),
    )
    tool = Signer.from_file(stack.replay_key)
    await record_action(stack.bootstrap_servers, action, prefix=stack.topic_prefix, signer=tool)
    land = Signer.from_file(private_key_path(stack.private_keys_dir, "connector.land"))
    forged = action.model_copy(update={"subject": "sub-of-nobody"})
    await record_action(stack.bootstrap_servers, forged, prefix=stack.topic_prefix, signer=land)

    env = {"LIENTHONG_DATABASE_URL": ""}

    async def logged() -> bool:
        shown = await cli(["show", dossier, "--db", str(copy_of(stack, tmp_path / "show.db"))], env)
        return shown.exit_code == 0 and "sub-of-operator1" in shown.output

    await wait_for(logged, 60, "the operator action in the handoff log")
    shown = await cli(["show", dossier, "--db", str(tmp_path / "show.db")], env)
    assert "replay by sub-of-operator1 via cli (dlq-tool)" in shown.output, shown.output
    assert "reason: 'tax service back after the outage'" in shown.output
    assert "sub-of-nobody" not in shown.output

    async def refused() -> bool:
        letters = await dead_letter_replay.read_dead_letters(stack.bootstrap_servers, stack.topic_prefix)
        return any(
            letter.topic == stack.topic_prefix + OPERATOR_ACTIONS + ".dlq"
            and letter.error_class == "authorization"
            for letter in letters
        )

    await wait_for(refused, 60, "the connector's operator action dead-lettered as authorization")

    async def anchored() -> bool:
        head = await anchor.read_anchored_head(stack.bootstrap_servers, prefix=stack.topic_prefix)
        return head is not None and head.seq >= 1

    await wait_for(anchored, 60, "the tracker's anchored head")
    where = ["--bootstrap-servers", stack.bootstrap_servers, "--prefix", stack.topic_prefix]
    trust = {"LIENTHONG_TRUST_STORE": str(stack.trust_store), "LIENTHONG_SECURITY_PROTOCOL": "PLAINTEXT"}

    # Nothing else happens on this stack: the head anchored is the head of the copy taken now.
    db = copy_of(stack, tmp_path / "verify.db")
    result = await cli(["verify", "--db", str(db), *where], env | trust)
    assert result.exit_code == 0 and "holds the anchored head" in result.output, result.output

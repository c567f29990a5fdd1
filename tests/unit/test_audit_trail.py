"""Who did it, in the chain: operator actions are entries of the handoff log with the person's subject
and reason; older entries and older databases still verify; only the operator tools record actions."""

from __future__ import annotations

import asyncio
import hashlib
import json
import sqlite3
import uuid
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest
from typer.testing import CliRunner

from schemas.authority import NotAnOperatorTool
from schemas.envelope import Event
from schemas.events import HandoffRequested, OperatorActionRecorded, parse_event
from services.runtime.failures.operator_actions import OperatorAction, operator_action_event
from services.runtime.failures.table import FailureClass, classify
from services.runtime.storage.database import Connection, current_version, migrate
from services.tools.cli.audit_cmd import app as audit_cli
from services.tracker import audit, projection
from services.tracker.store import TrackerStore
from tests.factories import outcome_for
from tests.unit.test_events import example

AT = datetime(2026, 11, 23, 3, 0, tzinfo=UTC)


def request() -> HandoffRequested:
    event = parse_event(json.dumps(example(HandoffRequested)).encode())
    assert isinstance(event, HandoffRequested)
    return event.model_copy(update={"event_id": uuid.uuid4()})


def action(
    dossier_id: str | None, *, subject: str = "sub-of-operator1", producer: str = "dlq-tool"
) -> OperatorActionRecorded:
    data = OperatorAction(
        action="replay",  # type: ignore[arg-type]  # the page passes text
        subject=subject,
        reason="tax service is back up",
        via="cli",  # type: ignore[arg-type]
        dossier_id=dossier_id,
        targets=["t.handoff.tax.requested.dlq/0/7"],
        at=AT,
    )
    return operator_action_event(data, producer=producer)


def log(store: TrackerStore, event: Event) -> None:
    """What the tracker commits for a handoff event or an operator action: its entry in the log."""

    def append(conn: Connection) -> None:
        audit.append(conn, event)

    store.commit(str(event.event_id), [], append)


def chain_of(store: TrackerStore, handoffs: int) -> HandoffRequested:
    first = request()
    for index in range(handoffs):
        event = first if index == 0 else request().model_copy(update={"dossier_id": first.dossier_id})
        log(store, event)
        log(store, outcome_for(event, "completed"))
    return first


def test_an_action_is_an_entry_with_subject_and_reason_and_the_chain_verifies(tmp_path: Path) -> None:
    store = TrackerStore(tmp_path / "tracker.db")
    first = chain_of(store, 2)
    dossier = str(first.dossier_id)
    log(store, action(dossier))
    log(store, action(None, subject="sub-of-auditor1"))
    verdict = audit.verify(store.conn)
    assert verdict.ok and verdict.checked == 6, verdict.problem

    actions = audit.entries(store.conn, dossier, actions_only=True)
    assert [(e.subject, e.reason, e.action) for e in actions] == [
        ("sub-of-operator1", "tax service is back up", "replay")
    ]
    # The subject and reason are in the hash: editing either breaks the chain at that entry.
    store.conn.execute("UPDATE handoff_log_actions SET subject = 'someone-else' WHERE seq = 5")
    broken = audit.verify(store.conn)
    assert not broken.ok and "entry 5" in broken.problem and "edited" in broken.problem


def test_a_handoff_entry_hashes_as_before_the_new_columns() -> None:
    conn = sqlite3.connect(":memory:")
    conn.executescript(audit.SCHEMA + audit.SCHEMA_V2)
    entry = audit.append(conn, request())
    assert entry is not None
    before = asdict(entry)
    for name in ("hash", "subject", "reason", "targets"):
        del before[name]
    assert entry.hash == hashlib.sha256(orjson.dumps(before, option=orjson.OPT_SORT_KEYS)).hexdigest()


def test_a_version_1_database_migrates_and_its_chain_still_verifies(tmp_path: Path) -> None:
    path = tmp_path / "tracker.db"
    old = sqlite3.connect(path, isolation_level=None)
    assert migrate(old, TrackerStore.migrations()[:1]) == [1]
    draft = audit.Entry(
        1, "e1", "t", "d", "h", "router", "land", "a", None, "x", None, None, audit.GENESIS, ""
    )
    legacy = audit.Entry(**(asdict(draft) | {"hash": draft.computed_hash()}))
    old.execute(
        "INSERT INTO handoff_log VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        tuple(asdict(legacy).values())[:14],
    )
    old.close()

    store = TrackerStore(path)
    assert current_version(store.conn) == 2
    log(store, action(None))
    verdict = audit.verify(store.conn)
    assert verdict.ok and verdict.checked == 2, verdict.problem


def test_only_the_operator_tools_record_actions() -> None:
    async def refused() -> None:
        await projection.on_operator_action(action(None, producer="connector.land"), None)  # type: ignore[arg-type]

    with pytest.raises(NotAnOperatorTool) as raised:
        asyncio.run(refused())
    assert classify(raised.value).failure_class is FailureClass.AUTHORIZATION
    for tool in ("tracker", "dlq-tool"):
        effect = asyncio.run(projection.on_operator_action(action(None, producer=tool), None))  # type: ignore[arg-type]
        assert effect.write is not None


def test_audit_show_prints_who_did_it_and_why(tmp_path: Path) -> None:
    store = TrackerStore(tmp_path / "tracker.db")
    first = chain_of(store, 1)
    dossier = str(first.dossier_id)
    log(store, action(dossier))
    log(store, action(None, subject="sub-of-auditor1"))
    store.conn.close()
    cli = CliRunner()

    shown = cli.invoke(audit_cli, ["show", dossier, "--db", str(tmp_path / "tracker.db")])
    assert shown.exit_code == 0, shown.output
    lines = shown.output.strip().splitlines()
    assert len(lines) == 3, shown.output
    assert "replay by sub-of-operator1 via cli" in lines[2]
    assert "reason: 'tax service is back up'" in lines[2]
    assert "t.handoff.tax.requested.dlq/0/7" in lines[2]

    listed = cli.invoke(audit_cli, ["show", "--actions", "--db", str(tmp_path / "tracker.db")])
    assert listed.exit_code == 0, listed.output
    subjects = [line.split(" by ")[1].split()[0] for line in listed.output.strip().splitlines()]
    assert subjects == ["sub-of-operator1", "sub-of-auditor1"]

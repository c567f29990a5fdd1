"""The handoff log: verified intact on a real run's log, broken (and the entry named) after one byte of
one entry changes; removals and reorderings are found too."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from schemas.events import HandoffRequested, parse_event
from services.runtime.storage.database import Connection
from services.tools.stack.stack import LocalStack
from services.tools.stack.traffic import Traffic
from services.tracker import audit
from tests.factories import outcome_for
from tests.stack_helpers import wait_until_closed
from tests.unit.test_events import example


async def lienthong(*args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "services.tools.cli", *args]
    return await asyncio.to_thread(
        subprocess.run, command, capture_output=True, text=True, timeout=60, check=False
    )


def snapshot(stack: LocalStack, into: Path) -> Path:
    """A consistent copy of the running tracker's database."""
    source = sqlite3.connect(stack.work_dir / "data" / "tracker.db")
    copy = sqlite3.connect(into)
    source.backup(copy)
    source.close()
    copy.close()
    return into


@pytest.mark.kafka
async def test_verify_passes_on_a_real_run_and_names_the_entry_changed_by_one_byte(
    stack: LocalStack, traffic: Traffic, tmp_path: Path
) -> None:
    dossiers = [await traffic.land_transfer(), await traffic.marriage()]
    await wait_until_closed(traffic, stack.tracker_url, dossiers, within_s=90)
    db = snapshot(stack, tmp_path / "tracker.db")

    # A copy: the running tracker may anchor a newer head than the copy holds (see test_audit_anchor).
    verified = await lienthong("audit", "verify", "--db", str(db), "--no-anchor")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert "intact" in verified.stdout

    shown = await lienthong("audit", "show", dossiers[0].dossier_id, "--db", str(db))
    assert shown.returncode == 0, shown.stderr
    assert "router → land" in shown.stdout and "connector.land → router" in shown.stdout, shown.stdout
    assert "signed by router-" in shown.stdout and "signed by connector.land-" in shown.stdout

    conn = sqlite3.connect(db)
    count = conn.execute("SELECT count(*) FROM handoff_log").fetchone()[0]
    assert count >= 4
    seq, event_id, producer = conn.execute(
        "SELECT seq, event_id, from_party FROM handoff_log WHERE seq = ?", (count // 2,)
    ).fetchone()
    conn.execute(  # one byte of one entry: the last letter of its producer
        "UPDATE handoff_log SET from_party = ? WHERE seq = ?",
        (producer[:-1] + chr(ord(producer[-1]) ^ 1), seq),
    )
    conn.commit()
    conn.close()
    broken = await lienthong("audit", "verify", "--db", str(db), "--no-anchor")
    assert broken.returncode == 1, broken.stdout
    assert f"entry {seq} (event {event_id}) was edited" in broken.stdout, broken.stdout


def _request() -> HandoffRequested:
    return parse_event(json.dumps(example(HandoffRequested)).encode())  # type: ignore[return-value]


def _bare_log() -> Connection:
    """A database holding only the log's table (in the tracker's, it is part of the store's schema)."""
    conn = sqlite3.connect(":memory:")
    conn.executescript(audit.SCHEMA + audit.SCHEMA_V2)
    return conn


def _log_of(count: int) -> Connection:
    conn = _bare_log()
    request = _request()
    for index in range(count):
        event = request if index % 2 == 0 else outcome_for(request, "completed")
        audit.append(conn, event.model_copy(update={"event_id": uuid.uuid4()}))
    return conn


def test_removed_and_reordered_entries_are_named_and_appends_are_idempotent() -> None:
    conn = _log_of(5)
    assert audit.verify(conn).ok
    conn.execute("DELETE FROM handoff_log WHERE seq = 3")
    verdict = audit.verify(conn)
    assert not verdict.ok and "entry 3 is missing" in verdict.problem

    conn = _log_of(5)
    # Swap entries 2 and 3 wholesale (content, prev_hash and hash), keeping the sequence numbers.
    rows = {r[0]: r[1:] for r in conn.execute("SELECT * FROM handoff_log WHERE seq IN (2, 3)")}
    conn.execute("DELETE FROM handoff_log WHERE seq IN (2, 3)")
    conn.execute(f"INSERT INTO handoff_log VALUES (2, {', '.join('?' * len(rows[3]))})", rows[3])
    conn.execute(f"INSERT INTO handoff_log VALUES (3, {', '.join('?' * len(rows[2]))})", rows[2])
    verdict = audit.verify(conn)
    assert not verdict.ok and "entry 2" in verdict.problem, verdict.problem

    conn = _bare_log()
    request = _request()
    assert audit.append(conn, request) is not None
    assert audit.append(conn, request) is None, "a redelivered event is logged once"
    assert audit.verify(conn).checked == 1

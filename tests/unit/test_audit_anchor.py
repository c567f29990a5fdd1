"""The handoff log's anchored head (real broker, real tracker store): `lienthong audit verify` passes on
the chain that was anchored, and fails, naming the anchored entry, on a database rebuilt from scratch
with a self-consistent chain, on a truncated one, and on a head signed by another key."""

from __future__ import annotations

import asyncio
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner

from services.runtime.shell.topics_admin import ensure_topics
from services.runtime.trust import keys
from services.runtime.trust.signing import Signer
from services.tools.cli.audit_cmd import app as audit_cli
from services.tracker import anchor, audit
from services.tracker.store import TrackerStore
from tests.unit.test_audit_trail import action, chain_of, log

AT = datetime(2026, 11, 23, 4, 0, tzinfo=UTC)

pytestmark = pytest.mark.kafka


async def verify(db: Path, bootstrap: str, prefix: str, trusted: Path) -> tuple[int, str]:
    """``lienthong audit verify`` (in a thread: the command runs its own event loop)."""
    result = await asyncio.to_thread(
        CliRunner().invoke,
        audit_cli,
        ["verify", "--db", str(db), "--bootstrap-servers", bootstrap, "--prefix", prefix],
        env={"LIENTHONG_TRUST_STORE": str(trusted), "LIENTHONG_SECURITY_PROTOCOL": "PLAINTEXT"},
    )
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    return result.exit_code, result.output


async def test_verify_checks_the_chain_against_its_anchored_head(
    kafka_bootstrap: str, topic_prefix: str, tmp_path: Path
) -> None:
    private, trusted = tmp_path / "keys" / "private", tmp_path / "keys" / "trusted"
    signer = Signer(keys.new_key("tracker", private, trusted))
    await ensure_topics(kafka_bootstrap, anchor.heads_topic(topic_prefix))
    db = tmp_path / "tracker.db"
    store = TrackerStore(db)
    first = chain_of(store, 3)
    log(store, action(str(first.dossier_id)))  # 7 entries, the last an operator's replay
    tracker = anchor.Anchor(lambda: store.conn, kafka_bootstrap, signer, prefix=topic_prefix, now=lambda: AT)

    code, out = await verify(db, kafka_bootstrap, topic_prefix, trusted)
    assert code == 0 and "no head anchored" in out, out
    head = await tracker.once()
    assert head is not None and head.seq == 7
    assert await tracker.once() is None, "an unchanged head is not published again"
    code, out = await verify(db, kafka_bootstrap, topic_prefix, trusted)
    assert code == 0 and "holds the anchored head (entry 7" in out, out
    intact = tmp_path / "intact.db"
    with sqlite3.connect(db) as source, sqlite3.connect(intact) as copy:
        source.backup(copy)

    # Truncated: the newest entries removed (what is left is a valid shorter chain).
    store.conn.execute("DELETE FROM handoff_log WHERE seq > 4")
    assert audit.verify(store.conn).ok
    code, out = await verify(db, kafka_bootstrap, topic_prefix, trusted)
    assert code == 1 and "anchored entry 7" in out and "has no entry 7" in out, out
    assert await tracker.once() is None, "a chain that lost the anchored head is never anchored"

    # Rebuilt from scratch: a new database with a self-consistent chain of its own, longer even.
    store.conn.close()
    db.unlink()
    rebuilt = TrackerStore(db)
    chain_of(rebuilt, 4)
    assert audit.verify(rebuilt.conn).ok
    code, out = await verify(db, kafka_bootstrap, topic_prefix, trusted)
    assert code == 1 and "anchored entry 7" in out and "another hash" in out, out
    rebuilt.conn.close()

    # The intact chain (a copy taken after the anchoring) still passes.
    code, out = await verify(intact, kafka_bootstrap, topic_prefix, trusted)
    assert code == 0 and "holds the anchored head" in out, out

    # A head signed by a key the trust store does not hold is not trusted.
    outsider = Signer(keys.new_key("tracker", tmp_path / "other" / "private", tmp_path / "other" / "trusted"))
    await anchor.publish_head(
        kafka_bootstrap, anchor.sign_head(outsider, 1, "0" * 64, AT), prefix=topic_prefix
    )
    code, out = await verify(intact, kafka_bootstrap, topic_prefix, trusted)
    assert code == 1 and "cannot be trusted" in out and "not in the trust store" in out, out

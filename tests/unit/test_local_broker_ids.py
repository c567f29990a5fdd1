"""The local broker's cluster id: a command line must never take it for an option."""

from __future__ import annotations

import subprocess
import uuid
from pathlib import Path

import pytest

from services.tools.localkafka import broker as broker_module
from services.tools.localkafka.broker import LocalKafkaBroker


def test_a_cluster_id_that_would_start_with_a_dash_is_drawn_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dashed = uuid.UUID(bytes=b"\xf8" + bytes(15))  # URL-safe base64 "-AAAA…": 0xF8 >> 2 is 62, "-"
    plain = uuid.UUID(bytes=b"\x10" + bytes(15))
    draws = iter([dashed, plain])
    monkeypatch.setattr(uuid, "uuid4", lambda: next(draws))

    cluster_id = LocalKafkaBroker(tmp_path)._cluster_id()

    assert cluster_id == "EAAAAAAAAAAAAAAAAAAAAA"
    assert LocalKafkaBroker(tmp_path)._cluster_id() == cluster_id  # kept for restarts


def test_the_format_command_passes_the_id_as_one_argument(tmp_path: Path) -> None:
    (tmp_path / "cluster.id").write_text("-starts-with-a-dash", encoding="utf-8")
    broker = LocalKafkaBroker(tmp_path)
    calls: list[list[str]] = []

    class Done:
        returncode = 0
        stdout = stderr = ""

    def run(command: list[str], **_: object) -> Done:
        calls.append(command)
        return Done()

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(subprocess, "run", run)
        patch.setattr(broker_module, "require_java", lambda: "java")
        broker._format_storage(tmp_path / "server.properties")

    assert "--cluster-id=-starts-with-a-dash" in calls[0]

"""`lienthong broker start --nodes 3` and `lienthong topics create` on it, as an operator would type them:
three JVMs, topics in three copies with two in sync, existing single-copy topics reported, and a
factor the cluster cannot give refused in one sentence."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import UnknownTopicOrPartitionError
from typer.testing import CliRunner

from schemas.topics import DOSSIER_RECEIVED, all_topics
from services.runtime.shell.replication import single_copy_topics
from services.runtime.shell.settings import KafkaSettings
from services.runtime.shell.topics_admin import describe_topic_configs, replication_factors
from services.tools.cli.topics_cmd import app as topics_app
from services.tools.localkafka.process import pid_alive
from tests.stack_helpers import wait_for

pytestmark = pytest.mark.kafka


def lienthong(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "services.tools.cli", *args]
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=300, check=False)


def free_port_run(length: int) -> int:
    """The first of ``length`` consecutive TCP ports on 127.0.0.1 that are all free now."""
    for _ in range(200):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            first = int(probe.getsockname()[1])
        if first + length > 65535:
            continue
        sockets = []
        try:
            for port in range(first, first + length):
                sock = socket.socket()
                sockets.append(sock)
                sock.bind(("127.0.0.1", port))
            return first
        except OSError:
            continue
        finally:
            for sock in sockets:
                sock.close()
    raise AssertionError(f"no {length} consecutive free ports")


async def factors(bootstrap: str, names: list[str], within_s: float = 30) -> dict[str, int]:
    """The replication factor of each named topic, once every broker's metadata has them all."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    deadline = time.monotonic() + within_s
    try:
        while True:
            found = replication_factors(await admin.describe_topics())
            if set(names) <= found.keys() or time.monotonic() > deadline:
                return {name: found.get(name, 0) for name in names}
            await asyncio.sleep(0.2)
    finally:
        await admin.close()


async def _configs_once_known(bootstrap: str, topic: str) -> dict[str, str]:
    found: dict[str, str] = {}

    async def known() -> bool:
        try:
            found.update((await describe_topic_configs(bootstrap, [topic]))[topic])
        except UnknownTopicOrPartitionError:
            return False
        return True

    await wait_for(known, within_s=30, what=f"every broker knows {topic}")
    return found


def test_three_node_cluster_and_replicated_topics(tmp_path: Path) -> None:
    env = {**os.environ, "LIENTHONG_BROKER_DIR": str(tmp_path / "broker")}
    env.pop("KAFKA_BOOTSTRAP_SERVERS", None)
    base = free_port_run(6)
    started = lienthong(
        "broker", "start", "--nodes", "3", "--port", str(base), "--controller-port", str(base + 1), env=env
    )
    state_file = tmp_path / "broker" / "state.json"
    pids = (
        [node["pid"] for node in json.loads(state_file.read_text())["nodes"]] if state_file.exists() else []
    )
    try:
        assert started.returncode == 0, started.stderr + started.stdout
        bootstrap = ",".join(f"127.0.0.1:{base + 2 * i}" for i in range(3))
        assert "cluster of 3 nodes running" in started.stdout and bootstrap in started.stdout
        assert len(pids) == 3 and all(pid_alive(pid) for pid in pids)

        status = lienthong("broker", "status", env=env)
        assert status.returncode == 0, status.stdout
        assert "3 nodes" in status.stdout and "reports 3 of 3 brokers" in status.stdout

        runner = CliRunner()
        create = ["create", "--bootstrap-servers", bootstrap]
        total = len(all_topics())

        # Topics made earlier in one copy are left as they are, and reported.
        single = runner.invoke(topics_app, [*create, "--prefix", "old.", "--replication-factor", "1"])
        assert single.exit_code == 0, single.output
        again = runner.invoke(topics_app, [*create, "--prefix", "old."])
        assert again.exit_code == 0, again.output
        assert f"created 0, already present {total}" in again.output
        assert f"warning: {total} existing topics keep fewer than 3 copies" in again.output
        row = next(line for line in again.output.splitlines() if line.startswith(f"old.{DOSSIER_RECEIVED} "))
        assert row.split()[1:] == ["6", "3", "2", "14d", "delete", "exists", "(rf", "1)"]

        # The default on three brokers: three copies, two in sync.
        fresh = runner.invoke(topics_app, [*create, "--prefix", "new."])
        assert fresh.exit_code == 0, fresh.output
        assert "replication factor 3, min.insync.replicas 2 (3 brokers)" in fresh.output
        assert "warning" not in fresh.output
        names = [s.name for prefix in ("new.", "old.") for s in all_topics(prefix)]
        on_cluster = asyncio.run(factors(bootstrap, names))
        assert {on_cluster[s.name] for s in all_topics("new.")} == {3}
        assert {on_cluster[s.name] for s in all_topics("old.")} == {1}
        # The broker asked may learn of a topic created on another one a moment later.
        configs = asyncio.run(_configs_once_known(bootstrap, f"new.{DOSSIER_RECEIVED}"))
        assert configs["min.insync.replicas"] == "2"

        refused = runner.invoke(topics_app, [*create, "--prefix", "more.", "--replication-factor", "4"])
        assert refused.exit_code == 1
        assert "A replication factor of 4 needs at least 4 brokers, but the cluster has 3" in refused.output

        # A service started on this cluster names only the single-copy topics it uses.
        used = [f"old.{DOSSIER_RECEIVED}", f"new.{DOSSIER_RECEIVED}"]
        assert asyncio.run(single_copy_topics(KafkaSettings(bootstrap_servers=bootstrap), used)) == used[:1]
    finally:
        stopped = lienthong("broker", "stop", env=env)
    assert stopped.returncode == 0 and "broker stopped" in stopped.stdout, stopped.stderr
    assert not [pid for pid in pids if pid_alive(pid)], "every node's JVM has ended"
    assert lienthong("broker", "status", env=env).returncode == 1

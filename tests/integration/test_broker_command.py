"""`lienthong broker start|status|stop` as a newcomer would type it."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from services.tools.localkafka.process import free_port, pid_alive

pytestmark = pytest.mark.kafka


def lienthong(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "services.tools.cli", *args]
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=180, check=False)


async def produce_and_consume(bootstrap: str) -> bytes:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        await producer.send_and_wait("broker-command-check", b"xin chao", key=b"k")
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(
        "broker-command-check", bootstrap_servers=bootstrap, auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
        return (await asyncio.wait_for(consumer.getone(), timeout=30)).value  # type: ignore[no-any-return]
    finally:
        await consumer.stop()


def test_start_status_stop_leaves_no_java_behind(tmp_path: Path) -> None:
    env = {**os.environ, "LIENTHONG_BROKER_DIR": str(tmp_path / "broker")}
    env.pop("KAFKA_BOOTSTRAP_SERVERS", None)
    port, controller_port = free_port(), free_port()
    started = lienthong(
        "broker", "start", "--port", str(port), "--controller-port", str(controller_port), env=env
    )
    assert started.returncode == 0, started.stderr
    state = (tmp_path / "broker" / "state.json").read_text()
    pid = int(state.split('"pid": ')[1].split(",")[0])
    try:
        status = lienthong("broker", "status", env=env)
        assert status.returncode == 0, status.stdout
        assert f"127.0.0.1:{port}" in status.stdout and "answers metadata" in status.stdout
        assert asyncio.run(produce_and_consume(f"127.0.0.1:{port}")) == b"xin chao"
    finally:
        stopped = lienthong("broker", "stop", env=env)
    assert stopped.returncode == 0 and "broker stopped" in stopped.stdout
    assert not pid_alive(pid)
    after = lienthong("broker", "status", env=env)
    assert after.returncode == 1

"""How the commands find their cluster: option, KAFKA_BOOTSTRAP_SERVERS, a running `lienthong run`, a
running `lienthong broker start`, 127.0.0.1:9092; and `topics create --dry-run` with no cluster at all.

Running processes stand in for the stack and the broker (a `sleep` child: a live pid with its own
start time); state files live in the test's folder.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from schemas.topics import all_topics
from services.tools.cli.main import app
from services.tools.localkafka.process import free_port
from services.tools.stack import discovery
from services.tools.stack.discovery import STATE_DIR_VARIABLE, StackState, choose_kafka, recorded


@pytest.fixture
def live_pid() -> Iterator[int]:
    child = subprocess.Popen(["sleep", "300"])
    try:
        yield child.pid
    finally:
        child.kill()
        child.wait()


@pytest.fixture
def dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A stacks folder of the test's own, and no `lienthong broker start` broker anywhere."""
    monkeypatch.setenv("LIENTHONG_BROKER_DIR", str(tmp_path / "broker"))
    monkeypatch.setenv(STATE_DIR_VARIABLE, str(tmp_path / "stacks"))
    return tmp_path / "stacks"


def _stack(
    pid: int, bootstrap: str = "127.0.0.1:45001", prefix: str = "", ticks: int | None = None
) -> StackState:
    return StackState(
        pid=pid,
        bootstrap_servers=bootstrap,
        topic_prefix=prefix,
        work_dir="var/run",
        data_dir="var/run/stack/data",
        tracker_url="http://127.0.0.1:45002",
        started_ticks=discovery.process_start_ticks(pid) if ticks is None else ticks,
    )


def _write(folder: Path, state: StackState) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{state.pid}.json"
    path.write_text(json.dumps(state.__dict__), encoding="utf-8")
    return path


def test_a_running_stack_is_found_and_named(dirs: Path, live_pid: int) -> None:
    _write(dirs, _stack(live_pid, prefix="t7."))
    chosen = choose_kafka(environ={}, stacks_dir=dirs)
    assert (chosen.bootstrap_servers, chosen.topic_prefix, chosen.source) == (
        "127.0.0.1:45001",
        "t7.",
        "stack",
    )
    assert chosen.notice is not None
    assert chosen.notice.startswith(
        f"using the running local stack's broker at 127.0.0.1:45001 (lienthong run, pid {live_pid}"
    )
    assert "topic prefix 't7.'" in chosen.notice


def test_a_stale_state_file_is_recognised_and_removed(dirs: Path, live_pid: int) -> None:
    ended = subprocess.Popen(["true"])
    ended.wait()
    gone = _write(dirs, _stack(ended.pid, bootstrap="127.0.0.1:45011"))
    # A pid that lives again in another process: same pid, a different start time.
    reused = _write(dirs, _stack(live_pid, bootstrap="127.0.0.1:45012", ticks=1))

    chosen = choose_kafka(environ={}, stacks_dir=dirs)

    assert (chosen.bootstrap_servers, chosen.source) == ("127.0.0.1:9092", "default")
    assert chosen.notice is not None and "no running lienthong run or lienthong broker start" in chosen.notice
    assert not gone.exists() and not reused.exists()


def test_the_environment_wins_over_a_running_stack(dirs: Path, live_pid: int) -> None:
    _write(dirs, _stack(live_pid, prefix="t7."))
    chosen = choose_kafka(environ={"KAFKA_BOOTSTRAP_SERVERS": "kafka-1:9092,kafka-2:9092"}, stacks_dir=dirs)
    assert (chosen.bootstrap_servers, chosen.topic_prefix, chosen.source, chosen.notice) == (
        "kafka-1:9092,kafka-2:9092",
        "",
        "environment",
        None,
    )


def test_the_option_wins_over_the_environment_and_the_stack(dirs: Path, live_pid: int) -> None:
    _write(dirs, _stack(live_pid, prefix="t7."))
    chosen = choose_kafka(
        "127.0.0.1:19092", environ={"KAFKA_BOOTSTRAP_SERVERS": "kafka-1:9092"}, stacks_dir=dirs
    )
    assert (chosen.bootstrap_servers, chosen.source, chosen.notice) == ("127.0.0.1:19092", "option", None)


def test_a_given_prefix_wins_over_the_stacks(dirs: Path, live_pid: int) -> None:
    _write(dirs, _stack(live_pid, prefix="t7."))
    assert choose_kafka(topic_prefix="", environ={}, stacks_dir=dirs).topic_prefix == ""
    assert choose_kafka(environ={"LIENTHONG_TOPIC_PREFIX": "prod."}, stacks_dir=dirs).topic_prefix == "prod."


def _ticks_now() -> int:
    uptime_s = float(Path("/proc/uptime").read_text().split()[0])
    return int(uptime_s * os.sysconf("SC_CLK_TCK"))


def test_the_newest_of_several_stacks_is_used_and_said(dirs: Path, live_pid: int) -> None:
    older = discovery.process_start_ticks(live_pid)
    assert older is not None
    deadline = time.monotonic() + 5
    while _ticks_now() <= older + 1 and time.monotonic() < deadline:  # start times count in ticks
        time.sleep(0.01)
    newer = subprocess.Popen(["sleep", "300"])
    try:
        _write(dirs, _stack(live_pid, bootstrap="127.0.0.1:45021"))
        _write(dirs, _stack(newer.pid, bootstrap="127.0.0.1:45022"))
        chosen = choose_kafka(environ={}, stacks_dir=dirs)
    finally:
        newer.kill()
        newer.wait()
    assert chosen.bootstrap_servers == "127.0.0.1:45022"
    assert chosen.notice is not None and "2 stacks run, this is the newest" in chosen.notice


def test_a_running_broker_daemon_comes_after_the_stack(dirs: Path, live_pid: int, tmp_path: Path) -> None:
    broker_dir = tmp_path / "broker"
    broker_dir.mkdir()
    (broker_dir / "state.json").write_text(
        json.dumps(
            {"pid": live_pid, "port": 19192, "controller_port": 19193, "work_dir": "w", "version": "4.1.1"}
        ),
        encoding="utf-8",
    )
    chosen = choose_kafka(environ={}, stacks_dir=dirs)
    assert (chosen.bootstrap_servers, chosen.source) == ("127.0.0.1:19192", "daemon")
    assert chosen.notice == (
        f"using the running local broker at 127.0.0.1:19192 (lienthong broker start, pid {live_pid})"
    )

    _write(dirs, _stack(live_pid))
    assert choose_kafka(environ={}, stacks_dir=dirs).source == "stack"


def test_the_state_file_lives_only_while_the_run_does(dirs: Path) -> None:
    state = StackState.of_this_process(
        "127.0.0.1:45031", "", Path("work"), Path("work/stack/data"), "http://127.0.0.1:45032"
    )
    with pytest.raises(KeyboardInterrupt), recorded(state) as path:
        assert discovery.running_stacks()[0] == state
        raise KeyboardInterrupt
    assert not path.exists()
    assert discovery.running_stacks() == []


def test_dlq_list_goes_to_the_running_stacks_broker_and_says_so(dirs: Path, live_pid: int) -> None:
    closed = free_port()
    _write(dirs, _stack(live_pid, bootstrap=f"127.0.0.1:{closed}"))
    result = CliRunner().invoke(app, ["dlq", "list"], env={"KAFKA_BOOTSTRAP_SERVERS": None})
    assert result.exit_code == 1
    assert f"using the running local stack's broker at 127.0.0.1:{closed} (lienthong run" in result.stderr
    assert f"Kafka does not answer at 127.0.0.1:{closed}" in result.stderr


def test_topics_dry_run_prints_the_plan_without_a_broker(dirs: Path) -> None:
    closed = free_port()
    result = CliRunner().invoke(
        app, ["topics", "create", "--dry-run", "--bootstrap-servers", f"127.0.0.1:{closed}"]
    )
    assert result.exit_code == 0, result.output
    rows = [line for line in result.stdout.splitlines() if line.endswith("would create")]
    assert [row.split()[0] for row in rows] == [spec.name for spec in all_topics()]
    received = next(row for row in rows if row.startswith("dossier.received "))
    assert received.split()[1:4] == ["6", "3", "2"], "partitions, replicas, min.isr"
    assert (
        f"would create {len(all_topics())}: the plan was made without asking a cluster (nothing answers at "
        f"127.0.0.1:{closed})"
    ) in result.stdout
    assert "replication factor 3, min.insync.replicas 2 (assumed: the default of 3" in result.stdout


def test_topics_dry_run_without_a_broker_uses_the_requested_factor(dirs: Path) -> None:
    closed = free_port()
    result = CliRunner().invoke(
        app,
        ["topics", "create", "--dry-run", "--bootstrap-servers", f"127.0.0.1:{closed}",
         "--replication-factor", "2", "--min-insync-replicas", "1", "--prefix", "t3."],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "t3.dossier.received " in result.stdout
    assert (
        "replication factor 2, min.insync.replicas 1 (as requested with --replication-factor" in result.stdout
    )


def test_audit_reads_the_running_stacks_handoff_log(dirs: Path, live_pid: int) -> None:
    _write(dirs, _stack(live_pid))
    assert discovery.choose_data_dir(environ={}, stacks_dir=dirs) == (
        Path("var/run/stack/data"),
        f"using the running local stack's data at var/run/stack/data (lienthong run, pid {live_pid})",
    )
    assert discovery.choose_data_dir(environ={"LIENTHONG_DATA_DIR": "d"}, stacks_dir=dirs) == (
        Path("d"),
        None,
    )

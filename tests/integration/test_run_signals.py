"""`lienthong run` started in the background, as a shell's `lienthong run &` starts it (SIGINT ignored),
stops in order on SIGINT and on SIGTERM, leaving no process; beside it, `lienthong dlq list` and
`lienthong topics create --dry-run` find its broker with no option.

The run starts its own broker, as a newcomer's does, on free ports (``--free-ports``); its state file
and the broker daemon's state are kept in the test's folder, so nothing else on the machine is found
or disturbed.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from schemas.topics import all_topics
from services.tools.stack.discovery import STATE_DIR_VARIABLE

REPO = Path(__file__).resolve().parents[2]
START_WITHIN_S = 180.0
STOP_WITHIN_S = 60.0

pytestmark = pytest.mark.kafka  # runs a real broker (its own)


def _stat(pid: int) -> tuple[str, int, int] | None:
    """A process's state letter, parent pid and start time (clock ticks since boot)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text(encoding="ascii", errors="replace")
    except OSError:
        return None
    fields = text.rsplit(")", 1)[-1].split()
    return fields[0], int(fields[1]), int(fields[19])


def _pids() -> list[int]:
    return [int(entry.name) for entry in Path("/proc").iterdir() if entry.name.isdigit()]


def _descendants(root: int) -> dict[int, int]:
    """Every living process below ``root``: pid → start time (a pid reused later starts later)."""
    children: dict[int, list[tuple[int, int]]] = {}
    for pid in _pids():
        stat = _stat(pid)
        if stat is not None and stat[0] != "Z":
            children.setdefault(stat[1], []).append((pid, stat[2]))
    found: dict[int, int] = {}
    todo = [root]
    while todo:
        for pid, started in children.get(todo.pop(), []):
            found[pid] = started
            todo.append(pid)
    return found


def _mentions(pid: int, text: str) -> bool:
    """Whether a process's command line or environment names ``text`` (unreadable ones do not)."""
    for part in ("cmdline", "environ"):
        try:
            if text.encode() in Path(f"/proc/{pid}/{part}").read_bytes():
                return True
        except OSError:
            pass
    return False


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _left_over(tree: dict[int, int], work_dir: Path) -> list[str]:
    """Processes of the run still alive: those seen below it, and any naming its work dir."""
    left = []
    for pid, started in tree.items():
        stat = _stat(pid)
        if stat is not None and stat[0] != "Z" and stat[2] == started:
            left.append(f"{pid} {_cmdline(pid)}")
    for pid in _pids():
        stat = _stat(pid)
        alive = stat is not None and stat[0] != "Z"
        if alive and pid != os.getpid() and pid not in tree and _mentions(pid, str(work_dir)):
            left.append(f"{pid} {_cmdline(pid)}")
    return left


@dataclass
class BackgroundRun:
    process: subprocess.Popen[bytes]
    work_dir: Path
    env: dict[str, str]
    output: Path

    def tail(self) -> str:
        return "\n".join(self.output.read_text(errors="replace").splitlines()[-30:])

    def state(self, state_dir: Path) -> dict[str, object]:
        """The run's state file, once the stack serves (fails if the run ends or is too slow)."""
        path = state_dir / f"{self.process.pid}.json"
        deadline = time.monotonic() + START_WITHIN_S
        while time.monotonic() < deadline:
            assert self.process.poll() is None, f"the run ended while starting:\n{self.tail()}"
            if path.exists():
                state: dict[str, object] = json.loads(path.read_text(encoding="utf-8"))
                return state
            time.sleep(0.2)
        raise AssertionError(f"the run did not serve within {START_WITHIN_S:.0f} s:\n{self.tail()}")

    def lienthong(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "services.tools.cli", *args],
            cwd=REPO,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )


def _ignore_sigint() -> None:  # what a non-interactive shell does for `cmd &`
    signal.signal(signal.SIGINT, signal.SIG_IGN)


@pytest.fixture
def background_run(tmp_path: Path) -> Iterator[BackgroundRun]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("KAFKA_BOOTSTRAP_SERVERS", "LIENTHONG_TOPIC_PREFIX", "LIENTHONG_DATA_DIR")
    }
    env[STATE_DIR_VARIABLE] = str(tmp_path / "stacks")
    env["LIENTHONG_BROKER_DIR"] = str(tmp_path / "no-daemon")  # no `lienthong broker start` to reuse
    work_dir = tmp_path / "work"
    output = tmp_path / "run.out"
    with output.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "services.tools.cli", "run", "--no-faults", "--free-ports", "--rate", "2",
             "--no-sign-in", "--work-dir", str(work_dir)],  # sign-in: tests/acceptance, test_stack_sign_in
            cwd=REPO,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            preexec_fn=_ignore_sigint,
            start_new_session=True,
        )  # fmt: skip
    run = BackgroundRun(process, work_dir, env, output)
    try:
        yield run
    finally:
        if process.poll() is None:  # the test failed: leave nothing behind either way
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=30)


def _stop_and_check(run: BackgroundRun, state_dir: Path, signum: signal.Signals) -> None:
    tree = _descendants(run.process.pid)
    jvms = [pid for pid in tree if "kafka.Kafka" in _cmdline(pid) and str(run.work_dir) in _cmdline(pid)]
    assert jvms, "the run's own broker is among its processes"
    assert len(tree) >= 16, "a broker, 6 sandboxes, 6 connectors, intake, router and tracker"

    run.process.send_signal(signum)
    try:
        code = run.process.wait(timeout=STOP_WITHIN_S)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"{signum.name} did not stop the run within {STOP_WITHIN_S:.0f} s") from None

    assert code == 128 + signum, run.tail()
    assert f"Stopped on {signum.name}: no process left behind." in run.tail()
    assert not _left_over(tree, run.work_dir), _left_over(tree, run.work_dir)
    assert not list(state_dir.glob("*.json")), "the run's state file is removed"


def test_sigint_stops_a_background_run_and_dlq_list_finds_its_broker(
    background_run: BackgroundRun, tmp_path: Path
) -> None:
    state_dir = tmp_path / "stacks"
    state = background_run.state(state_dir)
    assert httpx.get(f"{state['tracker_url']}/health", timeout=5).status_code == 200

    listed = background_run.lienthong("dlq", "list")
    assert listed.returncode == 0, listed.stderr
    assert "0 dead letter(s), 0 replayed" in listed.stdout
    assert (
        f"using the running local stack's broker at {state['bootstrap_servers']} "
        f"(lienthong run, pid {background_run.process.pid}" in listed.stderr
    )

    _stop_and_check(background_run, state_dir, signal.SIGINT)


def test_sigterm_stops_a_background_run_and_topics_dry_run_finds_its_broker(
    background_run: BackgroundRun, tmp_path: Path
) -> None:
    state_dir = tmp_path / "stacks"
    state = background_run.state(state_dir)

    planned = background_run.lienthong("topics", "create", "--dry-run")
    assert planned.returncode == 0, planned.stderr
    present = len(all_topics())
    assert f"would create 0, already present {present} (at {state['bootstrap_servers']})" in planned.stdout
    assert f"using the running local stack's broker at {state['bootstrap_servers']}" in planned.stderr

    _stop_and_check(background_run, state_dir, signal.SIGTERM)

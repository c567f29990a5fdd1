"""A detached local broker for the command line: started by one command, found and stopped by the next.

Its state (pid, ports, work folder) is kept in a small JSON file in the cache, so that
``lienthong broker status`` and ``lienthong broker stop`` work from any shell.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

from services.localkafka.broker import HOST, LocalKafkaBroker, answers_metadata
from services.localkafka.errors import BrokerError
from services.localkafka.jars import cache_root
from services.localkafka.process import pid_alive, terminate_pid

DEFAULT_PORT = 9092
DEFAULT_CONTROLLER_PORT = 9093


@dataclass(frozen=True)
class BrokerState:
    pid: int
    port: int
    controller_port: int
    work_dir: str
    version: str

    @property
    def bootstrap_servers(self) -> str:
        return f"{HOST}:{self.port}"


@dataclass(frozen=True)
class BrokerStatus:
    state: BrokerState | None
    process_alive: bool
    answers_metadata: bool

    @property
    def running(self) -> bool:
        return self.process_alive and self.answers_metadata


def state_dir() -> Path:
    explicit = os.environ.get("LIENTHONG_BROKER_DIR")
    return Path(explicit) if explicit else cache_root() / "broker"


def _state_file() -> Path:
    return state_dir() / "state.json"


def read_state() -> BrokerState | None:
    path = _state_file()
    if not path.exists():
        return None
    return BrokerState(**json.loads(path.read_text(encoding="utf-8")))


def status() -> BrokerStatus:
    state = read_state()
    if state is None:
        return BrokerStatus(state=None, process_alive=False, answers_metadata=False)
    alive = pid_alive(state.pid)
    return BrokerStatus(
        state=state,
        process_alive=alive,
        answers_metadata=alive and answers_metadata(state.bootstrap_servers),
    )


def start(
    port: int = DEFAULT_PORT, controller_port: int = DEFAULT_CONTROLLER_PORT, fresh: bool = False
) -> BrokerState:
    """Start a detached broker, or return the one already running."""
    current = status()
    if current.running and current.state is not None:
        return current.state
    if current.state is not None and current.process_alive:
        terminate_pid(current.state.pid, timeout=30)
    work_dir = state_dir() / "data"
    if fresh and work_dir.exists():
        shutil.rmtree(work_dir)
    broker = LocalKafkaBroker(work_dir, port=port, controller_port=controller_port, die_with_parent=False)
    broker.start()
    assert broker.pid is not None
    state = BrokerState(
        pid=broker.pid,
        port=broker.port,
        controller_port=broker.controller_port,
        work_dir=str(work_dir),
        version=broker.distribution.version,
    )
    _state_file().parent.mkdir(parents=True, exist_ok=True)
    _state_file().write_text(json.dumps(asdict(state)), encoding="utf-8")
    return state


def stop(timeout: float = 30.0) -> bool:
    """Stop the detached broker; False when none was running."""
    state = read_state()
    if state is None:
        return False
    was_alive = pid_alive(state.pid)
    terminate_pid(state.pid, timeout=timeout)
    if pid_alive(state.pid):
        raise BrokerError(f"The broker (pid {state.pid}) did not stop.")
    _state_file().unlink(missing_ok=True)
    return was_alive

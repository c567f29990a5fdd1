"""A detached local broker (or cluster) for the command line: started by one command, found and stopped
by the next.

Its state (pids, ports, work folder) is kept in a small JSON file in the cache, so that
``lienthong broker status`` and ``lienthong broker stop`` work from any shell. A cluster's node ``i``
(from 1) listens on ``port + 2(i-1)`` and its controller on ``controller_port + 2(i-1)``: with the
defaults 9092/9093, 9094/9095, 9096/9097.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path

from services.tools.localkafka.broker import HOST, LocalKafkaBroker, LocalKafkaCluster, reported_brokers
from services.tools.localkafka.errors import BrokerError
from services.tools.localkafka.jars import cache_root
from services.tools.localkafka.process import pid_alive, terminate_pids

DEFAULT_PORT = 9092
DEFAULT_CONTROLLER_PORT = 9093
PORT_STRIDE = 2  # a cluster's nodes: client and controller ports interleave from the two given


@dataclass(frozen=True)
class NodeState:
    node_id: int
    pid: int
    port: int
    controller_port: int


@dataclass(frozen=True)
class BrokerState:
    """The detached broker; ``pid`` and the ports are node 1's, ``nodes`` every node of a cluster
    (empty for a single broker)."""

    pid: int
    port: int
    controller_port: int
    work_dir: str
    version: str
    nodes: tuple[NodeState, ...] = ()

    @property
    def members(self) -> tuple[NodeState, ...]:
        """Every node, a single broker's too."""
        return self.nodes or (NodeState(1, self.pid, self.port, self.controller_port),)

    @property
    def size(self) -> int:
        return len(self.members)

    @property
    def bootstrap_servers(self) -> str:
        return ",".join(f"{HOST}:{node.port}" for node in self.members)


@dataclass(frozen=True)
class BrokerStatus:
    state: BrokerState | None
    process_alive: bool  # every node's
    answers_metadata: bool
    reported_brokers: int = 0
    nodes_alive: dict[int, bool] = field(default_factory=dict)

    @property
    def running(self) -> bool:
        size = self.state.size if self.state is not None else 1
        return self.process_alive and self.answers_metadata and self.reported_brokers >= size


def state_dir() -> Path:
    explicit = os.environ.get("LIENTHONG_BROKER_DIR")
    return Path(explicit) if explicit else cache_root() / "broker"


def _state_file() -> Path:
    return state_dir() / "state.json"


def read_state() -> BrokerState | None:
    path = _state_file()
    if not path.exists():
        return None
    data = json.loads(path.read_text(encoding="utf-8"))
    nodes = tuple(NodeState(**node) for node in data.pop("nodes", ()))
    return BrokerState(**data, nodes=nodes)


def status() -> BrokerStatus:
    state = read_state()
    if state is None:
        return BrokerStatus(state=None, process_alive=False, answers_metadata=False)
    nodes_alive = {node.node_id: pid_alive(node.pid) for node in state.members}
    reported = reported_brokers(state.bootstrap_servers) if any(nodes_alive.values()) else 0
    return BrokerStatus(
        state=state,
        process_alive=all(nodes_alive.values()),
        answers_metadata=reported > 0,
        reported_brokers=reported,
        nodes_alive=nodes_alive,
    )


def start(
    port: int = DEFAULT_PORT,
    controller_port: int = DEFAULT_CONTROLLER_PORT,
    fresh: bool = False,
    nodes: int = 1,
) -> BrokerState:
    """Start a detached broker, or a cluster of ``nodes`` (each its own JVM), or return the one
    already running."""
    if nodes < 1:
        raise BrokerError(f"A broker needs at least one node, not {nodes}.")
    current = status()
    if current.running and current.state is not None:
        if current.state.size != nodes:
            raise BrokerError(
                f"A local broker with {current.state.size} node(s) already runs at "
                f"{current.state.bootstrap_servers}: stop it first (lienthong broker stop)."
            )
        return current.state
    if current.state is not None and any(current.nodes_alive.values()):
        terminate_pids([node.pid for node in current.state.members], timeout=30)
    # A cluster keeps its data apart: its nodes are formatted for a quorum of `nodes` voters.
    work_dir = state_dir() / ("data" if nodes == 1 else f"cluster-{nodes}")
    if fresh and work_dir.exists():
        shutil.rmtree(work_dir)
    if nodes == 1:
        state = _start_single(work_dir, port, controller_port)
    else:
        state = _start_cluster(work_dir, port, controller_port, nodes)
    _state_file().parent.mkdir(parents=True, exist_ok=True)
    _state_file().write_text(json.dumps(asdict(state)), encoding="utf-8")
    return state


def _start_single(work_dir: Path, port: int, controller_port: int) -> BrokerState:
    broker = LocalKafkaBroker(work_dir, port=port, controller_port=controller_port, die_with_parent=False)
    broker.start()
    assert broker.pid is not None
    return BrokerState(
        pid=broker.pid,
        port=broker.port,
        controller_port=broker.controller_port,
        work_dir=str(work_dir),
        version=broker.distribution.version,
    )


def _start_cluster(work_dir: Path, port: int, controller_port: int, nodes: int) -> BrokerState:
    cluster = LocalKafkaCluster(
        work_dir,
        size=nodes,
        ports=[port + PORT_STRIDE * i for i in range(nodes)],
        controller_ports=[controller_port + PORT_STRIDE * i for i in range(nodes)],
        die_with_parent=False,
    )
    cluster.start()
    members = []
    for node_id, node in cluster.nodes.items():
        assert node.pid is not None
        members.append(NodeState(node_id, node.pid, node.port, node.controller_port))
    first = members[0]
    return BrokerState(
        pid=first.pid,
        port=first.port,
        controller_port=first.controller_port,
        work_dir=str(work_dir),
        version=cluster.distribution.version,
        nodes=tuple(members),
    )


def stop(timeout: float = 30.0) -> bool:
    """Stop the detached broker (every node of a cluster at once); False when none was running."""
    state = read_state()
    if state is None:
        return False
    pids = [node.pid for node in state.members]
    was_alive = any(pid_alive(pid) for pid in pids)
    terminate_pids(pids, timeout=timeout)
    survivors = [pid for pid in pids if pid_alive(pid)]
    if survivors:
        raise BrokerError(f"The broker (pid {', '.join(map(str, survivors))}) did not stop.")
    _state_file().unlink(missing_ok=True)
    return was_alive

"""The local broker's settings alone and as a node of a cluster, and the state file the CLI keeps."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import pytest

from services.tools.localkafka import daemon
from services.tools.localkafka.broker import LocalKafkaCluster, quorum_voters, server_properties
from services.tools.localkafka.errors import BrokerError

REPLICATION_KEYS = (
    "offsets.topic.replication.factor",
    "transaction.state.log.replication.factor",
    "share.coordinator.state.topic.replication.factor",
    "default.replication.factor",
    "transaction.state.log.min.isr",
    "share.coordinator.state.topic.min.isr",
    "min.insync.replicas",
)


def test_a_single_broker_keeps_one_copy_of_everything(tmp_path: Path) -> None:
    props = server_properties(tmp_path, 9092, 9093)
    assert props["node.id"] == "1"
    assert props["controller.quorum.voters"] == "1@127.0.0.1:9093"
    assert {props[key] for key in REPLICATION_KEYS} == {"1"}


def test_a_node_of_three_knows_every_voter_and_replicates_internal_topics(tmp_path: Path) -> None:
    voters = quorum_voters({2: 9095, 1: 9093, 3: 9097})
    assert voters == "1@127.0.0.1:9093,2@127.0.0.1:9095,3@127.0.0.1:9097"
    props = server_properties(tmp_path, 9094, 9095, node_id=2, voters=voters, cluster_size=3)
    assert props["node.id"] == "2"
    assert props["controller.quorum.voters"] == voters
    assert props["listeners"] == "PLAINTEXT://127.0.0.1:9094,CONTROLLER://127.0.0.1:9095"
    copies = {key: props[key] for key in REPLICATION_KEYS}
    assert copies == {
        "offsets.topic.replication.factor": "3",
        "transaction.state.log.replication.factor": "3",
        "share.coordinator.state.topic.replication.factor": "3",
        "default.replication.factor": "3",
        "transaction.state.log.min.isr": "2",
        "share.coordinator.state.topic.min.isr": "2",
        "min.insync.replicas": "2",
    }


def test_cluster_nodes_get_their_own_ports_and_folders(tmp_path: Path) -> None:
    cluster = LocalKafkaCluster(tmp_path, size=3, ports=[1, 2, 3], controller_ports=[4, 5, 6])
    assert cluster.bootstrap_servers == "127.0.0.1:1,127.0.0.1:2,127.0.0.1:3"
    assert [node.work_dir.name for node in cluster.nodes.values()] == ["node-1", "node-2", "node-3"]
    assert {node.voters for node in cluster.nodes.values()} == {"1@127.0.0.1:4,2@127.0.0.1:5,3@127.0.0.1:6"}
    with pytest.raises(BrokerError, match="must all differ"):
        LocalKafkaCluster(tmp_path, size=2, ports=[1, 2], controller_ports=[2, 3])
    free = LocalKafkaCluster(tmp_path, size=3)
    assert len({n.port for n in free.nodes.values()} | {n.controller_port for n in free.nodes.values()}) == 6


def test_the_state_file_of_a_cluster_and_of_an_older_single_broker(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LIENTHONG_BROKER_DIR", str(tmp_path))
    (tmp_path / "state.json").write_text(
        json.dumps({"pid": 11, "port": 9092, "controller_port": 9093, "work_dir": "w", "version": "4.1.1"})
    )
    single = daemon.read_state()
    assert single is not None
    assert (single.size, single.bootstrap_servers) == (1, "127.0.0.1:9092")

    nodes = tuple(daemon.NodeState(i, 10 + i, 9090 + 2 * i, 9091 + 2 * i) for i in (1, 2, 3))
    state = daemon.BrokerState(11, 9092, 9093, "w", "4.1.1", nodes)
    (tmp_path / "state.json").write_text(json.dumps(asdict(state)))
    assert daemon.read_state() == state
    assert state.bootstrap_servers == "127.0.0.1:9092,127.0.0.1:9094,127.0.0.1:9096"

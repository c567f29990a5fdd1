"""Apache Kafka (KRaft) run from Apache Kafka's own jars, without Docker: one node, or a small cluster.

``LocalKafkaBroker`` formats storage, starts ``kafka.Kafka`` on 127.0.0.1 with settings that make
idempotent and transactional producers work on one node, waits until the broker answers metadata
requests, and stops the JVM cleanly. ``LocalKafkaCluster`` runs several such nodes, each its own JVM
and each broker and controller at once, as one cluster whose internal topics are replicated, and
stops or starts a single node (fault tests). The tests use them directly; ``lienthong broker`` wraps
them.
"""

from __future__ import annotations

import asyncio
import base64
import secrets
import subprocess
import threading
import time
import uuid
from collections.abc import Coroutine, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, TypeVar

from services.tools.localkafka.errors import BrokerError
from services.tools.localkafka.jars import KafkaDistribution, require_java, resolve_distribution
from services.tools.localkafka.process import (
    ChildServer,
    child_preexec,
    distinct_free_ports,
    given_or_free,
    port_open,
)

HOST = "127.0.0.1"  # never "localhost": it may resolve to ::1 first
_T = TypeVar("_T")

_LOG4J2_XML = """<?xml version="1.0" encoding="UTF-8"?>
<Configuration status="WARN">
  <Appenders>
    <File name="server" fileName="${sys:kafka.logs.dir}/server.log" append="true">
      <PatternLayout pattern="[%d] %p %m (%c)%n"/>
    </File>
  </Appenders>
  <Loggers>
    <Root level="INFO"><AppenderRef ref="server"/></Root>
    <Logger name="org.apache.kafka.clients" level="WARN"/>
    <Logger name="kafka.request.logger" level="WARN"/>
  </Loggers>
</Configuration>
"""


ADMIN = "admin"
SCRAM = "SCRAM-SHA-512"


def sasl_properties(admin_password: str) -> dict[str, str]:
    """What turns the client listener into SASL_PLAINTEXT + SCRAM-SHA-512 with ACLs enforced.

    The controller listener stays PLAINTEXT on 127.0.0.1; in this combined broker+controller node the
    broker reaches its own controller over it as ``User:ANONYMOUS``, which must therefore be a super
    user. Clients only ever reach the SASL listener, where nobody is anonymous.
    """
    jaas = (
        "org.apache.kafka.common.security.scram.ScramLoginModule required"
        f' username="{ADMIN}" password="{admin_password}";'
    )
    return {
        "sasl.enabled.mechanisms": SCRAM,
        "sasl.mechanism.inter.broker.protocol": SCRAM,
        "listener.name.sasl_plaintext.scram-sha-512.sasl.jaas.config": jaas,
        "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
        "super.users": f"User:{ADMIN};User:ANONYMOUS",
        "allow.everyone.if.no.acl.found": "false",
    }


def quorum_voters(controller_ports: Mapping[int, int]) -> str:
    """``controller.quorum.voters`` of nodes whose controllers listen on ``controller_ports`` (by id)."""
    return ",".join(f"{node_id}@{HOST}:{port}" for node_id, port in sorted(controller_ports.items()))


def server_properties(
    data_dir: Path,
    port: int,
    controller_port: int,
    *,
    sasl_admin_password: str | None = None,
    node_id: int = 1,
    voters: str | None = None,
    cluster_size: int = 1,
) -> dict[str, str]:
    """The settings of a combined broker+controller KRaft node on which transactions work (with SASL
    and ACLs when ``sasl_admin_password`` is given). Alone by default; node ``node_id`` of a cluster of
    ``cluster_size`` with the controller quorum ``voters`` (see :func:`quorum_voters`) otherwise, whose
    internal and auto-created topics then keep min(3, size) copies, min(2, size) of them in sync."""
    client = "SASL_PLAINTEXT" if sasl_admin_password is not None else "PLAINTEXT"
    extra = sasl_properties(sasl_admin_password) if sasl_admin_password is not None else {}
    copies = str(min(3, cluster_size))
    in_sync = str(min(2, cluster_size))
    return extra | {
        "process.roles": "broker,controller",
        "node.id": str(node_id),
        "controller.quorum.voters": voters or f"{node_id}@{HOST}:{controller_port}",
        "listeners": f"{client}://{HOST}:{port},CONTROLLER://{HOST}:{controller_port}",
        "advertised.listeners": f"{client}://{HOST}:{port}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": client,
        "listener.security.protocol.map": f"CONTROLLER:PLAINTEXT,{client}:{client}",
        "log.dirs": str(data_dir / "kraft-logs"),
        "num.partitions": "1",
        # The services create their declared topics (schemas.topics) with the right partitions and
        # retention before use; auto-creation stays on so that ad-hoc test topics need no set-up.
        "auto.create.topics.enable": "true",
        "offsets.topic.replication.factor": copies,
        "offsets.topic.num.partitions": "1",  # the default 50 slows the first consumer group down
        "transaction.state.log.replication.factor": copies,
        "transaction.state.log.min.isr": in_sync,  # the default 2 breaks transactions on one node
        "transaction.state.log.num.partitions": "1",
        "share.coordinator.state.topic.replication.factor": copies,
        "share.coordinator.state.topic.min.isr": in_sync,
        "group.initial.rebalance.delay.ms": "0",  # the default 3 s delays every first join
        "min.insync.replicas": in_sync,
        "default.replication.factor": copies,
        "log.flush.interval.messages": "9223372036854775807",
        "delete.topic.enable": "true",
    }


def _run_blocking(coro: Coroutine[Any, Any, _T]) -> _T:
    """Run a coroutine to completion from sync code, even when this thread already runs a loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    box: dict[str, Any] = {}

    def runner() -> None:
        try:
            box["value"] = asyncio.run(coro)
        except BaseException as exc:  # re-raised in the calling thread
            box["error"] = exc

    thread = threading.Thread(target=runner)
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    return box["value"]  # type: ignore[no-any-return]


async def _reported_brokers(bootstrap: str, request_timeout: float, security: dict[str, Any]) -> int:
    from aiokafka import AIOKafkaClient  # imported lazily: the CLI's other commands don't need it

    client = AIOKafkaClient(
        bootstrap_servers=bootstrap, request_timeout_ms=int(request_timeout * 1000), **security
    )
    try:
        await client.bootstrap()
        metadata = await client.fetch_all_metadata()
        return len(metadata.brokers())
    except Exception:
        return 0
    finally:
        await client.close()


def reported_brokers(bootstrap: str, timeout: float = 5.0, **security: Any) -> int:
    """How many brokers the cluster at ``bootstrap`` reports in a metadata answer (0: no answer);
    ``security``: aiokafka's SASL/TLS keyword arguments, for a secured broker."""
    return _run_blocking(_reported_brokers(bootstrap, timeout, security))


def answers_metadata(bootstrap: str, timeout: float = 5.0, **security: Any) -> bool:
    """Whether a broker at ``bootstrap`` answers a metadata request (stronger than an open port);
    ``security``: aiokafka's SASL/TLS keyword arguments, for a secured broker."""
    return reported_brokers(bootstrap, timeout, **security) > 0


async def partition_leader(bootstrap: str, topic: str, partition: int, **security: Any) -> int | None:
    """The node id of the broker that leads ``topic``'s ``partition`` now (None: no leader, or no such
    topic), from a metadata answer of the cluster at ``bootstrap``."""
    from aiokafka import AIOKafkaClient
    from aiokafka.structs import TopicPartition

    client = AIOKafkaClient(bootstrap_servers=bootstrap, **security)
    try:
        await client.bootstrap()
        # All topics: naming one that does not exist may auto-create it.
        metadata = await client.fetch_all_metadata()
        leader = metadata.leader_for_partition(TopicPartition(topic, partition))
        return None if leader is None or leader < 0 else int(leader)
    finally:
        await client.close()


@dataclass(frozen=True)
class Acl:
    """One ALLOW rule: ``principal`` may ``operation`` on a topic or group (literal name or prefix)."""

    principal: str  # the user name, without "User:"
    resource: Literal["topic", "group", "transactional_id", "cluster"]
    name: str
    operation: Literal["read", "write", "describe", "create", "idempotent_write"]
    prefixed: bool = False


def kept_cluster_id(id_file: Path) -> str:
    """The cluster id kept in ``id_file``, drawn and kept there on first use."""
    if id_file.exists():
        return id_file.read_text(encoding="utf-8").strip()
    # What `kafka-storage.sh random-uuid` prints: URL-safe base64 of a UUID, no padding, and (as
    # Kafka's Uuid.randomUuid) never starting with "-", which a command line takes for an option.
    cluster_id = "-"
    while cluster_id.startswith("-"):
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
    id_file.parent.mkdir(parents=True, exist_ok=True)
    id_file.write_text(cluster_id, encoding="utf-8")
    return cluster_id


_RESOURCE_TYPES = {"topic": 2, "group": 3, "cluster": 4, "transactional_id": 5}
_OPERATIONS = {"read": 3, "write": 4, "create": 5, "describe": 8, "idempotent_write": 12}
_LITERAL, _PREFIXED, _ALLOW = 3, 4, 3


async def create_acls(bootstrap_servers: str, acls: Sequence[Acl], **client_options: Any) -> None:
    """Create ALLOW rules (Kafka's CreateAcls request) with a super user's ``client_options``;
    creating a rule that exists already changes nothing."""
    from aiokafka.admin import AIOKafkaAdminClient
    from aiokafka.protocol.admin import CreateAclsRequest

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers, **client_options)
    await admin.start()
    try:
        for acl in acls:
            request = CreateAclsRequest(
                _RESOURCE_TYPES[acl.resource],
                acl.name,
                _PREFIXED if acl.prefixed else _LITERAL,
                f"User:{acl.principal}",
                "*",
                _OPERATIONS[acl.operation],
                _ALLOW,
            )
            response = await admin._send_request(request)
            for error_code, message in response.creation_responses:
                if error_code:
                    raise BrokerError(f"creating {acl} failed: error {error_code} {message}")
    finally:
        await admin.close()


class LocalKafkaBroker(ChildServer):
    """One KRaft broker+controller JVM with its data in ``work_dir``.

    Re-starting on the same ``work_dir`` keeps its topics (storage is formatted only once), which is
    what a broker-restart fault test needs. With ``die_with_parent`` (the default) the JVM is killed
    by the kernel if this Python process dies, so no orphan broker survives an interrupted test run.
    Alone unless ``voters`` and ``cluster_size`` make it node ``node_id`` of a :class:`LocalKafkaCluster`.
    """

    def __init__(
        self,
        work_dir: Path,
        *,
        port: int | None = None,
        controller_port: int | None = None,
        heap: str = "512m",
        die_with_parent: bool = True,
        distribution: KafkaDistribution | None = None,
        sasl: bool = False,
        scram_users: Mapping[str, str] | None = None,
        node_id: int = 1,
        voters: str | None = None,
        cluster_size: int = 1,
    ) -> None:
        """``sasl``: clients must authenticate (SASL_PLAINTEXT, SCRAM-SHA-512) and ACLs are enforced;
        the super user ``admin`` (password in :attr:`admin_password`) and ``scram_users`` (name →
        password) are the credentials, added when the storage is formatted (the first start)."""
        self.node_id = node_id
        self.voters = voters
        self.cluster_size = cluster_size
        self.sasl = sasl
        self.scram_users = dict(scram_users or {})
        self.work_dir = work_dir
        self.port, self.controller_port = given_or_free(port, controller_port, host=HOST)
        self.heap = heap
        self.die_with_parent = die_with_parent
        self._distribution = distribution
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap_servers(self) -> str:
        return f"{HOST}:{self.port}"

    @property
    def admin_password(self) -> str:
        """The super user's password (made once per work directory, kept readable by its owner only)."""
        path = self.work_dir / "sasl-admin.secret"
        if not path.exists():
            self.work_dir.mkdir(parents=True, exist_ok=True)
            path.touch(mode=0o600)
            path.write_text(secrets.token_urlsafe(24), encoding="utf-8")
        return path.read_text(encoding="utf-8").strip()

    def client_options(self, username: str | None = None, password: str | None = None) -> dict[str, Any]:
        """aiokafka keyword arguments to reach this broker (as ``admin`` unless a user is given)."""
        if not self.sasl:
            return {}
        return {
            "security_protocol": "SASL_PLAINTEXT",
            "sasl_mechanism": SCRAM,
            "sasl_plain_username": username or ADMIN,
            "sasl_plain_password": password if username else self.admin_password,
        }

    async def add_acls(self, acls: Sequence[Acl]) -> None:
        """Create ALLOW rules, as the super user (see :func:`create_acls`)."""
        await create_acls(self.bootstrap_servers, acls, **self.client_options())

    @property
    def log_file(self) -> Path:
        return self.work_dir / "logs" / "server.log"

    @property
    def distribution(self) -> KafkaDistribution:
        if self._distribution is None:
            self._distribution = resolve_distribution()
        return self._distribution

    def _java_command(self, main_class: str, *args: str) -> list[str]:
        return [
            require_java(),
            f"-Xms{self.heap}",
            f"-Xmx{self.heap}",
            "-XX:+UseG1GC",
            "-XX:+ExitOnOutOfMemoryError",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={self.work_dir / 'log4j2.xml'}",
            f"-Dkafka.logs.dir={self.work_dir / 'logs'}",
            "-cp",
            self.distribution.classpath,
            main_class,
            *args,
        ]

    def _write_config(self) -> Path:
        (self.work_dir / "logs").mkdir(parents=True, exist_ok=True)
        (self.work_dir / "log4j2.xml").write_text(_LOG4J2_XML, encoding="utf-8")
        props = server_properties(
            self.work_dir,
            self.port,
            self.controller_port,
            sasl_admin_password=self.admin_password if self.sasl else None,
            node_id=self.node_id,
            voters=self.voters,
            cluster_size=self.cluster_size,
        )
        path = self.work_dir / "server.properties"
        path.write_text("".join(f"{k}={v}\n" for k, v in props.items()), encoding="utf-8")
        return path

    def _cluster_id(self) -> str:
        return kept_cluster_id(self.work_dir / "cluster.id")

    def _format_storage(self, config: Path) -> None:
        command = self._java_command(
            "kafka.tools.StorageTool",
            "format",
            f"--cluster-id={self._cluster_id()}",  # one argument, whatever the id starts with
            "-c",
            str(config),
            "--ignore-formatted",
            *self._scram_arguments(),
        )
        result = subprocess.run(command, capture_output=True, text=True, check=False, timeout=120)
        if result.returncode != 0:
            raise BrokerError(
                f"Formatting Kafka storage failed: {(result.stdout + result.stderr).strip()[-2000:]}"
            )

    def _scram_arguments(self) -> list[str]:
        if not self.sasl:
            return []
        users = {ADMIN: self.admin_password} | self.scram_users
        return [
            argument
            for name, password in users.items()
            for argument in ("--add-scram", f"{SCRAM}=[name={name},password={password}]")
        ]

    def start(self, timeout: float = 90.0) -> str:
        """Start the broker and return its bootstrap address once it answers metadata requests."""
        if self.running:
            return self.bootstrap_servers
        self.launch()
        self.wait_ready(timeout)
        return self.bootstrap_servers

    def launch(self) -> None:
        """Format the storage if needed and start the JVM, without waiting for it to be ready (the
        nodes of a cluster become ready only together, once their controllers have a quorum).

        With ``die_with_parent`` the JVM dies with the *thread* that launches it (that is how Linux's
        parent-death signal works): launch from a thread that lives as long as the broker should.
        """
        if self.running:
            return
        self.prepare()
        self.launch_prepared()

    def prepare(self) -> Path:
        """Check the ports, write the configuration and format the storage (once); returns the
        configuration file. Safe to run in a short-lived thread, unlike the JVM's launch."""
        self.work_dir.mkdir(parents=True, exist_ok=True)
        for port in (self.port, self.controller_port):
            if port_open(HOST, port):
                raise BrokerError(
                    f"Port {port} on {HOST} is already in use: stop what holds it or pick another."
                )
        config = self._write_config()
        self._format_storage(config)
        return config

    def launch_prepared(self) -> None:
        """Start the JVM of a broker :meth:`prepare` made ready (see :meth:`launch` on threads)."""
        if self.running:
            return
        config = self.work_dir / "server.properties"
        stdout = (self.work_dir / "logs" / "stdout.log").open("ab")
        self._process = subprocess.Popen(
            self._java_command("kafka.Kafka", str(config)),
            stdout=stdout,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            preexec_fn=child_preexec(die_with_parent=self.die_with_parent),
            start_new_session=not self.die_with_parent,
        )
        stdout.close()

    def wait_ready(self, timeout: float) -> None:
        """Wait until the launched broker answers metadata requests; stop it and raise
        :class:`BrokerError` if it exits or is not ready within ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        if self._process is None:
            raise BrokerError("The Kafka broker was not launched.")
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise BrokerError(
                    f"The Kafka broker{self._which} exited with code {self._process.returncode} while "
                    f"starting; last lines of its log:\n{self.log_tail()}"
                )
            # The PLAINTEXT socket opens only once the broker is ready; metadata then confirms it.
            if port_open(HOST, self.port) and answers_metadata(
                self.bootstrap_servers, **self.client_options()
            ):
                return
            time.sleep(0.2)
        self.stop()
        raise BrokerError(
            f"The Kafka broker{self._which} did not become ready within {timeout:.0f} s:\n{self.log_tail()}"
        )

    @property
    def _which(self) -> str:
        return f" (node {self.node_id})" if self.cluster_size > 1 else ""

    def log_tail(self, lines: int = 20) -> str:
        for path in (self.log_file, self.work_dir / "logs" / "stdout.log"):
            if path.exists() and path.stat().st_size:
                return "\n".join(path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])
        return "(no log output)"


class LocalKafkaCluster:
    """``size`` KRaft nodes on 127.0.0.1, each its own JVM and each broker and controller at once.

    Node ids run from 1 to ``size``; every node is a voter of the one controller quorum, all are
    formatted with the same cluster id (kept in ``work_dir/cluster.id``) and node ``i`` keeps its data
    in ``work_dir/node-<i>``, so a restart keeps the topics. Internal and auto-created topics keep
    min(3, size) copies, min(2, size) of them in sync. One node can be stopped and started again
    (:meth:`stop_node`, :meth:`start_node`) while the others serve: the cluster works on as long as a
    majority of its controllers runs.

    The nodes' JVMs are launched from one thread the cluster keeps until :meth:`stop`, so that
    :meth:`start_node` may be called from any thread (``asyncio.to_thread`` included) without the
    node dying with a short-lived thread (see :meth:`LocalKafkaBroker.launch`).
    """

    def __init__(
        self,
        work_dir: Path,
        *,
        size: int = 3,
        ports: Sequence[int] | None = None,
        controller_ports: Sequence[int] | None = None,
        heap: str = "512m",
        die_with_parent: bool = True,
        distribution: KafkaDistribution | None = None,
    ) -> None:
        if size < 1:
            raise BrokerError(f"A cluster needs at least one node, not {size}.")
        free = iter(distinct_free_ports(2 * size))
        client_ports = list(ports) if ports is not None else [next(free) for _ in range(size)]
        quorum_ports = (
            list(controller_ports) if controller_ports is not None else [next(free) for _ in range(size)]
        )
        if len(client_ports) != size or len(quorum_ports) != size:
            raise BrokerError(f"A cluster of {size} nodes needs {size} client and {size} controller ports.")
        if len(set(client_ports + quorum_ports)) != 2 * size:
            raise BrokerError(
                f"The nodes' ports must all differ: client {client_ports}, controller {quorum_ports}."
            )
        self.work_dir = work_dir
        self.size = size
        self._distribution = distribution
        self._launcher: ThreadPoolExecutor | None = None
        voters = quorum_voters({i + 1: port for i, port in enumerate(quorum_ports)})
        self.nodes: dict[int, LocalKafkaBroker] = {
            i + 1: LocalKafkaBroker(
                work_dir / f"node-{i + 1}",
                port=client_ports[i],
                controller_port=quorum_ports[i],
                heap=heap,
                die_with_parent=die_with_parent,
                distribution=distribution,
                node_id=i + 1,
                voters=voters,
                cluster_size=size,
            )
            for i in range(size)
        }

    @property
    def bootstrap_servers(self) -> str:
        """Every node's client address, so that clients find the cluster whichever node is down."""
        return ",".join(node.bootstrap_servers for node in self.nodes.values())

    @property
    def distribution(self) -> KafkaDistribution:
        if self._distribution is None:
            self._distribution = resolve_distribution()
            for node in self.nodes.values():
                node._distribution = self._distribution
        return self._distribution

    @property
    def pids(self) -> dict[int, int | None]:
        return {node_id: node.pid for node_id, node in self.nodes.items()}

    def node(self, node_id: int) -> LocalKafkaBroker:
        try:
            return self.nodes[node_id]
        except KeyError:
            raise BrokerError(f"The cluster has nodes {sorted(self.nodes)}, not {node_id}.") from None

    def start(self, timeout: float = 120.0) -> str:
        """Start every node and return the bootstrap servers once each answers and the cluster reports
        all of them as brokers."""
        deadline = time.monotonic() + timeout
        cluster_id = kept_cluster_id(self.work_dir / "cluster.id")
        _ = self.distribution
        for node in self.nodes.values():
            node.work_dir.mkdir(parents=True, exist_ok=True)
            (node.work_dir / "cluster.id").write_text(cluster_id, encoding="utf-8")
        try:
            # Formatting starts a JVM per node: in parallel. Then every node at once: a node's broker
            # is ready only once a majority of the controllers runs.
            with ThreadPoolExecutor(self.size) as pool:
                for future in [pool.submit(node.prepare) for node in self.nodes.values()]:
                    future.result()
            for node in self.nodes.values():
                self._launch(node)
            for node in self.nodes.values():
                node.wait_ready(max(1.0, deadline - time.monotonic()))
            self._wait_brokers(deadline)
        except BaseException:
            self.stop()
            raise
        return self.bootstrap_servers

    def _launch(self, node: LocalKafkaBroker) -> None:
        if self._launcher is None:
            self._launcher = ThreadPoolExecutor(1, thread_name_prefix="kafka-node-launcher")
        self._launcher.submit(node.launch_prepared).result()

    def _wait_brokers(self, deadline: float) -> None:
        reported = 0
        while time.monotonic() < deadline:
            reported = reported_brokers(self.bootstrap_servers)
            if reported == self.size:
                return
            time.sleep(0.2)
        raise BrokerError(
            f"The cluster reported {reported} of its {self.size} brokers before the deadline:\n"
            + "\n".join(f"node {i}: {node.log_tail(5)}" for i, node in self.nodes.items())
        )

    def stop_node(self, node_id: int, timeout: float = 30.0) -> None:
        """Stop one node in order (SIGTERM: it hands its partitions' leadership over first), SIGKILL
        if it has not ended within ``timeout``."""
        self.node(node_id).stop(timeout)

    def kill_node(self, node_id: int) -> None:
        """SIGKILL one node, as a crash would."""
        self.node(node_id).kill()

    def start_node(self, node_id: int, timeout: float = 90.0) -> None:
        """Start a stopped node again, and return once it answers and the cluster reports every
        broker again."""
        deadline = time.monotonic() + timeout
        node = self.node(node_id)
        if not node.running:
            node.prepare()
            self._launch(node)
        node.wait_ready(timeout)
        self._wait_brokers(deadline)

    async def leader(self, topic: str, partition: int) -> int | None:
        """The id of the node that leads ``topic``'s ``partition`` now (None: no leader)."""
        return await partition_leader(self.bootstrap_servers, topic, partition)

    def stop(self, timeout: float = 30.0) -> None:
        """Stop every node at once (SIGTERM, then SIGKILL after ``timeout``). A node left without a
        controller quorum (most of the others already gone) cannot shut down in order: it takes the
        whole ``timeout``."""
        with ThreadPoolExecutor(self.size) as pool:
            for future in [pool.submit(node.stop, timeout) for node in self.nodes.values()]:
                future.result()
        if self._launcher is not None:
            self._launcher.shutdown()
            self._launcher = None

    def __enter__(self) -> LocalKafkaCluster:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

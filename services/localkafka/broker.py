"""A single-node Apache Kafka (KRaft) broker run from Apache Kafka's own jars, without Docker.

``LocalKafkaBroker`` formats storage, starts ``kafka.Kafka`` on 127.0.0.1 with settings that make
idempotent and transactional producers work on one node, waits until the broker answers metadata
requests, and stops the JVM cleanly. The tests use it directly; ``lienthong broker`` wraps it.
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
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, TypeVar

from services.localkafka.errors import BrokerError
from services.localkafka.jars import KafkaDistribution, require_java, resolve_distribution
from services.localkafka.process import child_preexec, free_port, port_open, terminate

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


def server_properties(
    data_dir: Path, port: int, controller_port: int, *, sasl_admin_password: str | None = None
) -> dict[str, str]:
    """The settings of a single-node KRaft broker on which transactions work (with SASL and ACLs when
    ``sasl_admin_password`` is given)."""
    client = "SASL_PLAINTEXT" if sasl_admin_password is not None else "PLAINTEXT"
    extra = sasl_properties(sasl_admin_password) if sasl_admin_password is not None else {}
    return extra | {
        "process.roles": "broker,controller",
        "node.id": "1",
        "controller.quorum.voters": f"1@{HOST}:{controller_port}",
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
        "offsets.topic.replication.factor": "1",
        "offsets.topic.num.partitions": "1",  # the default 50 slows the first consumer group down
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",  # the default 2 breaks transactional producers on one node
        "transaction.state.log.num.partitions": "1",
        "share.coordinator.state.topic.replication.factor": "1",
        "share.coordinator.state.topic.min.isr": "1",
        "group.initial.rebalance.delay.ms": "0",  # the default 3 s delays every first join
        "min.insync.replicas": "1",
        "default.replication.factor": "1",
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


async def _answers_metadata(bootstrap: str, request_timeout: float, security: dict[str, Any]) -> bool:
    from aiokafka import AIOKafkaClient  # imported lazily: the CLI's other commands don't need it

    client = AIOKafkaClient(
        bootstrap_servers=bootstrap, request_timeout_ms=int(request_timeout * 1000), **security
    )
    try:
        await client.bootstrap()
        metadata = await client.fetch_all_metadata()
        return len(metadata.brokers()) > 0
    except Exception:
        return False
    finally:
        await client.close()


def answers_metadata(bootstrap: str, timeout: float = 5.0, **security: Any) -> bool:
    """Whether a broker at ``bootstrap`` answers a metadata request (stronger than an open port);
    ``security``: aiokafka's SASL/TLS keyword arguments, for a secured broker."""
    return _run_blocking(_answers_metadata(bootstrap, timeout, security))


@dataclass(frozen=True)
class Acl:
    """One ALLOW rule: ``principal`` may ``operation`` on a topic or group (literal name or prefix)."""

    principal: str  # the user name, without "User:"
    resource: Literal["topic", "group", "transactional_id", "cluster"]
    name: str
    operation: Literal["read", "write", "describe", "create", "idempotent_write"]
    prefixed: bool = False


_RESOURCE_TYPES = {"topic": 2, "group": 3, "cluster": 4, "transactional_id": 5}
_OPERATIONS = {"read": 3, "write": 4, "create": 5, "describe": 8, "idempotent_write": 12}
_LITERAL, _PREFIXED, _ALLOW = 3, 4, 3


class LocalKafkaBroker:
    """One KRaft broker+controller JVM with its data in ``work_dir``.

    Re-starting on the same ``work_dir`` keeps its topics (storage is formatted only once), which is
    what a broker-restart fault test needs. With ``die_with_parent`` (the default) the JVM is killed
    by the kernel if this Python process dies, so no orphan broker survives an interrupted test run.
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
    ) -> None:
        """``sasl``: clients must authenticate (SASL_PLAINTEXT, SCRAM-SHA-512) and ACLs are enforced;
        the super user ``admin`` (password in :attr:`admin_password`) and ``scram_users`` (name →
        password) are the credentials, added when the storage is formatted (the first start)."""
        self.sasl = sasl
        self.scram_users = dict(scram_users or {})
        self.work_dir = work_dir
        self.port = port or free_port(HOST)
        self.controller_port = controller_port or free_port(HOST)
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
        """Create ALLOW rules, as the super user (Kafka's CreateAcls request)."""
        from aiokafka.admin import AIOKafkaAdminClient
        from aiokafka.protocol.admin import CreateAclsRequest

        admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap_servers, **self.client_options())
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

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

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
        )
        path = self.work_dir / "server.properties"
        path.write_text("".join(f"{k}={v}\n" for k, v in props.items()), encoding="utf-8")
        return path

    def _cluster_id(self) -> str:
        id_file = self.work_dir / "cluster.id"
        if id_file.exists():
            return id_file.read_text(encoding="utf-8").strip()
        # What `kafka-storage.sh random-uuid` prints: URL-safe base64 of a UUID, no padding, and (as
        # Kafka's Uuid.randomUuid) never starting with "-", which a command line takes for an option.
        cluster_id = "-"
        while cluster_id.startswith("-"):
            cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        id_file.write_text(cluster_id, encoding="utf-8")
        return cluster_id

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
        if self._process and self._process.poll() is None:
            return self.bootstrap_servers
        self.work_dir.mkdir(parents=True, exist_ok=True)
        for port in (self.port, self.controller_port):
            if port_open(HOST, port):
                raise BrokerError(
                    f"Port {port} on {HOST} is already in use: stop what holds it or pick another."
                )
        config = self._write_config()
        self._format_storage(config)
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
        self._wait_ready(timeout)
        return self.bootstrap_servers

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        assert self._process is not None
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise BrokerError(
                    f"The Kafka broker exited with code {self._process.returncode} while starting; "
                    f"last lines of its log:\n{self.log_tail()}"
                )
            # The PLAINTEXT socket opens only once the broker is ready; metadata then confirms it.
            if port_open(HOST, self.port) and answers_metadata(
                self.bootstrap_servers, **self.client_options()
            ):
                return
            time.sleep(0.2)
        self.stop()
        raise BrokerError(f"The Kafka broker did not become ready within {timeout:.0f} s:\n{self.log_tail()}")

    def log_tail(self, lines: int = 20) -> str:
        for path in (self.log_file, self.work_dir / "logs" / "stdout.log"):
            if path.exists() and path.stat().st_size:
                return "\n".join(path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])
        return "(no log output)"

    def stop(self, timeout: float = 30.0) -> None:
        """Orderly shutdown (SIGTERM), then SIGKILL if the JVM has not ended within ``timeout``."""
        if self._process is not None:
            terminate(self._process, timeout)
            self._process = None

    def kill(self) -> None:
        """SIGKILL the broker, as a crash would (fault tests)."""
        if self._process is not None:
            self._process.kill()
            self._process.wait(timeout=10)
            self._process = None

    def __enter__(self) -> LocalKafkaBroker:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

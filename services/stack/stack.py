"""The whole bus on one machine: the agency sandboxes and every service, each its own process.

``lienthong run`` and the end-to-end tests start exactly this, so the tests prove what a newcomer runs.
Kafka is given (a local broker, a testcontainer or a configured cluster); the stack creates its topics,
with as many copies as ``lienthong topics create`` would make on that cluster (one on a single broker).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from schemas.agencies import Agency
from services.localkafka.process import free_port
from services.runtime.keys import ensure_key, private_key_path
from services.runtime.processes import ManagedProcess
from services.runtime.topics_admin import ensure_declared_topics

HOST = "127.0.0.1"
DEFAULT_AGENCIES: tuple[Agency, ...] = tuple(Agency)  # every agency has a connector and a sandbox


def agency_url_variable(agency: Agency) -> str:
    """The environment variable that tells a connector where its agency system answers."""
    return f"LIENTHONG_{agency.value.upper()}_URL"


@dataclass
class StackPorts:
    intake: int = 8000
    router: int = 8001
    tracker: int = 8002
    connectors: dict[Agency, int] = field(default_factory=dict)
    sandboxes: dict[Agency, int] = field(default_factory=dict)

    @classmethod
    def fixed(cls, agencies: Sequence[Agency]) -> StackPorts:
        """The documented ports of the local stack (the Prometheus scrape config uses them)."""
        return cls(
            connectors={a: 8100 + i for i, a in enumerate(Agency) if a in agencies},
            sandboxes={a: 8200 + i for i, a in enumerate(Agency) if a in agencies},
        )

    @classmethod
    def free(cls, agencies: Sequence[Agency]) -> StackPorts:
        """Free ports, so that a test's stack never collides with anything else running."""
        return cls(
            intake=free_port(),
            router=free_port(),
            tracker=free_port(),
            connectors={a: free_port() for a in agencies},
            sandboxes={a: free_port() for a in agencies},
        )


class LocalStack:
    def __init__(
        self,
        bootstrap_servers: str,
        work_dir: Path,
        *,
        topic_prefix: str = "",
        agencies: Sequence[Agency] = DEFAULT_AGENCIES,
        ports: StackPorts | None = None,
        sandbox_args: Mapping[Agency, Sequence[str]] | None = None,
        service_env: Mapping[str, str] | None = None,
    ) -> None:
        self.bootstrap_servers = bootstrap_servers
        self.work_dir = work_dir
        self.topic_prefix = topic_prefix
        self.agencies = tuple(agencies)
        self.ports = ports or StackPorts.fixed(self.agencies)
        self.sandbox_args = dict(sandbox_args or {})
        self.service_env = dict(service_env or {})
        self.log_dir = work_dir / "logs"
        self.processes: dict[str, ManagedProcess] = {}
        # Event signing: one key per producer, made on first start (kept across restarts of the stack).
        self.private_keys_dir = work_dir / "keys" / "private"
        self.trust_store = work_dir / "keys" / "trusted"

    def url(self, port: int) -> str:
        return f"http://{HOST}:{port}"

    @property
    def intake_url(self) -> str:
        return self.url(self.ports.intake)

    @property
    def tracker_url(self) -> str:
        return self.url(self.ports.tracker)

    def sandbox_url(self, agency: Agency) -> str:
        return self.url(self.ports.sandboxes[agency])

    def _service_env(self, port: int, **extra: str) -> dict[str, str]:
        return {
            "KAFKA_BOOTSTRAP_SERVERS": self.bootstrap_servers,
            "LIENTHONG_TOPIC_PREFIX": self.topic_prefix,
            "LIENTHONG_DATA_DIR": str(self.work_dir / "data"),
            "LIENTHONG_HOST": HOST,
            "LIENTHONG_PORT": str(port),
            "LIENTHONG_TRUST_STORE": str(self.trust_store),
            "LIENTHONG_LOCAL_STACK": "1",  # topics kept in one copy are expected here: no warning
            **{agency_url_variable(a): self.sandbox_url(a) for a in self.agencies},
            **self.service_env,
            **extra,
        }

    def _define(self) -> None:
        for agency in self.agencies:
            port = self.ports.sandboxes[agency]
            args = [
                "--port", str(port),
                "--db", str(self.work_dir / "agencies" / f"{agency.value}.db"),
                *self.sandbox_args.get(agency, ()),
            ]  # fmt: skip
            self._add(f"sandbox-{agency.value}", f"connectors.{agency.value}.sandbox", port, args=args)
        self._add("tracker", "services.tracker", self.ports.tracker)
        self._add("router", "services.router", self.ports.router, LIENTHONG_SIGNING_KEY=self._key("router"))
        for agency in self.agencies:
            port = self.ports.connectors[agency]
            key = self._key(f"connector.{agency.value}")
            self._add(
                f"connector-{agency.value}",
                "services.connector",
                port,
                LIENTHONG_AGENCY=agency.value,
                LIENTHONG_SIGNING_KEY=key,
            )
        self._add("intake", "services.intake", self.ports.intake, LIENTHONG_SIGNING_KEY=self._key("intake"))

    def _key(self, producer: str) -> str:
        """The private key file of ``producer`` (created, and trusted, on first use)."""
        ensure_key(producer, self.private_keys_dir, self.trust_store)
        return str(private_key_path(self.private_keys_dir, producer))

    def _add(self, name: str, module: str, port: int, *, args: Sequence[str] = (), **env: str) -> None:
        self.processes[name] = ManagedProcess(
            name,
            module,
            args,
            env=self._service_env(port, **env),
            health_url=f"{self.url(port)}/health",
            log_dir=self.log_dir,
        )

    def start(self, timeout: float = 60.0) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        (self.work_dir / "agencies").mkdir(parents=True, exist_ok=True)
        asyncio.run(ensure_declared_topics(self.bootstrap_servers, self.topic_prefix))
        self._define()
        try:
            for process in self.processes.values():
                process.start()
            for process in self.processes.values():
                process.wait_healthy(timeout)
        except BaseException:
            self.stop()
            raise

    def restart(self, name: str, timeout: float = 60.0) -> None:
        process = self.processes[name]
        process.stop()
        process.start()
        process.wait_healthy(timeout)

    def stop(self) -> None:
        # Intake first (no new work), the sandboxes last (connectors may still be finishing a call).
        for process in reversed(list(self.processes.values())):
            process.stop()

    def __enter__(self) -> LocalStack:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

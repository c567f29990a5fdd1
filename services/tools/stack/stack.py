"""The whole bus on one machine: the agency sandboxes and every service, each its own process.

``lienthong run`` and the end-to-end tests start exactly this, so the tests prove what a newcomer runs.
Kafka is given (a local broker, a testcontainer or a configured cluster); the stack creates its topics,
with as many copies as ``lienthong topics create`` would make on that cluster (one on a single broker).

With ``database_url`` every service keeps its state in that PostgreSQL database (the stack migrates
its schemas first, as ``lienthong db migrate`` does), and with ``replicas`` N it runs N instances of
intake, router, tracker and each connector — ``router-1``, ``router-2``, … on ports of their own, in
the same consumer groups, on the same database — while the sandboxes stay single. A single instance of
a service keeps its plain name (``router``), and the first instance the documented port.

Every service signs what it emits with its own key and verifies what it reads against the stack's
trust store (the keys are made on the first start, in ``work_dir``); the tracker's key signs its
replay button's replays, and the dead-letter tool has a key of its own (:func:`replay_key_of`), which
``lienthong dlq replay`` finds when it uses the running stack's broker. With ``access`` (a broker that
:mod:`services.tools.stack.secured` started, as ``lienthong run`` does) each service also connects as
its own principal, and the stack grants the principals their ACLs; without it the services connect
as the broker lets them (the tests' PLAINTEXT broker).

With ``sign_in`` (the default) client systems and staff sign in with an OpenID Connect provider
(:mod:`services.tools.stack.signin`): the one at ``oidc_issuer`` when given (a provider already running,
such as the test session's), else a local Keycloak the stack starts in ``work_dir`` and stops with
itself. Intake then requires client tokens, the supervision page signs staff in, and the session
secret is kept in an owner-only file of ``work_dir``. ``sign_in=False`` runs both open (the tracker
with ``LIENTHONG_STAFF_SIGN_IN=off``), for development and the tests that are not about sign-in.

The sandboxes' fault endpoints answer only the stack's admin token (:attr:`LocalStack.sandbox_admin_token`,
drawn on the first start into an owner-only file of ``work_dir``); only the sandboxes are given it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from connectors.sandbox_kit.admin import ADMIN_TOKEN_ENV, admin_headers
from schemas.agencies import Agency
from services.runtime.shell.topics_admin import ensure_declared_topics
from services.runtime.trust.header_signing import REPLAY_TOOL
from services.runtime.trust.keys import ensure_key, private_key_path
from services.tools.localkafka.process import distinct_free_ports
from services.tools.stack.membership import Group, MemberNames, describe_groups, partitions_text, run_sync
from services.tools.stack.processes import ManagedProcess
from services.tools.stack.secured import StackAccess
from services.tools.stack.signin import STAFF_CLIENT_ID, SignIn, private_secret

if TYPE_CHECKING:
    from services.tools.localoidc.provider import LocalOidcProvider

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
        intake, router, tracker, *rest = distinct_free_ports(3 + 2 * len(agencies))
        return cls(
            intake=intake,
            router=router,
            tracker=tracker,
            connectors=dict(zip(agencies, rest[: len(agencies)], strict=True)),
            sandboxes=dict(zip(agencies, rest[len(agencies) :], strict=True)),
        )

    def planned(self) -> set[int]:
        """Every port these name, so that further ports drawn for the stack avoid them."""
        return {self.intake, self.router, self.tracker, *self.connectors.values(), *self.sandboxes.values()}


SANDBOX_PREFIX = "sandbox-"
# How long a start or restart waits, once the instance is ready, for its groups to settle on their new
# members (long enough for a group to drop a SIGKILLed member: aiokafka's session timeout is 10 s);
# past it the stack only cannot name the new member, nothing else waits on it.
SETTLE_TIMEOUT_S = 20.0


def private_keys_of(work_dir: Path) -> Path:
    """Where a local stack whose work dir is ``work_dir`` keeps its producers' private keys."""
    return work_dir / "keys" / "private"


def replay_key_of(work_dir: Path) -> Path:
    """The dead-letter tool's private key in the local stack whose work dir is ``work_dir``."""
    return private_key_path(private_keys_of(work_dir), REPLAY_TOOL)


def connector_kind(agency: Agency) -> str:
    """The kind (and single instance's name) of an agency's connector: ``connector-land``."""
    return f"connector-{agency.value}"


def service_module(kind: str) -> str:
    """The module a service's process runs (``python -m``); every agency's connector runs the one
    connector worker."""
    return "services.connector" if kind.startswith("connector-") else f"services.{kind}"


@dataclass(frozen=True)
class Instance:
    """One process of a service: its kind (``router``, ``connector-land``), its number among the
    kind's instances (from 1), its process name, its HTTP port (``/metrics`` included) and the
    consumer groups it joins (none for intake, which only answers HTTP)."""

    kind: str
    index: int
    name: str
    port: int
    groups: tuple[str, ...]


@dataclass(frozen=True)
class Holding:
    """What one instance holds in one of its consumer groups, as the group's coordinator says."""

    instance: str
    kind: str
    group: str
    partitions: Mapping[str, tuple[int, ...]]


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
        replicas: int = 1,
        database_url: str | None = None,
        access: StackAccess | None = None,
        sign_in: bool = True,
        oidc_issuer: str | None = None,
    ) -> None:
        """``database_url``: the PostgreSQL database of every service's state (also taken from
        ``service_env``'s ``LIENTHONG_DATABASE_URL``); None keeps each store in its SQLite file under
        ``work_dir``, whatever this process's environment says. ``replicas``: instances of each
        service (more than one needs ``database_url``: a SQLite file belongs to one process).
        ``access``: the principals of a secured broker (SASL/SCRAM and ACLs); None for a broker that
        asks for none. ``sign_in``: client systems and staff sign in with the provider at ``oidc_issuer``
        (one already running), or, without it, with a local Keycloak the stack starts and stops; False
        runs intake and the supervision page without sign-in (said at start by both)."""
        self.bootstrap_servers = bootstrap_servers
        self.work_dir = work_dir
        self.topic_prefix = topic_prefix
        self.agencies = tuple(agencies)
        self.ports = ports or StackPorts.fixed(self.agencies)
        self.sandbox_args = dict(sandbox_args or {})
        self.service_env = dict(service_env or {})
        self.database_url = database_url or self.service_env.get("LIENTHONG_DATABASE_URL") or None
        if replicas < 1:
            raise ValueError(f"replicas must be at least 1, not {replicas}")
        if replicas > 1 and self.database_url is None:
            raise ValueError(
                "replicas of a service share its state: give a database_url (PostgreSQL); "
                "a SQLite store belongs to one process"
            )
        self.replicas = replicas
        self.access = access
        self.sign_in_required = sign_in
        self.oidc_issuer = oidc_issuer.rstrip("/") if oidc_issuer else None
        self.oidc_provider: LocalOidcProvider | None = None  # the provider the stack started itself
        self.log_dir = work_dir / "logs"
        self.processes: dict[str, ManagedProcess] = {}
        # Event signing: one key per producer, made on first start (kept across restarts of the stack).
        self.private_keys_dir = private_keys_of(work_dir)
        self.trust_store = work_dir / "keys" / "trusted"
        first_ports = self._first_ports()
        # The first instance keeps the documented port (Prometheus scrapes it); the others get free
        # ones, drawn together and clear of the ports planned for processes not started yet.
        more = (self.replicas - 1) * len(first_ports)
        further = iter(distinct_free_ports(more, taken=self.ports.planned()))
        self.service_instances: dict[str, list[Instance]] = {
            kind: self._instances_of(kind, [port, *(next(further) for _ in range(self.replicas - 1))])
            for kind, port in first_ports.items()
        }
        self._names = MemberNames()

    # --- where things are ---

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

    @property
    def sandbox_admin_token_file(self) -> Path:
        return self.work_dir / "secrets" / "sandbox-admin.token"

    @property
    def sandbox_admin_token(self) -> str:
        """The admin token of the sandboxes' fault endpoints (drawn once, kept owner-only)."""
        return private_secret(self.sandbox_admin_token_file)

    def sandbox_admin_headers(self) -> dict[str, str]:
        """The headers a caller of a sandbox's ``/_sandbox/faults`` sends."""
        return admin_headers(self.sandbox_admin_token)

    @property
    def session_secret_file(self) -> Path:
        """The supervision page's cookie signing secret (owner-only; every tracker instance shares it)."""
        return self.work_dir / "secrets" / "session.secret"

    @property
    def sign_in(self) -> SignIn | None:
        """The provider client systems and staff sign in with (None with ``sign_in=False``); known once
        the stack is started, or given."""
        if not self.sign_in_required or self.oidc_issuer is None:
            return None
        return SignIn(self.oidc_issuer)

    @property
    def secured(self) -> bool:
        """Whether each service connects as its own principal, under ACLs."""
        return self.access is not None

    def client_options(self, principal: str | None = None) -> dict[str, Any]:
        """aiokafka keyword arguments to reach the stack's broker: as ``principal`` (a service's
        name: ``intake``, ``connector-land``), else as the stack's tools do (the super user);
        nothing on a broker that asks for no credentials."""
        return self.access.options(principal) if self.access is not None else {}

    @property
    def replay_key(self) -> Path:
        """The dead-letter tool's key file (``lienthong dlq replay --signing-key``), made on start."""
        return replay_key_of(self.work_dir)

    def kinds(self) -> list[str]:
        """The services, in the order they start: tracker, router, the connectors, intake."""
        return list(self.service_instances)

    def instances(self, kind: str) -> list[Instance]:
        """The instances of a service (``router``, ``connector-land``), first to last."""
        return list(self.service_instances[kind])

    def instance(self, name: str) -> Instance:
        for instances in self.service_instances.values():
            for instance in instances:
                if instance.name == name:
                    return instance
        raise KeyError(f"no service instance named {name!r}")

    def urls(self, kind: str) -> list[str]:
        """The base URL of every instance of a service (every tracker answers the whole picture on
        PostgreSQL; every intake takes submissions)."""
        return [self.url(instance.port) for instance in self.service_instances[kind]]

    def _first_ports(self) -> dict[str, int]:
        return {
            "tracker": self.ports.tracker,
            "router": self.ports.router,
            **{connector_kind(a): self.ports.connectors[a] for a in self.agencies},
            "intake": self.ports.intake,
        }

    def _groups(self, kind: str) -> tuple[str, ...]:
        if kind == "intake":
            return ()
        group = f"{self.topic_prefix}{kind}"
        return (group, f"{group}-retry") if kind.startswith("connector-") else (group,)

    def _instances_of(self, kind: str, ports: Sequence[int]) -> list[Instance]:
        return [
            Instance(kind, i, kind if self.replicas == 1 else f"{kind}-{i}", port, self._groups(kind))
            for i, port in enumerate(ports, start=1)
        ]

    # --- the processes ---

    def _service_env(self, port: int, **extra: str) -> dict[str, str]:
        return {
            "KAFKA_BOOTSTRAP_SERVERS": self.bootstrap_servers,
            "LIENTHONG_TOPIC_PREFIX": self.topic_prefix,
            "LIENTHONG_DATA_DIR": str(self.work_dir / "data"),
            "LIENTHONG_DATABASE_URL": self.database_url or "",  # empty: the SQLite files in the data dir
            "LIENTHONG_HOST": HOST,
            "LIENTHONG_PORT": str(port),
            "LIENTHONG_TRUST_STORE": str(self.trust_store),
            "LIENTHONG_INSECURE_DEV": "0",  # every service has its keys here: none may start without
            "LIENTHONG_LOCAL_STACK": "1",  # topics kept in one copy are expected here: no warning
            **{agency_url_variable(a): self.sandbox_url(a) for a in self.agencies},
            **self.service_env,
            **extra,
        }

    def _sign_in_env(self, kind: str, port: int) -> dict[str, str]:
        """What intake and the tracker are told about signing in."""
        sign_in = self.sign_in
        if kind == "intake":
            if sign_in is None:
                return {"LIENTHONG_OIDC_ISSUER": ""}  # none inherited: submissions open, intake says so
            return {
                "LIENTHONG_OIDC_ISSUER": sign_in.issuer,
                "LIENTHONG_OIDC_CLIENTS_FILE": str(sign_in.clients_file),
            }
        if kind == "tracker":
            if sign_in is None:
                return {"LIENTHONG_STAFF_SIGN_IN": "off", "LIENTHONG_OIDC_ISSUER": ""}
            private_secret(self.session_secret_file)
            return {
                "LIENTHONG_STAFF_SIGN_IN": "on",
                "LIENTHONG_OIDC_ISSUER": sign_in.issuer,
                "LIENTHONG_OIDC_CLIENT_ID": STAFF_CLIENT_ID,
                "LIENTHONG_PUBLIC_URL": self.url(port),
                "LIENTHONG_SESSION_SECRET_FILE": str(self.session_secret_file),
            }
        return {}

    def _start_provider(self, timeout: float) -> None:
        """Start the stack's own OIDC provider (sign-in on, no issuer given)."""
        if not self.sign_in_required or self.oidc_issuer is not None:
            return
        from services.tools.localoidc.provider import LocalOidcProvider

        provider = LocalOidcProvider(self.work_dir / "oidc")
        self.oidc_provider = provider
        self.oidc_issuer = provider.start(timeout=max(timeout, 180.0))

    def _stop_provider(self) -> None:
        provider, self.oidc_provider = self.oidc_provider, None
        if provider is not None:
            provider.stop()
            self.oidc_issuer = None

    def _define(self) -> None:
        admin = {ADMIN_TOKEN_ENV: self.sandbox_admin_token}
        for agency in self.agencies:
            port = self.ports.sandboxes[agency]
            args = [
                "--port", str(port),
                "--db", str(self.work_dir / "agencies" / f"{agency.value}.db"),
                *self.sandbox_args.get(agency, ()),
            ]  # fmt: skip
            self._add(
                f"{SANDBOX_PREFIX}{agency.value}",
                f"connectors.{agency.value}.sandbox",
                port,
                args=args,
                ready=False,
                **admin,
            )
        keys = {kind: self._key(self._producer(kind)) for kind in self.service_instances}
        self._key(REPLAY_TOOL)  # lienthong dlq replay signs with it (trusted before the services start)
        for kind, instances in self.service_instances.items():
            env: dict[str, str] = {}
            if kind in keys:
                env["LIENTHONG_SIGNING_KEY"] = keys[kind]
            if kind.startswith("connector-"):
                env["LIENTHONG_AGENCY"] = kind.removeprefix("connector-")
            if self.access is not None:
                env |= self.access.service_env(kind)  # the principals are named as the kinds
            env[ADMIN_TOKEN_ENV] = ""  # the sandboxes' alone
            for instance in instances:
                own = env | self._sign_in_env(kind, instance.port)
                self._add(instance.name, service_module(kind), instance.port, ready=True, **own)

    @staticmethod
    def _producer(kind: str) -> str:
        """The producer a service's events are signed as (every instance of it signs with its key)."""
        return kind.replace("connector-", "connector.", 1)

    def _key(self, producer: str) -> str:
        """The private key file of ``producer`` (created, and trusted, on first use)."""
        ensure_key(producer, self.private_keys_dir, self.trust_store)
        return str(private_key_path(self.private_keys_dir, producer))

    def _add(
        self, name: str, module: str, port: int, *, args: Sequence[str] = (), ready: bool = False, **env: str
    ) -> None:
        self.processes[name] = ManagedProcess(
            name,
            module,
            args,
            env=self._service_env(port, **env),
            health_url=f"{self.url(port)}/health",
            ready_url=f"{self.url(port)}/ready" if ready else None,
            log_dir=self.log_dir,
        )

    def start(self, timeout: float = 60.0) -> None:
        """Create the topics, migrate the database's schemas (with ``database_url``), then start the
        sandboxes and the first instance of every service and wait until each answers; with replicas,
        the further instances start one round at a time, each round once the consumer groups have
        settled on the round before (which is how the stack knows which group member is which)."""
        self.log_dir.mkdir(parents=True, exist_ok=True)
        (self.work_dir / "agencies").mkdir(parents=True, exist_ok=True)
        asyncio.run(
            ensure_declared_topics(self.bootstrap_servers, self.topic_prefix, **self.client_options())
        )
        if self.access is not None:
            asyncio.run(self.access.grant(self.bootstrap_servers, self.topic_prefix))
        if self.database_url:
            from services.tools.stack.migrations import migrate_all

            migrate_all(self.database_url)
        try:
            self._start_provider(timeout)
            self._define()
            first = [name for name in self.processes if name.startswith(SANDBOX_PREFIX)]
            first += [instances[0].name for instances in self.service_instances.values()]
            self._start_all(first, timeout)
            if self.replicas > 1:
                for index in range(1, self.replicas + 1):
                    wave = [instances[index - 1] for instances in self.service_instances.values()]
                    if index > 1:
                        self._start_all([i.name for i in wave], timeout)
                    for instance in wave:
                        self.processes[instance.name].wait_ready(timeout)
                    self._settle(wave, min(timeout, SETTLE_TIMEOUT_S))
        except BaseException:
            self.stop()
            raise

    def _start_all(self, names: Sequence[str], timeout: float) -> None:
        """Start the processes together, then wait until each answers (they start in parallel)."""
        for name in names:
            self.processes[name].start()
        for name in names:
            self.processes[name].wait_healthy(timeout)

    def restart(self, name: str, timeout: float = 60.0) -> None:
        process = self.processes[name]
        process.stop()
        process.start()
        process.wait_healthy(timeout)

    def stop(self) -> None:
        # Intake first (no new work), the sandboxes last (connectors may still be finishing a call).
        for process in reversed(list(self.processes.values())):
            process.stop()
        self._stop_provider()

    def __enter__(self) -> LocalStack:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # --- one instance at a time (fault tests) ---

    def kill_instance(self, name: str) -> None:
        """SIGKILL one instance, as a crash would; :meth:`start_instance` brings it back."""
        self.instance(name)  # a service instance, not a sandbox
        self.processes[name].kill()

    def start_instance(self, name: str, timeout: float = 60.0) -> None:
        """Start a stopped or killed instance and wait until it is ready (its consumers hold their
        partitions again: after a SIGKILL the group first waits out the dead member's session)."""
        instance = self.instance(name)
        process = self.processes[name]
        process.start()
        process.wait_ready(timeout)
        self._settle([instance], min(timeout, SETTLE_TIMEOUT_S))

    def restart_instance(self, name: str, timeout: float = 60.0) -> None:
        """Stop one instance in order (SIGTERM: it leaves its groups, finishes what it holds), start
        it again and wait until it is ready."""
        self.instance(name)
        self.processes[name].stop()
        self.start_instance(name, timeout)

    def rolling_restart(self, kind: str, timeout: float = 60.0) -> list[float]:
        """Restart every instance of a service in turn, each once the one before is ready again, as
        a Kubernetes rollout does; the seconds each instance took from its stop to ready."""
        took = []
        for instance in self.instances(kind):
            began = time.monotonic()
            self.restart_instance(instance.name, timeout)
            took.append(time.monotonic() - began)
        return took

    # --- who holds which partitions ---

    def _describe(self, groups: Sequence[str]) -> dict[str, Group]:
        return run_sync(describe_groups(self.bootstrap_servers, groups, self.client_options()))

    def _running(self, kind: str) -> list[str]:
        return [i.name for i in self.service_instances[kind] if self.processes[i.name].is_running()]

    def _settle(self, instances: Sequence[Instance], timeout: float) -> None:
        """Wait until each group of ``instances`` has one member per running instance of its service
        and is stable, then name its one new member after the instance that joined it. A group that
        does not settle in time is left unnamed (its members are shown by their Kafka ids)."""
        joined = {group: instance for instance in instances for group in instance.groups}
        if not joined or self.replicas == 1:
            return
        for instance in instances:
            self._names.forget(instance.name)
        deadline = time.monotonic() + timeout
        settled: dict[str, Group] = {}
        while joined.keys() - settled.keys() and time.monotonic() < deadline:
            described = self._describe(sorted(joined.keys() - settled.keys()))
            for name, group in described.items():
                expected = len(self._running(joined[name].kind))
                if group.state == "Stable" and len(group.members) == expected:
                    settled[name] = group
            if joined.keys() - settled.keys():
                time.sleep(0.2)
        for name, group in settled.items():
            self._names.learn(group, joined[name].name)

    def holdings(self) -> list[Holding]:
        """Which instance holds which partitions of each consumer group now."""
        kinds = {
            group: kind for kind, instances in self.service_instances.items() for group in instances[0].groups
        }
        described = self._describe(sorted(kinds))
        found = []
        for name, group in sorted(described.items()):
            kind = kinds[name]
            names = [i.name for i in self.service_instances[kind]]
            for member in group.members:
                instance = self._names.name(group, member, names, self._running(kind))
                found.append(Holding(instance, kind, name, member.partitions))
        return found

    def assignment_lines(self) -> list[str]:
        """One line per instance: ``router-1: dossier.received[0,2,4] handoff.outcome[1,3,5]`` (the
        partitions of all its groups; intake joins none)."""
        by_instance: dict[str, dict[str, tuple[int, ...]]] = {}
        for holding in self.holdings():
            by_instance.setdefault(holding.instance, {}).update(holding.partitions)
        order = [i.name for instances in self.service_instances.values() for i in instances]
        lines = []
        for name in sorted(by_instance, key=lambda n: (order.index(n) if n in order else len(order), n)):
            gone = name in self.processes and not self.processes[name].is_running()
            label = f"{name} (not running; its group has not noticed yet)" if gone else name
            lines.append(f"{label}: {partitions_text(by_instance[name], self.topic_prefix)}")
        return lines

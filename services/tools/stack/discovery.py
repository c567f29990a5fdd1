"""How a command finds the Kafka cluster (and topic prefix, and tracker data) it is meant for.

In this order: the command's own option; ``KAFKA_BOOTSTRAP_SERVERS``; the broker of a running
``lienthong run`` stack; a running ``lienthong broker start`` broker; ``127.0.0.1:9092``. A command that
falls back to a stack or broker it found says so (:attr:`KafkaTarget.notice`), so nobody is surprised
by where it went.

``lienthong run`` records itself while it runs, one small JSON file per run (:func:`recorded`) in
``$LIENTHONG_STACK_STATE_DIR`` (default: ``stacks/`` in the cache). A file whose process is gone, or
whose pid now belongs to another process, is stale: it is ignored and removed.

A stack whose broker asks for credentials (SASL/SCRAM, as ``lienthong run``'s does) records where the
password of its tools' principal is kept (never the password itself), so a command that found its
broker reaches it too (:meth:`KafkaTarget.client_options`). A cluster given by option or environment
is reached with the credentials of the environment (``LIENTHONG_SECURITY_PROTOCOL``, ``LIENTHONG_SASL_*``).
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from services.runtime.shell.settings import KafkaSettings, client_security_options
from services.tools.localkafka import daemon
from services.tools.localkafka.jars import cache_root
from services.tools.localkafka.process import pid_alive

DEFAULT_BOOTSTRAP = "127.0.0.1:9092"
STATE_DIR_VARIABLE = "LIENTHONG_STACK_STATE_DIR"
DEFAULT_DATA_DIR = Path("var")


def process_start_ticks(pid: int) -> int | None:
    """When ``pid`` started, in clock ticks since boot (``/proc/<pid>/stat``); None where unknown.

    Together with the pid it names one process: a pid reused after a killed run starts later.
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii", errors="replace")
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[-1].split()  # after the command name, which may hold spaces
    try:
        return int(fields[19])  # field 22 of stat(5); fields[0] is field 3
    except (IndexError, ValueError):
        return None


@dataclass(frozen=True)
class StackState:
    """A running ``lienthong run``: its process, its broker, its topic prefix and where it keeps data."""

    pid: int
    bootstrap_servers: str
    topic_prefix: str
    work_dir: str
    data_dir: str  # the services' LIENTHONG_DATA_DIR (the tracker's handoff log is there)
    tracker_url: str
    started_ticks: int | None = None
    # A broker that asks for credentials: its SASL mechanism, and the tools' principal and password file.
    sasl_mechanism: str | None = None
    sasl_username: str | None = None
    sasl_password_file: str | None = None
    # Sign-in: the issuer of the provider the stack's intake and supervision page trust (None: sign-in
    # off, --no-sign-in), and the owner-only file of the sandboxes' admin token (fault endpoints).
    oidc_issuer: str | None = None
    sandbox_admin_token_file: str | None = None

    @classmethod
    def of_this_process(
        cls,
        bootstrap_servers: str,
        topic_prefix: str,
        work_dir: Path,
        data_dir: Path,
        tracker_url: str,
        *,
        sasl: tuple[str, str, Path] | None = None,
        oidc_issuer: str | None = None,
        sandbox_admin_token_file: Path | None = None,
    ) -> StackState:
        """``sasl``: the mechanism, principal and password file the stack's tools use on its broker;
        ``oidc_issuer``: the provider it signs in with (None: sign-in off)."""
        pid = os.getpid()
        mechanism, username, password_file = sasl if sasl is not None else (None, None, None)
        return cls(
            pid=pid,
            bootstrap_servers=bootstrap_servers,
            topic_prefix=topic_prefix,
            work_dir=str(work_dir.resolve()),
            data_dir=str(data_dir.resolve()),
            tracker_url=tracker_url,
            started_ticks=process_start_ticks(pid),
            sasl_mechanism=mechanism,
            sasl_username=username,
            sasl_password_file=str(password_file.resolve()) if password_file is not None else None,
            oidc_issuer=oidc_issuer,
            sandbox_admin_token_file=(
                str(sandbox_admin_token_file.resolve()) if sandbox_admin_token_file is not None else None
            ),
        )

    def alive(self) -> bool:
        if not pid_alive(self.pid):
            return False
        if self.started_ticks is None:
            return True
        return process_start_ticks(self.pid) in (None, self.started_ticks)


def state_dir(environ: Mapping[str, str] | None = None) -> Path:
    explicit = (os.environ if environ is None else environ).get(STATE_DIR_VARIABLE)
    return Path(explicit) if explicit else cache_root() / "stacks"


@contextmanager
def recorded(state: StackState, directory: Path | None = None) -> Iterator[Path]:
    """Record ``state`` while the block runs; the file is removed when it ends, however it ends."""
    folder = directory or state_dir()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{state.pid}.json"
    partial = path.with_suffix(".json.partial")
    partial.write_text(json.dumps(asdict(state)), encoding="utf-8")
    partial.replace(path)  # a reader never sees half a file
    try:
        yield path
    finally:
        path.unlink(missing_ok=True)


def running_stacks(directory: Path | None = None) -> list[StackState]:
    """The ``lienthong run`` stacks running now, the newest first; stale files are removed."""
    folder = directory or state_dir()
    stacks: list[StackState] = []
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else ():
        try:
            state = StackState(**json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError, TypeError):
            continue  # unreadable, or written by another version: not ours to judge or remove
        if state.alive():
            stacks.append(state)
        else:
            with contextlib.suppress(OSError):
                path.unlink()
    return sorted(stacks, key=lambda s: s.started_ticks or 0, reverse=True)


def running_daemon() -> daemon.BrokerState | None:
    """The broker of ``lienthong broker start``, when every one of its nodes is alive."""
    try:
        state = daemon.read_state()
    except (OSError, ValueError, TypeError):
        return None
    if state is None or not all(pid_alive(node.pid) for node in state.members):
        return None
    return state


@dataclass(frozen=True)
class KafkaTarget:
    """The cluster and topic prefix a command uses, where they came from, and the line that says so
    (None when the operator gave them, by option or environment)."""

    bootstrap_servers: str
    topic_prefix: str
    source: str  # "option", "environment", "stack", "daemon" or "default"
    notice: str | None = None
    stack: StackState | None = None  # the running stack whose broker this is (source "stack")

    def client_options(self) -> dict[str, Any]:
        """aiokafka keyword arguments to reach the cluster: the running stack's tools' credentials
        when it is its broker and that asks for some, else those of the environment."""
        stack = self.stack
        if stack is not None and stack.sasl_username and stack.sasl_password_file:
            password = Path(stack.sasl_password_file).read_text(encoding="utf-8").strip()
            return {
                "security_protocol": "SASL_PLAINTEXT",
                "sasl_mechanism": stack.sasl_mechanism or "SCRAM-SHA-512",
                "sasl_plain_username": stack.sasl_username,
                "sasl_plain_password": password,
            }
        return client_security_options(KafkaSettings(bootstrap_servers=self.bootstrap_servers))


def _stack_notice(stack: StackState, others: int) -> str:
    more = f"; {others + 1} stacks run, this is the newest" if others else ""
    return (
        f"using the running local stack's broker at {stack.bootstrap_servers} "
        f"(lienthong run, pid {stack.pid}, work dir {stack.work_dir}{more})"
    )


def choose_kafka(
    bootstrap_servers: str | None = None,
    topic_prefix: str | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    stacks_dir: Path | None = None,
) -> KafkaTarget:
    """The cluster a command talks to (see the module's docstring for the order), and its topic prefix:
    ``topic_prefix`` if given, else ``LIENTHONG_TOPIC_PREFIX``, else the stack's prefix when the stack's
    broker is used, else none."""
    env = os.environ if environ is None else environ
    prefix = topic_prefix if topic_prefix is not None else env.get("LIENTHONG_TOPIC_PREFIX")
    if bootstrap_servers:
        return KafkaTarget(bootstrap_servers, prefix or "", "option")
    configured = env.get("KAFKA_BOOTSTRAP_SERVERS")
    if configured:
        return KafkaTarget(configured, prefix or "", "environment")
    stacks = running_stacks(stacks_dir or state_dir(env))
    if stacks:
        stack = stacks[0]
        chosen = stack.topic_prefix if prefix is None else prefix
        notice = _stack_notice(stack, len(stacks) - 1)
        if chosen:
            notice += f", topic prefix {chosen!r}"
        return KafkaTarget(stack.bootstrap_servers, chosen, "stack", notice, stack)
    broker = running_daemon()
    if broker is not None:
        return KafkaTarget(
            broker.bootstrap_servers,
            prefix or "",
            "daemon",
            f"using the running local broker at {broker.bootstrap_servers} (lienthong broker start, "
            f"pid {broker.pid})",
        )
    return KafkaTarget(
        DEFAULT_BOOTSTRAP,
        prefix or "",
        "default",
        f"using {DEFAULT_BOOTSTRAP}: no --bootstrap-servers, no KAFKA_BOOTSTRAP_SERVERS, and no running "
        "lienthong run or lienthong broker start found",
    )


def choose_data_dir(
    *, environ: Mapping[str, str] | None = None, stacks_dir: Path | None = None
) -> tuple[Path, str | None]:
    """Where the tracker keeps its data: ``LIENTHONG_DATA_DIR``, else the running stack's, else
    ``var``; with the line that says so when it was found rather than given."""
    env = os.environ if environ is None else environ
    explicit = env.get("LIENTHONG_DATA_DIR")
    if explicit:
        return Path(explicit), None
    stacks = running_stacks(stacks_dir or state_dir(env))
    if stacks:
        stack = stacks[0]
        return Path(stack.data_dir), (
            f"using the running local stack's data at {stack.data_dir} (lienthong run, pid {stack.pid})"
        )
    return DEFAULT_DATA_DIR, None

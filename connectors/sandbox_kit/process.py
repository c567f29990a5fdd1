"""Run a sandbox as its own OS process (tests and the local stack).

    with SandboxProcess() as sandbox:
        base_url = sandbox.start("connectors.land.sandbox", db_path=tmp_path / "land.db")
        ...                      # real HTTP against base_url
    # stopped: SIGTERM, then SIGKILL after stop_timeout

Each ``SandboxProcess`` draws an admin token for the sandbox's fault endpoints (``admin_token``;
send ``admin_headers`` with ``/_sandbox/faults`` calls); ``fault_endpoints=False`` starts a sandbox
that serves none.

On Linux the child asks the kernel to SIGTERM it when its parent dies
(``prctl(PR_SET_PDEATHSIG)``), so a killed test run leaves no orphan sandbox behind.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import IO, Self

import httpx

from connectors.sandbox_kit.admin import ADMIN_TOKEN_ENV, admin_headers
from connectors.sandbox_kit.faults import FaultSettings

PR_SET_PDEATHSIG = 1
_REPO_ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _die_with_parent(parent_pid: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os._exit(1)


def fault_flags(faults: FaultSettings | None) -> list[str]:
    if faults is None:
        return []
    flags = [
        "--latency-ms",
        str(faults.latency_ms),
        "--failure-rate",
        str(faults.failure_rate),
        "--error-status",
        str(faults.error_status),
        "--down-mode",
        faults.down_mode,
        "--malformed-rate",
        str(faults.malformed_rate),
    ]
    if faults.fail_next:
        flags += ["--fail-next", str(faults.fail_next)]
    if faults.seed is not None:
        flags += ["--fault-seed", str(faults.seed)]
    if faults.down_until is not None:
        remaining = (faults.down_until - datetime.now(UTC)).total_seconds()
        if remaining > 0:
            flags += ["--down-for-s", f"{remaining:.3f}"]
    return flags


class SandboxProcess:
    """One sandbox in a child process; ``start`` returns its base URL once ``/health`` answers."""

    def __init__(
        self, *, startup_timeout: float = 20.0, stop_timeout: float = 5.0, fault_endpoints: bool = True
    ) -> None:
        self.admin_token: str | None = secrets.token_urlsafe(24) if fault_endpoints else None
        self.startup_timeout = startup_timeout
        self.stop_timeout = stop_timeout
        self.base_url: str | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    @property
    def admin_headers(self) -> dict[str, str]:
        """The headers that open the sandbox's fault endpoints (none when it serves none)."""
        return admin_headers(self.admin_token) if self.admin_token else {}

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(
        self,
        app_module: str,
        port: int | None = None,
        db_path: str | os.PathLike[str] = ":memory:",
        faults: FaultSettings | None = None,
        *,
        env: Mapping[str, str] | None = None,
        extra_args: Sequence[str] = (),
    ) -> str:
        if self._process is not None:
            raise RuntimeError("this SandboxProcess is already started")
        port = port or free_port()
        command = [
            sys.executable,
            "-m",
            app_module,
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--db",
            str(db_path),
            *fault_flags(faults),
            *extra_args,
        ]
        child_env = dict(os.environ)
        child_env["PYTHONPATH"] = os.pathsep.join(
            filter(None, [str(_REPO_ROOT), child_env.get("PYTHONPATH")])
        )
        child_env.pop(ADMIN_TOKEN_ENV, None)  # never this process's own: the sandbox's is drawn here
        if self.admin_token is not None:
            child_env[ADMIN_TOKEN_ENV] = self.admin_token
        child_env.update(env or {})
        self.admin_token = child_env.get(ADMIN_TOKEN_ENV) or None
        self._log = tempfile.TemporaryFile()  # noqa: SIM115 - lives as long as the child
        parent_pid = os.getpid()
        self._process = subprocess.Popen(
            command,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=child_env,
            preexec_fn=(lambda: _die_with_parent(parent_pid)) if sys.platform.startswith("linux") else None,
        )
        self.base_url = f"http://127.0.0.1:{port}"
        try:
            self._wait_healthy()
        except BaseException:
            self.stop()
            raise
        return self.base_url

    def _wait_healthy(self) -> None:
        assert self._process is not None and self.base_url is not None
        deadline = time.monotonic() + self.startup_timeout
        with httpx.Client(base_url=self.base_url, timeout=1.0) as client:
            while True:
                if self._process.poll() is not None:
                    raise RuntimeError(
                        f"sandbox exited with code {self._process.returncode} before it was healthy:\n"
                        f"{self.output()}"
                    )
                with contextlib.suppress(httpx.TransportError):
                    if client.get("/health").status_code == 200:
                        return
                if time.monotonic() >= deadline:
                    raise TimeoutError(
                        f"sandbox at {self.base_url} not healthy within {self.startup_timeout}s:\n"
                        f"{self.output()}"
                    )
                time.sleep(0.05)

    def output(self) -> str:
        """What the child wrote to stdout/stderr so far (for failure messages)."""
        if self._log is None:
            return ""
        self._log.flush()
        self._log.seek(0)
        return self._log.read().decode("utf-8", errors="replace")[-4000:]

    def stop(self) -> int | None:
        """SIGTERM, wait ``stop_timeout``, then SIGKILL; returns the exit code."""
        process, self._process = self._process, None
        code: int | None = None
        if process is not None:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(self.stop_timeout)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(self.stop_timeout)
            code = process.returncode
        if self._log is not None:
            self._log.close()
            self._log = None
        return code

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

"""Running a service as its own OS process, waiting until it is healthy, and stopping it.

The local stack, the end-to-end tests and the fault tests all start services this way, so what they
prove is what operators run. Children die with their parent (no orphans after an interrupted run).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from services.tools.localkafka.process import child_preexec, port_open, terminate


class ProcessFailed(RuntimeError):
    """A managed process exited or did not become healthy in time."""


class ManagedProcess:
    def __init__(
        self,
        name: str,
        module: str,
        args: Sequence[str] = (),
        *,
        env: Mapping[str, str] | None = None,
        health_url: str | None = None,
        ready_url: str | None = None,
        log_dir: Path | None = None,
    ) -> None:
        """``health_url`` answers 200 once the process serves (liveness); ``ready_url``, once it also
        does its work (a service: its consumers hold their partitions, Kafka answers)."""
        self.name = name
        self.argv = [sys.executable, "-m", module, *args]
        self.env = {**os.environ, **(env or {})}
        self.health_url = health_url
        self.ready_url = ready_url
        self.log_path = (log_dir / f"{name}.log") if log_dir else None
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    def is_running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> None:
        """Start the process; refused when something already answers on its port, since that other
        process would answer its health checks and hide that it cannot bind."""
        if self.is_running():
            return
        self._refuse_a_taken_port()
        output = self.log_path.open("ab") if self.log_path else subprocess.DEVNULL
        try:
            self._process = subprocess.Popen(
                self.argv,
                env=self.env,
                stdout=output,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                preexec_fn=child_preexec(die_with_parent=True),
            )
        finally:
            if self.log_path and not isinstance(output, int):
                output.close()

    def _refuse_a_taken_port(self) -> None:
        if self.health_url is None:
            return
        address = urlsplit(self.health_url)
        host, port = address.hostname or "127.0.0.1", address.port or 80
        if port_open(host, port):
            raise ProcessFailed(f"{self.name} cannot start: another process already answers on {host}:{port}")

    def wait_healthy(self, timeout: float = 30.0) -> None:
        self._wait_for(self.health_url, "healthy", timeout)

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Until ``ready_url`` answers 200 (``health_url`` when it has none)."""
        self._wait_for(self.ready_url or self.health_url, "ready", timeout)

    def _wait_for(self, url: str | None, what: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process is None or self._process.poll() is not None:
                raise ProcessFailed(f"{self.name} exited while starting:\n{self.log_tail()}")
            if url is None:
                return
            try:
                if httpx.get(url, timeout=1.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise ProcessFailed(f"{self.name} was not {what} within {timeout:.0f} s:\n{self.log_tail()}")

    def stop(self, timeout: float = 15.0) -> None:
        if self._process is not None:
            terminate(self._process, timeout)
            self._process = None

    def kill(self) -> None:
        """SIGKILL, as a crash would (fault tests)."""
        if self._process is not None and self._process.poll() is None:
            self._process.send_signal(signal.SIGKILL)
            self._process.wait(timeout=10)
        self._process = None

    def log_tail(self, lines: int = 30) -> str:
        if self.log_path and self.log_path.exists():
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return "(no log)"

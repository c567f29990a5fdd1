"""Child processes that cannot outlive the process that started them."""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Collection, Iterable
from types import TracebackType
from typing import Self

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    # Runs in the child between fork and exec: the kernel SIGKILLs the child when the parent dies,
    # so an interrupted or killed test run leaves no broker or sandbox behind.
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def child_preexec(*, die_with_parent: bool) -> Callable[[], None] | None:
    """A ``preexec_fn`` for :class:`subprocess.Popen` (Linux only; elsewhere nothing)."""
    if die_with_parent and sys.platform.startswith("linux"):
        return _die_with_parent
    return None


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free now (fixed ports are needed: port 0 breaks advertised listeners)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def distinct_free_ports(count: int, host: str = "127.0.0.1", *, taken: Collection[int] = ()) -> list[int]:
    """``count`` different TCP ports that are free now, none of them in ``taken`` (ports planned for
    processes not started yet, which the kernel cannot know of). Every socket stays bound until all
    are drawn: drawn one after another, the kernel may hand out the same port twice."""
    held: list[socket.socket] = []
    ports: list[int] = []
    try:
        while len(ports) < count:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            held.append(sock)
            sock.bind((host, 0))
            port = int(sock.getsockname()[1])
            if port not in taken:
                ports.append(port)
    finally:
        for sock in held:
            sock.close()
    return ports


def given_or_free(*given: int | None, host: str = "127.0.0.1") -> list[int]:
    """The ports given, each one not given (None or 0) replaced by a free port; those drawn differ."""
    drawn = iter(distinct_free_ports(sum(not port for port in given), host))
    return [port or next(drawn) for port in given]


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def terminate(process: subprocess.Popen[bytes], timeout: float) -> None:
    """SIGTERM for an orderly shutdown, SIGKILL if it has not ended within ``timeout`` seconds."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


def terminate_pid(pid: int, timeout: float) -> None:
    """Like :func:`terminate` for a process this one did not start (a detached broker)."""
    terminate_pids([pid], timeout)


def terminate_pids(pids: Iterable[int], timeout: float) -> None:
    """SIGTERM to every process at once (the nodes of a cluster shut down together), then SIGKILL to
    those that have not ended within ``timeout`` seconds."""
    alive = [pid for pid in pids if pid_alive(pid)]
    for pid in alive:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while alive and time.monotonic() < deadline:
        alive = [pid for pid in alive if pid_alive(pid)]
        if alive:
            time.sleep(0.1)
    for pid in alive:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while any(pid_alive(pid) for pid in alive) and time.monotonic() < deadline:
        time.sleep(0.05)


class ChildServer:
    """A server this object runs as its child process (the broker, PostgreSQL, the OIDC provider):
    the process handle, whether it runs, a stop that escalates to SIGKILL, a kill that simulates a
    crash, and ``with`` support. Subclasses start it in :meth:`start` and keep it in ``_process``."""

    _process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60.0) -> str:
        """Start the server, wait until it answers and return its address."""
        raise NotImplementedError

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    @property
    def running(self) -> bool:
        """Whether the process runs (not whether it answers: :meth:`start` waits for that)."""
        return self._process is not None and self._process.poll() is None

    def stop(self, timeout: float = 30.0) -> None:
        """Orderly shutdown (SIGTERM), then SIGKILL if it has not ended within ``timeout``."""
        if self._process is not None:
            terminate(self._process, timeout)
            self._process = None

    def kill(self) -> None:
        """SIGKILL the server, as a crash would (fault tests)."""
        if self._process is not None:
            self._process.kill()
            self._process.wait(timeout=10)
            self._process = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

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
from collections.abc import Callable, Iterable

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

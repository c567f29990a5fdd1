"""CPU time and peak RSS of processes, read from /proc (Linux), and of this process (getrusage)."""

from __future__ import annotations

import gc
import os
import resource
import time
from dataclasses import dataclass

_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds ``pid`` has used so far (0 when it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _TICKS  # utime, stime (fields 14 and 15)


def peak_rss_mb(pid: int) -> float:
    """Peak resident set size (VmHWM) of ``pid`` in MB (0 when it is gone)."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def freeze_survivors() -> None:
    """Collect now, and keep what survives out of the cyclic collector's sight, as every service does
    once started (``services.runtime.shell.serve``): a full collection over the previous run's leftovers
    must not land inside the next measurement."""
    gc.collect()
    gc.freeze()


def own_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


@dataclass
class Stopwatch:
    """Wall time and this process's CPU time between :meth:`start` and :meth:`stop`."""

    wall_s: float = 0.0
    cpu_s: float = 0.0
    _wall0: float = 0.0
    _cpu0: float = 0.0

    def start(self) -> None:
        self._wall0, self._cpu0 = time.perf_counter(), own_cpu_seconds()

    def stop(self) -> None:
        self.wall_s = time.perf_counter() - self._wall0
        self.cpu_s = own_cpu_seconds() - self._cpu0

"""CPU time and resident memory of a process, read from /proc (Linux only).

CPU is utime + stime of every thread of the process (fields 14 and 15 of /proc/<pid>/stat), so
gRPC's own threads are included; RSS is VmRSS from /proc/<pid>/status.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

__all__ = ["ProcSample", "cpu_seconds", "rss_bytes", "sample"]

_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class ProcSample:
    """One reading of a process: CPU seconds used so far, RSS, and when it was taken (perf_counter)."""

    pid: int
    cpu_seconds: float
    rss_bytes: int
    at: float

    def cpu_share_since(self, earlier: ProcSample) -> float:
        """CPU seconds per wall second between two samples (1.0 = one full core)."""
        wall = self.at - earlier.at
        return (self.cpu_seconds - earlier.cpu_seconds) / wall if wall > 0 else 0.0


def cpu_seconds(pid: int) -> float:
    """utime + stime of the process, in seconds."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as f:
        text = f.read()
    # The command name (field 2) may contain spaces and parentheses: split after the last ')'.
    rest = text[text.rindex(")") + 2:].split()
    # rest[0] is field 3 (state), so utime (field 14) is rest[11] and stime (field 15) rest[12].
    return (int(rest[11]) + int(rest[12])) / _TICKS


def rss_bytes(pid: int) -> int:
    """VmRSS of the process, in bytes."""
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def sample(pid: int) -> ProcSample:
    """CPU and RSS of `pid` now."""
    return ProcSample(pid, cpu_seconds(pid), rss_bytes(pid), time.perf_counter())

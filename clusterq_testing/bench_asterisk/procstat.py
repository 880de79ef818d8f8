"""CPU time and resident memory of processes over a window, read from /proc (Linux only).

CPU is utime + stime of the whole process (fields 14 and 15 of /proc/<pid>/stat: every thread,
live or exited, is included), RSS is VmRSS from /proc/<pid>/status.
"""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass

from clusterq_testing.bench.procstat import cpu_seconds, rss_bytes

__all__ = ["Pids", "Start", "Usage", "Window", "cpu_seconds", "finish", "measure", "rss_bytes", "start"]

_TICKS = os.sysconf("SC_CLK_TCK")
# cpu_seconds / rss_bytes: one /proc reader for both benches (clusterq_testing.bench.procstat).


@dataclass(frozen=True)
class Usage:
    """One process over one window: CPU in cores (1.0 = one core busy) and RSS at the window's end."""

    cores: float
    rss: int


@dataclass(frozen=True)
class Pids:
    """The processes a window measures."""

    asterisk: int
    stasis: int
    coordinator: int
    own: tuple[int, ...] = ()  # the bench's other processes (itself, etcd): only to tell foreign load


@dataclass(frozen=True)
class Window:
    """Usage of each measured process over one window, and of the whole machine."""

    seconds: float
    asterisk: Usage
    stasis: Usage
    coordinator: Usage
    foreign_cores: float  # busy CPU of processes the bench did not start (should be ~0)
    steal_cores: float  # CPU the hypervisor gave to other guests while we wanted it (should be ~0)


@dataclass(frozen=True)
class Start:
    """CPU counters at the start of a window."""

    pids: Pids
    at: float
    cpu: tuple[float, float, float]
    own: float
    machine: tuple[float, float]


def _machine_seconds() -> tuple[float, float]:
    """(busy, steal) CPU seconds of all CPUs since boot, from the first line of /proc/stat."""
    with open("/proc/stat", encoding="ascii") as f:
        user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in f.readline().split()[1:9])
    return (user + nice + system + irq + softirq) / _TICKS, steal / _TICKS  # guest time is inside user


def _own_seconds(pids: tuple[int, ...]) -> float:
    total = 0.0
    for pid in pids:
        try:
            total += cpu_seconds(pid)
        except OSError:  # a helper process that ended: its CPU no longer counts either way
            pass
    return total


def start(pids: Pids) -> Start:
    """Open a window now."""
    return Start(pids, time.perf_counter(), (cpu_seconds(pids.asterisk), cpu_seconds(pids.stasis),
                                             cpu_seconds(pids.coordinator)), _own_seconds(pids.own),
                 _machine_seconds())


def finish(s: Start) -> Window:
    """Close a window opened by `start`: CPU share since then and RSS now."""
    wall = time.perf_counter() - s.at
    order = (s.pids.asterisk, s.pids.stasis, s.pids.coordinator)
    used = [cpu_seconds(pid) - c0 for pid, c0 in zip(order, s.cpu, strict=True)]
    ast, sta, coo = (Usage(u / wall, rss_bytes(pid)) for pid, u in zip(order, used, strict=True))
    ours = sum(used) + _own_seconds(s.pids.own) - s.own
    busy, steal = _machine_seconds()
    foreign = max(0.0, (busy - s.machine[0] - ours) / wall)
    return Window(wall, ast, sta, coo, foreign, (steal - s.machine[1]) / wall)


async def measure(pids: Pids, seconds: float) -> Window:
    """CPU share of each process over the next `seconds`, and its RSS at the end."""
    s = start(pids)
    await asyncio.sleep(seconds)
    return finish(s)

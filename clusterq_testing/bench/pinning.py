"""CPU pinning for the load scenarios: the leader on one CPU, the load on the others.

The throughput target is stated per core ("events/s on one core"), and on a small machine the
simulated nodes (this bench process) need about as much CPU as the leader: unpinned, the scheduler
moves both across every CPU and each preempts the other, so the leader's latency includes the load
generator's. Pinned, the leader's process (every thread: threads started later inherit the mask)
runs on the last CPU, and the bench process and etcd on the rest. Pinned, not isolated: other work
on the machine may still run on the leader's CPU.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

__all__ = ["CpuSplit", "pin_process", "pinned", "split_cpus"]


@dataclass(frozen=True)
class CpuSplit:
    """Which CPUs the leader gets and which the load generator (and etcd) get."""

    leader: frozenset[int]
    others: frozenset[int]

    def describe(self) -> str:
        """One line for the report."""
        return (f"leader on CPU {_cpus(self.leader)}; bench client (simulated nodes) and etcd on CPU "
                f"{_cpus(self.others)}")


def _cpus(cpus: Iterable[int]) -> str:
    return ",".join(str(c) for c in sorted(cpus))


def split_cpus(available: Iterable[int] | None = None) -> CpuSplit | None:
    """The last available CPU for the leader, the rest for the load; None with fewer than 2 CPUs."""
    cpus = sorted(os.sched_getaffinity(0) if available is None else available)
    if len(cpus) < 2:
        return None
    return CpuSplit(frozenset(cpus[-1:]), frozenset(cpus[:-1]))


def pin_process(pid: int, cpus: Iterable[int]) -> None:
    """Bind every thread of `pid` to `cpus`; threads it starts later inherit the mask.

    The thread list is read again until it holds no thread not pinned yet: a thread still on the
    old mask may have started another one meanwhile. A process that has exited is left alone."""
    mask = set(cpus)
    done: set[str] = set()
    while True:
        try:
            tids = set(os.listdir(f"/proc/{pid}/task")) - done
        except FileNotFoundError:
            return
        if not tids:
            return
        for tid in tids:
            # A thread may end between the listing and the call.
            with contextlib.suppress(ProcessLookupError):
                os.sched_setaffinity(int(tid), mask)
        done |= tids


@contextlib.contextmanager
def pinned(split: CpuSplit | None, leader_pid: int, load_pids: Iterable[int]) -> Iterator[None]:
    """Pin the leader and the load processes (this process included) while the block runs; the load
    processes get their masks back afterwards, the leader keeps its CPU. No-op when `split` is None."""
    if split is None:
        yield
        return
    own = os.getpid()
    pids = [own, *(p for p in load_pids if p != own)]
    before = {pid: os.sched_getaffinity(pid) for pid in pids}
    try:
        pin_process(leader_pid, split.leader)
        for pid in pids:
            pin_process(pid, split.others)
        yield
    finally:
        for pid, mask in before.items():
            pin_process(pid, mask)

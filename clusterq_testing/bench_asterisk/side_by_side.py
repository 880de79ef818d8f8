"""CPU per waiting caller of clusterq and app_queue at the same time on one Asterisk, told apart by thread.

The sequential CPU phases (scenarios.cpu_phase) measure one implementation, then the other, minutes
apart; on a shared 2-core VM the machine's speed drifts between them by +-15-30 %, more than the
difference being measured. Here N/2 callers wait in clusterq and N/2 in app_queue at once, so both
see the same machine. Asterisk runs every channel on its own thread (the caller's ;2 half runs
Stasis() or Queue() and its music generator, the ;1 "phone" half sits in the observer's app), so
the threads that appear while one implementation's callers join are that implementation's; their
CPU over the window (utime + stime of /proc/<pid>/task/<tid>/stat) is its Asterisk share. clusterq
adds its stasis app's CPU above its idle level. What no caller thread did (Asterisk's shared
threads: timers, the stasis message bus, HTTP) is reported, not attributed.
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass
from pathlib import Path

from clusterq_testing.bench_asterisk import procstat
from clusterq_testing.bench_asterisk.calls import Impl, hangup_all, wait_no_channels
from clusterq_testing.bench_asterisk.rig import Rig
from clusterq_testing.bench_asterisk.scenarios import place_or_clean, queues_of

__all__ = ["SideBySide", "side_by_side", "thread_cpu"]

_TICKS = os.sysconf("SC_CLK_TCK")


def thread_cpu(pid: int) -> dict[int, float]:
    """CPU seconds (utime + stime) of each live thread of `pid`."""
    out: dict[int, float] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            raw = (task / "stat").read_text()
        except OSError:  # the thread ended meanwhile
            continue
        fields = raw[raw.rindex(")") + 2:].split()
        out[int(task.name)] = (int(fields[11]) + int(fields[12])) / _TICKS
    return out


@dataclass(frozen=True)
class SideBySide:
    """One window with both implementations' callers waiting at once."""

    callers: int  # per implementation
    seconds: float
    cq_threads: int  # Asterisk threads that appeared while clusterq's callers joined (2 per caller expected)
    aq_threads: int
    cq_asterisk_cores: float
    aq_asterisk_cores: float
    stasis_cores: float  # the stasis app, above its idle level
    shared_cores: float  # Asterisk's other threads (not attributed)
    window: procstat.Window

    @property
    def cq_ms_per_caller(self) -> float:
        """clusterq: CPU ms per second per waiting caller (its callers' Asterisk threads + stasis app)."""
        return (self.cq_asterisk_cores + self.stasis_cores) * 1000 / self.callers

    @property
    def aq_ms_per_caller(self) -> float:
        """app_queue: CPU ms per second per waiting caller (its callers' Asterisk threads)."""
        return self.aq_asterisk_cores * 1000 / self.callers


async def side_by_side(rig: Rig) -> SideBySide:
    """Half the bench's callers in each implementation's agent-less queue at once; one window."""
    s, obs = rig.settings, rig.observer
    per_impl = max(1, s.callers // 2)  # both together load Asterisk like one full CPU phase
    await wait_no_channels(obs)
    ast = rig.pids().asterisk
    idle = await procstat.measure(rig.pids(), s.idle_window)
    before = set(thread_cpu(ast))
    cq = await place_or_clean(rig, Impl.CLUSTERQ, queues_of(Impl.CLUSTERQ).hold, "cq-sbs", per_impl)
    after_cq = set(thread_cpu(ast))
    aq = await place_or_clean(rig, Impl.APP_QUEUE, queues_of(Impl.APP_QUEUE).hold, "aq-sbs", per_impl)
    after_aq = set(thread_cpu(ast))
    cq_tids, aq_tids = after_cq - before, after_aq - after_cq
    await asyncio.sleep(s.settle)
    start, meter = thread_cpu(ast), procstat.start(rig.pids())
    await asyncio.sleep(s.cpu_window)
    end, window = thread_cpu(ast), procstat.finish(meter)
    await hangup_all(obs, (*cq, *aq))

    def cores(tids: set[int]) -> float:
        return sum(end[t] - start[t] for t in tids if t in start and t in end) / window.seconds

    cq_cores, aq_cores = cores(cq_tids), cores(aq_tids)
    shared = cores(set(start) - cq_tids - aq_tids)
    return SideBySide(per_impl, window.seconds, len(cq_tids), len(aq_tids), cq_cores, aq_cores,
                      window.stasis.cores - idle.stasis.cores, shared, window)

"""The two measurements, each for one queue implementation on the running rig.

* `cpu_phase`: an idle window, then N callers waiting with music (no agent) and a steady window in
  two halves (their difference shows the noise); CPU and RSS per waiting caller are the
  differences to idle divided by N.
* `latency_run`: N callers wait, then the agents start (clusterq: login; app_queue: unpause) and
  drain the queue for at most `drain_cap` seconds; free-to-bridged latency and order inversions come
  from the observer's events.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass

from clusterq_testing.bench_asterisk import analysis as an
from clusterq_testing.bench_asterisk import procstat
from clusterq_testing.bench_asterisk.calls import (
    Caller,
    Impl,
    hangup_all,
    hangup_everything,
    place_callers,
    wait_all,
    wait_no_channels,
)
from clusterq_testing.bench_asterisk.rig import APP_QUEUE_QUEUES, CLUSTERQ_QUEUES, QueueNames, Rig
from clusterq_testing.observer import ObservedEvent

__all__ = ["CpuResult", "RunResult", "cpu_phase", "latency_run", "place_or_clean", "queues_of"]


def queues_of(impl: Impl) -> QueueNames:
    """The queue names of one implementation."""
    return CLUSTERQ_QUEUES if impl is Impl.CLUSTERQ else APP_QUEUE_QUEUES


@dataclass(frozen=True)
class CpuResult:
    """Idle and loaded windows of one implementation with `callers` waiting."""

    impl: Impl
    callers: int
    idle: procstat.Window
    halves: tuple[procstat.Window, procstat.Window]  # the steady window, first and second half
    channels_during: int  # channels up after the steady window (2 per caller expected)
    stasis_failures: int  # "action ... failed" lines the stasis app logged during the phase

    def _extra(self, w: procstat.Window, with_stasis: bool) -> float:
        ast = w.asterisk.cores - self.idle.asterisk.cores
        sta = w.stasis.cores - self.idle.stasis.cores
        return ast + (sta if with_stasis else 0.0)

    def cores(self, with_stasis: bool) -> float:
        """Extra cores used by the N waiting callers (Asterisk, plus the stasis app if asked)."""
        return sum(self._extra(w, with_stasis) for w in self.halves) / 2

    @property
    def own_processes(self) -> bool:
        """Whether the stasis app is one of this implementation's processes."""
        return self.impl is Impl.CLUSTERQ

    @property
    def cpu_ms_per_caller(self) -> float:
        """CPU milliseconds per second per waiting caller (= milli-cores), own processes."""
        return self.cores(self.own_processes) * 1000 / self.callers

    @property
    def noise_ms_per_caller(self) -> float:
        """Half the difference between the two halves, in the same unit (a rough noise figure)."""
        a, b = (self._extra(w, self.own_processes) for w in self.halves)
        return abs(a - b) / 2 * 1000 / self.callers

    def rss_kib_per_caller(self, with_stasis: bool) -> float:
        """Extra resident memory per waiting caller (Asterisk, plus the stasis app if asked)."""
        end = self.halves[1]
        extra = end.asterisk.rss - self.idle.asterisk.rss
        if with_stasis:
            extra += end.stasis.rss - self.idle.stasis.rss
        return extra / 1024 / self.callers


async def place_or_clean(rig: Rig, impl: Impl, queue: str, tag: str, count: int | None = None
                         ) -> tuple[Caller, ...]:
    """place_callers (`count`, default the bench's callers); on failure hang up everything first,
    so the next step starts clean."""
    try:
        return await place_callers(rig.observer, impl, queue, rig.settings.callers if count is None else count, tag)
    except BaseException:
        await hangup_everything(rig.observer)
        raise


async def cpu_phase(rig: Rig, impl: Impl) -> CpuResult:
    """Idle window, N callers waiting with music in the agent-less queue, steady window, hang up."""
    s = rig.settings
    await wait_no_channels(rig.observer)
    failures = rig.stasis_failures()
    idle = await procstat.measure(rig.pids(), s.idle_window)
    callers = await place_or_clean(rig, impl, queues_of(impl).hold, f"{impl.value}-cpu")
    await asyncio.sleep(s.settle)
    first = await procstat.measure(rig.pids(), s.cpu_window / 2)
    second = await procstat.measure(rig.pids(), s.cpu_window / 2)
    up = len(await rig.observer.channel_ids())
    await hangup_all(rig.observer, callers)
    return CpuResult(impl, s.callers, idle, (first, second), up, rig.stasis_failures() - failures)


@dataclass(frozen=True)
class RunResult:
    """One drain of N waiting callers by the agents."""

    impl: Impl
    queue: str
    announcements: bool
    callers: int
    ended: int  # callers gone by the end of the drain (served or not)
    connected: int
    latency: an.Latencies
    by_bridge: an.Inversions  # served = bridged with an agent (unserved callers count as last)
    by_assignment: an.Inversions  # served = the agent leg that got bridged was created
    by_decision: an.Inversions | None  # clusterq only: the leader's offer order among connected callers
    drain_seconds: float
    capped: bool  # the drain hit drain_cap before every caller was gone
    cpu: procstat.Window  # the processes during the drain
    statuses: tuple[tuple[str, int], ...]  # how callers came back to the dialplan
    stasis_failures: int  # "action ... failed" lines the stasis app logged during the run


async def latency_run(rig: Rig, impl: Impl, announcements: bool) -> RunResult:
    """N callers wait; the agents start; the queue drains (or drain_cap passes); analyse the events."""
    obs = rig.observer
    q = queues_of(impl)
    queue = q.announced if announcements else q.plain
    await wait_no_channels(obs)
    failures = rig.stasis_failures()
    mark = obs.mark()
    callers = await place_or_clean(rig, impl, queue, f"{impl.value}-{'ann' if announcements else 'plain'}")
    try:
        return await _drain(rig, impl, announcements, queue, callers, mark, failures)
    except BaseException:
        await hangup_everything(obs)  # the next step must start without leftovers
        raise


async def _drain(rig: Rig, impl: Impl, announcements: bool, queue: str, callers: tuple[Caller, ...], mark: int,
                 failures: int) -> RunResult:
    s, obs = rig.settings, rig.observer
    await asyncio.sleep(1.0)  # music (and the first announcements) running before any agent
    ids = {c.queue_id for c in callers}
    meter = procstat.start(rig.pids())
    t0 = time.monotonic()
    await (rig.login(queue) if impl is Impl.CLUSTERQ else rig.app_queue_pause(queue, paused=False))
    try:
        def gone(e: ObservedEvent) -> str | None:
            return e.channel_id if e.type == "ChannelDestroyed" and e.channel_id in ids else None
        left = await wait_all(obs, ids, gone, mark, s.drain_cap)
        drain, end, cpu = time.monotonic() - t0, obs.mark(), procstat.finish(meter)
    finally:
        await (rig.logout() if impl is Impl.CLUSTERQ else rig.app_queue_pause(queue, paused=True))
    events = obs.events[mark:end]
    index = {c.queue_id: c.index for c in callers}
    conns = an.connections((e.raw for e in events), index)
    unserved = sorted(set(index.values()) - {c.caller_index for c in conns})
    result_name = "ClusterqResult" if impl is Impl.CLUSTERQ else "AppQueueResult"
    statuses = Counter(u.fields.get("status", "") or "(empty)" for u in obs.user_events(result_name)
                       if u.channel_id in index)
    await hangup_all(obs, callers)  # the ones still waiting at the cap; waits until no channel is left
    decided = [(float(seq), c.caller_index) for c in conns if (seq := an.offer_sequence(c.leg_id)) is not None]
    joined = [c.joined for c in sorted(callers, key=lambda c: c.index)]
    return RunResult(
        impl=impl, queue=queue, announcements=announcements, callers=len(callers),
        ended=len(callers) - len(left), connected=len(conns), latency=an.latencies(conns),
        by_bridge=an.inversions([(c.bridged, c.caller_index) for c in conns], unserved, joined),
        by_assignment=an.inversions([(c.leg_created, c.caller_index) for c in conns], unserved, joined),
        by_decision=an.inversions(decided, joined=joined) if impl is Impl.CLUSTERQ else None,
        drain_seconds=drain, capped=bool(left), cpu=cpu, statuses=tuple(sorted(statuses.items())),
        stasis_failures=rig.stasis_failures() - failures,
    )

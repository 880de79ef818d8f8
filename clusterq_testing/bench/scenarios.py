"""Throughput, latency and memory scenarios: one real leader, four simulated nodes over loopback gRPC.

Each scenario starts its own coordinator replica (own etcd prefix) so RSS and CPU readings belong
to that scenario alone, and stops it by PID at the end.
"""

from __future__ import annotations

import asyncio
import gc
import os
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import grpc

from clusterq_testing.bench import inproc
from clusterq_testing.bench.harness import QUEUE, Coordinators
from clusterq_testing.bench.load import drain, fill, run_paced, run_saturated
from clusterq_testing.bench.pinning import CpuSplit, pinned
from clusterq_testing.bench.procstat import sample
from clusterq_testing.bench.results import LatencyPoint, MemoryResult, ThroughputResult, percentile
from clusterq_testing.bench.simnode import SimNode
from clusterq_testing.bench.waiting import Abandon
from clusterq_testing.etcd import EtcdCluster

__all__ = ["LoadSettings", "latency_points", "load_cluster", "memory", "throughput"]

NODES = ("n1", "n2", "n3", "n4")


@dataclass(frozen=True)
class LoadSettings:
    """Shape and length of the load scenarios."""

    agents_per_node: int = 5
    answer_delay: float = 0.01
    talk_time: float = 0.1
    waiting_per_node: int = 250
    warmup: float = 1.0
    duration: float = 5.0
    window: int = 512
    drain_timeout: float = 15.0
    abandon: Abandon = "random"


@dataclass(frozen=True)
class LoadCluster:
    """A started leader, its simulated nodes and the leader's PID."""

    coords: Coordinators
    nodes: list[SimNode]
    leader_pid: int


@asynccontextmanager
async def load_cluster(etcd: EtcdCluster, log_dir: Path, prefix: str, settings: LoadSettings,
                       with_agents: bool = True, profile: Path | None = None,
                       pin: CpuSplit | None = None) -> AsyncIterator[LoadCluster]:
    """One replica, the benchmark queue, four connected simulated nodes and (optionally) agents.

    With `profile`, the replica runs under cProfile and writes its stats there when it stops. With
    `pin`, the leader runs on its own CPU and this process and etcd on the others while the block runs."""
    env = {"CLUSTERQ_PROFILE_OUT": str(profile)} if profile is not None else None
    coords = Coordinators(etcd, log_dir, prefix, 1, extra_env=env)
    nodes: list[SimNode] = []
    froze = False
    try:
        await coords.start()
        leader = await coords.leader()
        await coords.create_queue()
        nodes = [SimNode(n, coords.addresses, QUEUE, answer_delay=settings.answer_delay,
                         talk_time=settings.talk_time, abandon=settings.abandon) for n in NODES]
        for node in nodes:
            await node.start()
        if with_agents:
            await coords.login_agents({f"{n}-ag{i}": n for n in NODES for i in range(settings.agents_per_node)})
        etcd_pids = [p for p in etcd.member_pids if p is not None]
        # The bench process is the load generator: a full collection of its startup heap (tens of
        # ms) would show up as leader latency. Frozen for the scenario, like the coordinator does.
        gc.collect()
        gc.freeze()
        froze = True
        with pinned(pin, leader.pid, etcd_pids):
            yield LoadCluster(coords, nodes, leader.pid)
    finally:
        if froze:
            gc.unfreeze()
        for node in nodes:
            await node.stop()
        await coords.stop()


def _client_pid() -> int:
    return os.getpid()


def _messages(nodes: list[SimNode]) -> tuple[int, int]:
    """Stream messages the nodes sent and received so far."""
    return sum(n.client.messages_sent for n in nodes), sum(n.client.messages_received for n in nodes)


async def latency_point(lc: LoadCluster, rate: float, s: LoadSettings) -> LatencyPoint:
    """Offer `rate` events/s for warmup + duration; latency of the joins sent after the warmup."""
    max_in_flight = max(1_000, int(rate / len(lc.nodes) * 0.5))
    await run_paced(lc.nodes, rate, s.warmup, s.waiting_per_node, max_in_flight)
    t0 = time.perf_counter_ns()
    leader0, client0 = sample(lc.leader_pid), sample(_client_pid())
    in0, out0 = _messages(lc.nodes)
    run = await run_paced(lc.nodes, rate, s.duration, s.waiting_per_node, max_in_flight)
    in1, out1 = _messages(lc.nodes)
    leader1, client1 = sample(lc.leader_pid), sample(_client_pid())
    t1 = time.perf_counter_ns()
    unanswered = await drain(lc.nodes, s.drain_timeout)
    lat = [ns / 1e6 for n in lc.nodes for sent, ns in n.latencies if t0 <= sent < t1]
    for n in lc.nodes:
        n.latencies.clear()
    # Unanswered joins count as infinitely late, so they push p99 up instead of vanishing.
    padded = lat + [float("inf")] * unanswered
    return LatencyPoint(offered=rate, sent=run.sent, skipped=run.skipped, seconds=run.seconds, joins=len(padded),
                        unanswered=unanswered, p50_ms=percentile(padded, 0.5), p99_ms=percentile(padded, 0.99),
                        max_ms=max(padded, default=float("inf")),
                        leader_cpu_share=leader1.cpu_share_since(leader0),
                        client_cpu_share=client1.cpu_share_since(client0),
                        messages_in=in1 - in0, messages_out=out1 - out0)


async def latency_points(lc: LoadCluster, rates: list[float], s: LoadSettings) -> list[LatencyPoint]:
    """Every offered load in turn, lowest first."""
    return [await latency_point(lc, rate, s) for rate in sorted(rates)]


async def throughput(lc: LoadCluster, s: LoadSettings) -> ThroughputResult:
    """Saturate the leader (bounded window per node) and count the events it provably applied."""
    await run_saturated(lc.nodes, s.warmup, s.window, s.waiting_per_node)
    c0, d0 = sum(n.confirmed for n in lc.nodes), sum(n.decisions for n in lc.nodes)
    t0 = time.perf_counter_ns()
    leader0, client0 = sample(lc.leader_pid), sample(_client_pid())
    await run_saturated(lc.nodes, s.duration, s.window, s.waiting_per_node)
    leader1, client1 = sample(lc.leader_pid), sample(_client_pid())
    c1, d1 = sum(n.confirmed for n in lc.nodes), sum(n.decisions for n in lc.nodes)
    lat = [ns / 1e6 for n in lc.nodes for sent, ns in n.latencies if sent >= t0]
    await drain(lc.nodes, s.drain_timeout)
    for n in lc.nodes:
        n.latencies.clear()
    wall = leader1.at - leader0.at
    return ThroughputResult(
        events=c1 - c0, seconds=wall, leader_cpu_seconds=leader1.cpu_seconds - leader0.cpu_seconds,
        client_cpu_share=client1.cpu_share_since(client0), decisions_per_second=(d1 - d0) / wall,
        latency_p50_ms=percentile(lat, 0.5),
        engine_events_per_second=await asyncio.to_thread(inproc.engine_events_per_second, 100_000),
        runtime_events_per_second=await asyncio.to_thread(inproc.runtime_events_per_second, 800))


async def _join_all(nodes: list[SimNode], per_node: int, timeout: float) -> None:
    """Join per_node callers on each node in steps of 500, waiting for their JoinAcks."""
    left = per_node
    while left > 0:
        step = min(500, left)
        for n in nodes:
            if fill(n, step, waiting_per_node=10**9) != step:
                raise RuntimeError(f"node {n.node_id} lost its stream while joining callers")
        left -= step
        if await drain(nodes, timeout):
            raise RuntimeError("the leader did not acknowledge every join")


async def memory(etcd: EtcdCluster, log_dir: Path, prefix: str, callers: int = 10_000,
                 snapshots: int = 20) -> MemoryResult:
    """Leader RSS before/after `callers` waiting callers (no agents), then Snapshot costs."""
    settings = LoadSettings(agents_per_node=0)
    async with load_cluster(etcd, log_dir, prefix, settings, with_agents=False) as lc:
        # Warm-up: a round of joins and leaves so lazily allocated code paths are in the baseline.
        await _join_all(lc.nodes, 250, 15)
        for n in lc.nodes:
            while n.abandon():
                pass
        await _join_all(lc.nodes, 1, 15)  # a barrier: every leave before it was applied
        await asyncio.sleep(0.5)
        before = sample(lc.leader_pid).rss_bytes
        await _join_all(lc.nodes, callers // len(lc.nodes), 30)
        await asyncio.sleep(0.5)
        after = sample(lc.leader_pid).rss_bytes
        plain = await _time_snapshots(lc.coords, snapshots, include_callers=False)
        with_callers = await _time_snapshots(lc.coords, snapshots, include_callers=True)
    cost = await asyncio.to_thread(inproc.lookup_cost, callers)
    return MemoryResult(
        callers=callers, rss_before=before, rss_after=after, waiting_reported=plain.waiting,
        snapshot_ms_p50=percentile(plain.ms, 0.5), snapshot_ms_max=max(plain.ms, default=float("inf")),
        snapshot_error=with_callers.error, snapshot_callers=with_callers.callers,
        snapshot_with_callers_ms_p50=percentile(with_callers.ms, 0.5),
        snapshot_with_callers_ms_max=max(with_callers.ms, default=float("inf")),
        position_us=cost.position_us, estimated_wait_us=cost.estimated_wait_us,
        caller_view_us=cost.caller_view_us, engine_bytes_per_caller=cost.engine_bytes_per_caller)


@dataclass(frozen=True)
class _Snapshots:
    ms: list[float]
    waiting: int
    callers: int
    error: str


async def _time_snapshots(coords: Coordinators, count: int, include_callers: bool) -> _Snapshots:
    """Round-trip times of Stats.Snapshot for the benchmark queue (stops at the first error)."""
    ms: list[float] = []
    waiting = listed = 0
    for _ in range(count):
        t = time.perf_counter()
        try:
            snap = await coords.client.snapshot(QUEUE, include_callers=include_callers)
        except grpc.aio.AioRpcError as exc:
            first = (exc.details() or "").splitlines()[0] if exc.details() else ""
            return _Snapshots(ms, waiting, listed, f"{exc.code().name}: {first}"[:160])
        ms.append((time.perf_counter() - t) * 1e3)
        waiting = snap.queues[0].waiting if snap.queues else 0
        listed = len(snap.callers)
    return _Snapshots(ms, waiting, listed, "")

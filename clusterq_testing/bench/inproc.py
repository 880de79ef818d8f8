"""In-process measurements of the leader's layers, without processes or sockets.

- the pure engine (`QueueEngine.apply`) on the benchmark's join/leave mix;
- the runtime (`LeaderRuntime.handle_batch`: protobuf events in, engine, decisions stamped and
  written into the node link's next stream message) on the same mix, still without gRPC;
- `QueueEngine.position()` / `estimated_wait()` on a 10k-caller queue (timeit) and the engine's own
  memory per waiting caller (tracemalloc).

Comparing these with the over-the-wire figures shows where the leader's time goes.
"""

from __future__ import annotations

import asyncio
import gc
import random
import time
import timeit
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass

from clusterq_proto.v1 import node_pb2
from coordinator.queue import CallerJoined, CallerLeft, QueueConfig, QueueDefined, QueueEngine, Strategy
from coordinator.runtime import LeaderRuntime, SeqAllocator

__all__ = ["LookupCost", "engine_events_per_second", "lookup_cost", "runtime_events_per_second"]

QUEUE = "bench"


def _engine() -> QueueEngine:
    engine = QueueEngine(offer_id_prefix="b-")
    engine.apply(QueueDefined(QueueConfig(name=QUEUE, strategy=Strategy.LEASTRECENT)), 0.0)
    return engine


def engine_events_per_second(events: int = 200_000, waiting: int = 1_000) -> float:
    """Join/leave events per second applied straight to the engine, `waiting` callers queued."""
    engine = _engine()
    clock = time.monotonic
    for i in range(waiting):
        engine.apply(CallerJoined(call_id=f"w{i}", queue=QUEUE, node_id="n1", arrival_seq=i + 1,
                                  joined_at=clock()), clock())
    oldest, seq = 0, waiting
    start = time.perf_counter()
    for _ in range(events // 2):
        seq += 1
        now = clock()
        engine.apply(CallerJoined(call_id=f"w{seq}", queue=QUEUE, node_id="n1", arrival_seq=seq, joined_at=now),
                     now)
        engine.apply(CallerLeft(call_id=f"w{oldest}", reason="hangup"), clock())
        oldest += 1
    return (events // 2 * 2) / (time.perf_counter() - start)


def _batches(count: int, waiting: int) -> list[node_pb2.EventBatch]:
    """EventBatch messages of 64 events: joins, and once `waiting` are queued a leave per join."""
    batches: list[node_pb2.EventBatch] = []
    batch = node_pb2.EventBatch()
    joined = left = 0
    node_seq = 0
    while len(batches) < count:
        node_seq += 1
        if joined - left > waiting:
            ev = node_pb2.NodeEvent(call_left=node_pb2.CallLeft(call_id=f"r{left}", reason="hangup"))
            left += 1
        else:
            ev = node_pb2.NodeEvent(call_joined=node_pb2.CallJoined(call_id=f"r{joined}", queue=QUEUE,
                                                                    node_join_order=joined))
            joined += 1
        ev.node_seq, ev.at = node_seq, time.time()
        batch.events.append(ev)
        if len(batch.events) == 64:
            batches.append(batch)
            batch = node_pb2.EventBatch()
    return batches


async def _runtime_rate(batches: list[node_pb2.EventBatch]) -> float:
    async def reserve(upto: int) -> None:
        return None

    engine = _engine()
    rt = LeaderRuntime(engine, 1, time.monotonic, SeqAllocator(1, 10**12, 10**6, reserve), node_ttl=6.0)
    rt.queues[QUEUE] = QueueConfig(name=QUEUE, strategy=Strategy.LEASTRECENT)
    link = rt.attach("n1", "bench")
    start = time.perf_counter()
    for batch in batches:
        for err in rt.handle_batch(link, batch):
            raise RuntimeError(f"runtime refused a benchmark event: {err}")
        link.take_ready()  # the servicer would write these to the stream
    return sum(len(b.events) for b in batches) / (time.perf_counter() - start)


def runtime_events_per_second(batches: int = 3_000, waiting: int = 1_000) -> float:
    """Events per second through LeaderRuntime.handle_batch (protobuf in, stamped decisions out)."""
    return asyncio.run(_runtime_rate(_batches(batches, waiting)))


@dataclass(frozen=True)
class LookupCost:
    """Cost of per-caller queries on an engine holding `callers` waiting callers in one queue."""

    callers: int
    position_us: float
    estimated_wait_us: float
    caller_view_us: float
    engine_bytes_per_caller: float


def lookup_cost(callers: int = 10_000, repeats: int = 50_000) -> LookupCost:
    """timeit of position / estimated_wait / caller on a directly built engine, and its memory."""
    gc.collect()
    tracemalloc.start()
    engine = _engine()
    before = tracemalloc.get_traced_memory()[0]
    now = time.monotonic()
    for i in range(callers):
        engine.apply(CallerJoined(call_id=f"m{i}", queue=QUEUE, node_id=f"n{i % 4}", arrival_seq=i + 1,
                                  joined_at=now), now)
    gc.collect()
    per_caller = (tracemalloc.get_traced_memory()[0] - before) / callers
    tracemalloc.stop()
    ids = [f"m{random.randrange(callers)}" for _ in range(repeats)]
    it = iter(ids * 4)

    def baseline() -> None:
        next(it)

    def position() -> None:
        engine.position(next(it))

    def ewt() -> None:
        engine.estimated_wait(next(it), now)

    def view() -> None:
        engine.caller(next(it))

    def cost(fn: Callable[[], None]) -> float:
        number = repeats // 5
        return min(timeit.repeat(fn, number=number, repeat=5)) / number * 1e6

    # The wrapper call and next() are measured once and subtracted (about 0.05-0.1 us).
    base = cost(baseline)
    return LookupCost(
        callers=callers,
        position_us=cost(position) - base,
        estimated_wait_us=cost(ewt) - base,
        caller_view_us=cost(view) - base,
        engine_bytes_per_caller=per_caller,
    )

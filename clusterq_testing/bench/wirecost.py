"""The real leader's CPU per event over gRPC at fixed batch sizes: `python -m clusterq_testing.bench.wirecost`.

The load scenarios' batch sizes follow the timing of the bench process, which drifts with the load of a
shared machine. Here one raw node stream (no CoordinatorClient) sends EventBatches of exactly `k` events
in ping-pong: the next message leaves when the JoinAck of the previous message's last join arrived. The
leader therefore reads one message and writes one message per batch whatever the machine does, and its
CPU (utime+stime from /proc, all threads) per event splits into a fixed cost per message pair and a cost
per event: cost(k) = per_event + per_pair / k. Events: joins, and hangups of the longest-waiting caller
once 250 wait (no agents, so no offers). Needs etcd (`.cache/etcd`) like the other scenarios.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import grpc

from clusterq_proto.v1 import node_pb2, node_pb2_grpc
from clusterq_testing.bench.harness import QUEUE, Coordinators
from clusterq_testing.bench.procstat import cpu_seconds
from clusterq_testing.etcd import EtcdCluster

__all__ = ["BatchCost", "measure"]

WAITING = 250
SIZES = (1, 4, 16, 64)


@dataclass(frozen=True)
class BatchCost:
    """Best (lowest) leader CPU per event over the repetitions of one batch size."""

    size: int
    events: int
    us_per_event: float


class _Stream:
    """One node's Connect stream driven message by message."""

    def __init__(self, stub: node_pb2_grpc.NodeServiceStub, node_id: str) -> None:
        self.node_id = node_id
        self._out: asyncio.Queue[node_pb2.NodeMessage] = asyncio.Queue()
        self._out.put_nowait(node_pb2.NodeMessage(register=node_pb2.Register(node_id=node_id, instance_id="wire")))
        self.call = stub.Connect(self._requests())
        self.waiting: deque[str] = deque()
        self._order = 0

    async def _requests(self) -> AsyncIterator[node_pb2.NodeMessage]:
        while True:
            yield await self._out.get()

    def batch(self, size: int) -> tuple[node_pb2.NodeMessage, str]:
        """`size` events ending with a join; returns the message and that join's call id."""
        b = node_pb2.EventBatch()
        for i in range(size):
            if i < size - 1 and len(self.waiting) > WAITING:
                b.events.append(node_pb2.NodeEvent(call_left=node_pb2.CallLeft(call_id=self.waiting.popleft(),
                                                                                  reason="hangup")))
                continue
            self._order += 1
            call_id = f"{self.node_id}-q-{self._order}"
            b.events.append(node_pb2.NodeEvent(call_joined=node_pb2.CallJoined(
                call_id=call_id, queue=QUEUE, caller_number="5550100", node_join_order=self._order)))
        return node_pb2.NodeMessage(events=b), call_id

    async def round_trip(self, size: int) -> None:
        """Send one batch and read decision messages until its last join is acknowledged."""
        msg, last = self.batch(size)
        self._out.put_nowait(msg)
        while True:
            reply = await self.call.read()
            if reply is grpc.aio.EOF:
                raise RuntimeError("the leader ended the stream")
            for dec in reply.decisions.decisions:
                if dec.WhichOneof("decision") == "join_ack":
                    self.waiting.append(dec.join_ack.call_id)
                    if dec.join_ack.call_id == last:
                        return


async def measure(work: Path, sizes: tuple[int, ...] = SIZES, events_per_run: int = 20_000, repeats: int = 3,
                  profile: Path | None = None) -> list[BatchCost]:
    """Leader CPU per event for each batch size (best of `repeats` runs); `profile`: cProfile stats file."""
    etcd = EtcdCluster(work / "etcd", members=1)
    await etcd.start()
    env = {"CLUSTERQ_PROFILE_OUT": str(profile)} if profile is not None else None
    coords = Coordinators(etcd, work / "logs", "/wirecost", 1, extra_env=env)
    try:
        await coords.start()
        pid = (await coords.leader()).pid
        await coords.create_queue()
        async with grpc.aio.insecure_channel(coords.addresses[0]) as channel:
            stream = _Stream(node_pb2_grpc.NodeServiceStub(channel), "w1")
            if (await stream.call.read()).WhichOneof("body") != "registered":
                raise RuntimeError("no Registered answer")
            for _ in range(2 * WAITING):  # warm-up: the queue at its steady length
                await stream.round_trip(16)
            out = []
            for size in sizes:
                best = float("inf")
                rounds = max(1, events_per_run // size)
                for _ in range(repeats):
                    cpu0 = cpu_seconds(pid)
                    for _ in range(rounds):
                        await stream.round_trip(size)
                    best = min(best, (cpu_seconds(pid) - cpu0) / (rounds * size) * 1e6)
                out.append(BatchCost(size, rounds * size, best))
            stream.call.cancel()
        return out
    finally:
        await coords.stop()
        await etcd.stop()


def main(argv: list[str]) -> None:
    """Print the table and the fitted per-pair and per-event costs."""
    p = argparse.ArgumentParser(prog="python -m clusterq_testing.bench.wirecost")
    p.add_argument("--sizes", default=",".join(map(str, SIZES)), help="events per message, comma-separated")
    p.add_argument("--profile", type=Path, help="run the leader under cProfile, stats to this file (slower)")
    args = p.parse_args(argv)
    sizes = tuple(int(x) for x in args.sizes.split(","))
    with tempfile.TemporaryDirectory(prefix="clusterq-wirecost-") as tmp:
        costs = asyncio.run(measure(Path(tmp), sizes, profile=args.profile))
    for c in costs:
        print(f"batches of {c.size:>2}: leader {c.us_per_event:6.1f} us/event ({c.us_per_event * c.size:7.1f} us "
              f"per message pair), best of 3 x {c.events:,} events")
    first, last = costs[0], costs[-1]
    if len(costs) > 1:
        per_pair = (first.us_per_event - last.us_per_event) / (1 / first.size - 1 / last.size)
        print(f"fit: {last.us_per_event - per_pair / last.size:.1f} us per event + {per_pair:.0f} us per message "
              "pair (one read + one write)")


if __name__ == "__main__":
    main(sys.argv[1:])

"""The gRPC floor: what a bare grpc.aio NodeService stream costs on this machine, with no queue logic.

A subprocess serves NodeService.Connect by answering every EventBatch with a DecisionBatch of as
many empty decisions (one read + one write per message, like the leader's best case). The bench
pings it with 1-event and 64-event batches and reads the server's CPU per message from /proc.
Run as `python -m clusterq_testing.bench.floor PORT` for the server side.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from clusterq_proto.v1 import node_pb2, node_pb2_grpc
from clusterq_testing.bench.procstat import sample
from clusterq_testing.ports import free_tcp_port
from clusterq_testing.processes import REPO, ManagedProcess

__all__ = ["FloorPoint", "measure_floor"]


class _Echo(node_pb2_grpc.NodeServiceServicer):
    async def Connect(self, request_iterator: object, context: Any) -> None:  # type: ignore[override]
        """Answer each message with as many empty decisions as it had events."""
        while True:
            msg = await context.read()
            if msg is grpc.aio.EOF:
                return
            n = len(msg.events.events)
            await context.write(node_pb2.CoordinatorMessage(decisions=node_pb2.DecisionBatch(
                decisions=[node_pb2.Decision() for _ in range(n)])))


async def _serve(port: int) -> None:
    server = grpc.aio.server()
    node_pb2_grpc.add_NodeServiceServicer_to_server(_Echo(), server)
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    await server.wait_for_termination()


@dataclass(frozen=True)
class FloorPoint:
    """Ping-pong over one stream with `events` events per message."""

    events: int
    messages_per_second: float
    server_cpu_us_per_message: float

    @property
    def server_cpu_us_per_event(self) -> float:
        """Server CPU per event carried."""
        return self.server_cpu_us_per_message / self.events


async def _ping(port: int, pid: int, events: int, seconds: float) -> FloorPoint:
    batch = node_pb2.NodeMessage(events=node_pb2.EventBatch(events=[
        node_pb2.NodeEvent(node_seq=i + 1, call_left=node_pb2.CallLeft(call_id=f"c{i}", reason="hangup"))
        for i in range(events)]))
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        call = node_pb2_grpc.NodeServiceStub(channel).Connect()
        await call.write(batch)
        await call.read()  # connection set up before the clock starts
        count, before = 0, sample(pid)
        stop = time.perf_counter() + seconds
        while time.perf_counter() < stop:
            await call.write(batch)
            await call.read()
            count += 1
        after = sample(pid)
        await call.done_writing()
    wall = after.at - before.at
    return FloorPoint(events, count / wall, (after.cpu_seconds - before.cpu_seconds) / count * 1e6)


async def measure_floor(log_dir: Path, seconds: float = 2.0) -> list[FloorPoint]:
    """Start the echo server, ping it with 1- and 64-event messages, stop it by PID."""
    port = free_tcp_port()
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = ManagedProcess("grpc-floor", [sys.executable, "-m", "clusterq_testing.bench.floor", str(port)], env,
                          log_dir / "grpc-floor.log")
    proc.start()
    try:
        deadline = time.perf_counter() + 15
        while True:
            try:
                return [await _ping(port, proc.pid or 0, n, seconds) for n in (1, 64)]
            except grpc.aio.AioRpcError:
                if time.perf_counter() > deadline or not proc.alive():
                    raise
                await asyncio.sleep(0.1)
    finally:
        await proc.async_stop()


if __name__ == "__main__":
    asyncio.run(_serve(int(sys.argv[1])))

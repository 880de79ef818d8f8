"""The leader's per-event CPU on the load scenarios' mix, in-process: `python -m clusterq_testing.bench.mix`.

LeaderRuntime (protobuf events in, engine, stamped decisions out) with 4 nodes and 5 agents per node
on one leastrecent queue, fed EventBatches like the simulated nodes send: joins, hangups of the
longest-waiting caller once 250 wait per node, answers to offers, call ends after 20 rounds. Nodes see
decisions `lag` rounds late, so, as over the wire, some hang up callers that are already ringing.
With a fake clock the run is deterministic: `hash` prints a digest of every decision sent (to show
that an optimisation changes no decision), `time` the best process-CPU cost per event, `profile`
a cProfile of the runtime. No gRPC, no etcd: the difference to the load scenarios is the stream cost.
"""

from __future__ import annotations

import asyncio
import cProfile
import hashlib
import pstats
import sys
import time
from collections import OrderedDict, deque
from dataclasses import dataclass

from clusterq_proto.v1 import node_pb2
from coordinator.node_link import NodeLink
from coordinator.queue import AgentConfig, AgentLoggedIn, Membership, QueueConfig, QueueDefined, QueueEngine, Strategy
from coordinator.runtime import LeaderRuntime, SeqAllocator

__all__ = ["MixResult", "run_mix"]

NODES = ("n1", "n2", "n3", "n4")
QUEUE = "bench"
WAITING_PER_NODE = 250
TALK_ROUNDS = 20


class _Node:
    """What a simulated node knows about its callers and agent legs, from the decisions it saw."""

    def __init__(self, node_id: str) -> None:
        self.node_id = node_id
        self.order = 0
        self.sent = 0
        self.last_join = 0
        self.waiting: OrderedDict[str, None] = OrderedDict()
        self.callers: dict[str, str] = {}
        self.answers: list[str] = []
        self.ends: deque[tuple[int, str, str]] = deque()  # (round, call id, offer id)
        self.digest = hashlib.sha256()

    def on(self, dec: node_pb2.Decision, rnd: int) -> None:
        self.digest.update(dec.SerializeToString(deterministic=True))
        kind = dec.WhichOneof("decision")
        if kind == "join_ack" and self.callers.get(dec.join_ack.call_id) == "joining":
            self.callers[dec.join_ack.call_id] = "waiting"
            self.waiting[dec.join_ack.call_id] = None
        elif kind == "offer":
            o = dec.offer
            if o.agent_node == self.node_id:
                self.answers.append(o.offer_id)
            if o.caller_node == self.node_id and self.callers.get(o.call_id) in ("joining", "waiting"):
                self.callers[o.call_id] = "ringing"
                self.waiting.pop(o.call_id, None)
        elif kind == "connect":
            c = dec.connect
            if c.caller_node == self.node_id and c.call_id in self.callers:
                self.callers[c.call_id] = "connected"
                self.ends.append((rnd + TALK_ROUNDS, c.call_id, c.offer_id))
        elif kind == "cancel_offer":
            x = dec.cancel_offer
            if x.offer_id in self.answers:
                self.answers.remove(x.offer_id)
            if self.callers.get(x.call_id) == "ringing":
                self.callers[x.call_id] = "waiting"
                self.waiting[x.call_id] = None
        elif kind == "continue_in_dialplan":
            self.callers.pop(dec.continue_in_dialplan.call_id, None)
            self.waiting.pop(dec.continue_in_dialplan.call_id, None)

    def batch(self, rnd: int, size: int) -> node_pb2.EventBatch:
        b = node_pb2.EventBatch()
        for offer_id in self.answers:
            b.events.append(node_pb2.NodeEvent(agent_leg_answered=node_pb2.AgentLegAnswered(offer_id=offer_id)))
        self.answers = []
        while self.ends and self.ends[0][0] <= rnd:
            _, call_id, offer_id = self.ends.popleft()
            self.callers.pop(call_id, None)
            b.events.append(node_pb2.NodeEvent(call_ended=node_pb2.CallEnded(call_id=call_id, offer_id=offer_id)))
        while len(b.events) < size:
            self.sent += 1
            # Like clusterq_testing.bench.load.fill: a join at least every 16 events.
            if len(self.waiting) > WAITING_PER_NODE and self.sent - self.last_join < 16:
                call_id, _ = self.waiting.popitem(last=False)
                del self.callers[call_id]
                b.events.append(node_pb2.NodeEvent(call_left=node_pb2.CallLeft(call_id=call_id, reason="hangup")))
            else:
                self.order += 1
                call_id = f"{self.node_id}-q-{self.order}"
                self.callers[call_id] = "joining"
                self.last_join = self.sent
                b.events.append(node_pb2.NodeEvent(call_joined=node_pb2.CallJoined(
                    call_id=call_id, queue=QUEUE, caller_number="5550100", node_join_order=self.order)))
        return b


@dataclass(frozen=True)
class MixResult:
    """One run: events applied, process CPU seconds spent in the runtime, decisions, their digest."""

    events: int
    cpu_seconds: float
    decisions: int
    digest: str


def _decisions(link: NodeLink) -> list[node_pb2.Decision]:
    return [d for msg in link.take_ready() for d in msg.decisions.decisions]


async def _run(rounds: int, size: int, fake_clock: bool, lag: int, profiler: cProfile.Profile | None) -> MixResult:
    t = [1000.0]

    def clock() -> float:
        return t[0] if fake_clock else time.monotonic()

    async def reserve(upto: int) -> None:
        return None

    rt = LeaderRuntime(QueueEngine(offer_id_prefix="e1-"), 1, clock, SeqAllocator(1, 10**12, 10**6, reserve), 6.0)
    rt.apply(QueueDefined(QueueConfig(name=QUEUE, strategy=Strategy.LEASTRECENT)))
    nodes = [_Node(n) for n in NODES]
    links = {n.node_id: rt.attach(n.node_id, "mix", node_pb2.Register(node_id=n.node_id, instance_id="mix"))
             for n in nodes}
    for n in nodes:
        for i in range(5):
            rt.apply(AgentLoggedIn(AgentConfig(f"{n.node_id}-ag{i}", f"Local/{n.node_id}-ag{i}@b/n", n.node_id,
                                               (Membership(QUEUE),))))
    for n in nodes:
        for dec in _decisions(links[n.node_id]):
            n.on(dec, 0)
    events = 0
    cpu = 0.0
    in_flight: deque[list[list[node_pb2.CoordinatorMessage]]] = deque()
    for rnd in range(1, rounds + 1):
        t[0] += 0.002
        batches = [n.batch(rnd, size) for n in nodes]
        events += sum(len(b.events) for b in batches)
        started = time.process_time()
        if profiler is not None:
            profiler.enable()
        for n, b in zip(nodes, batches, strict=True):
            if errors := rt.handle_batch(links[n.node_id], b):
                raise RuntimeError(f"runtime refused a mix event: {errors[0]}")
        msgs = [links[n.node_id].take_ready() for n in nodes]  # what the stream writers would send
        if profiler is not None:
            profiler.disable()
        cpu += time.process_time() - started
        in_flight.append(msgs)
        if len(in_flight) > lag:
            for n, node_msgs in zip(nodes, in_flight.popleft(), strict=True):
                for msg in node_msgs:
                    for dec in msg.decisions.decisions:
                        n.on(dec, rnd)
    total = hashlib.sha256()
    for n in nodes:
        total.update(n.digest.digest())
    return MixResult(events, cpu, rt.decisions_sent, total.hexdigest()[:16])


def run_mix(rounds: int = 700, size: int = 64, *, fake_clock: bool = True, lag: int = 8,
            profiler: cProfile.Profile | None = None) -> MixResult:
    """`rounds` rounds of one EventBatch of at least `size` events per node."""
    return asyncio.run(_run(rounds, size, fake_clock, lag, profiler))


def main(argv: list[str]) -> None:
    """`hash` | `time` (default) | `profile`."""
    mode = argv[0] if argv else "time"
    if mode == "hash":
        for size, rounds in ((1, 3000), (7, 3000), (64, 600)):
            r = run_mix(rounds, size)
            print(f"batches of {size}: {r.events} events, {r.decisions} decisions, digest {r.digest}")
    elif mode == "profile":
        profiler = cProfile.Profile()
        r = run_mix(1000, profiler=profiler)
        print(f"{r.events} events, {r.cpu_seconds / r.events * 1e6:.1f} us/event under cProfile")
        pstats.Stats(profiler).sort_stats("tottime").print_stats(40)
    else:
        best = min((run_mix(700, fake_clock=False) for _ in range(6)), key=lambda r: r.cpu_seconds / r.events)
        print(f"{best.events} events: best of 6 {best.cpu_seconds / best.events * 1e6:.1f} us/event "
              f"({best.events / best.cpu_seconds:,.0f} events per CPU-second), {best.decisions} decisions routed")


if __name__ == "__main__":
    main(sys.argv[1:])

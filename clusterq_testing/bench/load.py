"""Load drivers over simulated nodes: paced (fixed offered rate) and saturating (bounded window).

The event mix is the same for both: callers join and, once a node holds more than
`waiting_per_node` acknowledged waiting callers, one of them hangs up (a random one by default); agents answer
their offers and the connected callers hang up after the talk time (those reactions are events too
and count towards the offered rate). Both drivers are bounded in time and in events in flight.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass

from clusterq_testing.bench.simnode import SimNode

__all__ = ["PacedRun", "drain", "fill", "run_paced", "run_saturated"]


# At most this many events in a row without a join: only a JoinAck proves that earlier events were
# applied, so a long run of leaves could fill the in-flight window with unprovable events.
MAX_WITHOUT_JOIN = 16


def fill(node: SimNode, n: int, waiting_per_node: int) -> int:
    """Emit up to n join/leave events on one node; returns how many were sent."""
    done = 0
    for _ in range(n):
        crowded = len(node.waiting) + node.pending_joins > waiting_per_node
        if crowded and node.sent - node.last_join_sent < MAX_WITHOUT_JOIN and node.abandon():
            done += 1
        elif node.join():
            done += 1
        else:
            break  # no leader stream
    return done


@dataclass(frozen=True)
class PacedRun:
    """What a paced run sent: events handed to nodes and events skipped because too many were in flight."""

    sent: int
    skipped: int
    seconds: float


async def run_paced(nodes: list[SimNode], rate: float, duration: float, waiting_per_node: int,
                    max_in_flight: int) -> PacedRun:
    """Offer `rate` events/s in total (spread evenly) for `duration` s; returns what was sent.

    Agent reactions sent by the nodes themselves use up the budget first. When a node already has
    `max_in_flight` unconfirmed events the due events are skipped, not queued: an overloaded leader
    then shows as an achieved rate below the offered one instead of an unbounded backlog.
    """
    per_node = rate / len(nodes)
    consumed = [0] * len(nodes)
    last_sent = [n.sent for n in nodes]
    first_sent = list(last_sent)
    skipped = 0
    start = time.perf_counter()
    while (elapsed := time.perf_counter() - start) < duration:
        target = int(elapsed * per_node)
        for i, node in enumerate(nodes):
            consumed[i] += node.sent - last_sent[i]  # reactions since the last tick
            due = target - consumed[i]
            if due > 0:
                room = max(0, max_in_flight - node.unconfirmed)
                sent = fill(node, min(due, room), waiting_per_node)
                consumed[i] += due  # sent, or skipped for good
                skipped += due - sent
            last_sent[i] = node.sent
        await asyncio.sleep(0.001)
    seconds = time.perf_counter() - start
    return PacedRun(sum(n.sent for n in nodes) - sum(first_sent), skipped, seconds)


async def run_saturated(nodes: list[SimNode], duration: float, window: int, waiting_per_node: int) -> None:
    """Keep up to `window` unconfirmed events per node in flight for `duration` s (as fast as acked)."""
    acked = asyncio.Event()  # one event shared by all nodes: no task per node per wake-up
    for node in nodes:
        node.acked = acked
    stop = time.perf_counter() + duration
    while time.perf_counter() < stop:
        acked.clear()
        progressed = False
        for node in nodes:
            room = window - node.unconfirmed
            if room >= 64:
                fill(node, room, waiting_per_node)
                progressed = True
        if progressed:
            await asyncio.sleep(0)
            continue
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(0.01):
                await acked.wait()


async def drain(nodes: list[SimNode], timeout: float) -> int:
    """Wait until every join sent was answered; returns the joins still unanswered at the timeout."""
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        pending = sum(n.pending_joins for n in nodes)
        if pending == 0:
            return 0
        await asyncio.sleep(0.01)
    return sum(n.pending_joins for n in nodes)

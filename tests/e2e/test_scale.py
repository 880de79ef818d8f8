"""Scale on two real Asterisk nodes: hundreds to thousands of callers, one cluster-wide order.

Every call fact comes from the tests' own ARI observers on both nodes (`Ledger`, tests/e2e/scale.py) and
from the order in which the test itself originated the callers; nothing is read from the coordinator's
statistics (see scale.py for how arrival and offer order are read from Asterisk).
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import os
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import TypeVar

import pytest

from clusterq_proto.v1 import admin_pb2, admin_pb2_grpc
from tests.e2e.conftest import Clusterq
from tests.e2e.scale import (
    AGENTS,
    POSITION_VAR,
    CutPrompts,
    Ledger,
    Placed,
    Talk,
    all_bridged,
    all_legs_ended,
    answer_quickly,
    caller_plan,
    originate,
    originate_in_order,
    refresh,
    running,
    short_talk,
    two_node_cluster,
    unbridged,
    wait_until,
)
from tests.e2e.scale_checks import (
    assert_each_caller_bridged_once,
    assert_no_agent_in_two_calls,
    assert_sequenced_in_order,
    check_calls,
    cross_node_calls,
    first_offers,
    seq_of,
)

pytestmark = pytest.mark.e2e

T = TypeVar("T")


async def test_200_callers_10_agents_two_nodes(
        clusterq: Clusterq, asterisk_factory: object, observers: object) -> None:
    _, _, ledgers = await two_node_cluster(clusterq, asterisk_factory, observers)
    client = clusterq.client()
    homes = {agent: ("a", "b")[i % 2] for i, agent in enumerate(AGENTS)}
    answer_quickly(ledgers, homes)
    callers: list[Placed] = []
    plan = caller_plan(200, ("a", "b"), 700000, priority_every=10)
    t0 = time.monotonic()
    async with running(Talk(ledgers, callers, lambda leg: short_talk(AGENTS.index(leg.agent)))):
        # A backlog first (no agent logged in), so priority callers provably overtake waiting ones ...
        callers += await originate_in_order(ledgers, plan[:40])
        for agent in AGENTS:
            await client.login(agent, f"Local/{agent}@clusterq-agents-test/n", homes[agent], ["support"])
        # ... then the rest while the agents serve.
        callers += await originate_in_order(ledgers, plan[40:], start_index=40)
        t_joined = time.monotonic()
        await wait_until(lambda: all_bridged(callers, ledgers), 120, "every caller bridged",
                         lambda: unbridged(callers, ledgers))
        t_done = time.monotonic()
        await wait_until(lambda: all_legs_ended(ledgers), 10, "every agent leg ended")
    _, overtakes = check_calls(callers, ledgers)
    cross = cross_node_calls(callers, ledgers)
    assert cross >= 40, f"only {cross} callers were served by an agent on the other node"
    assert overtakes >= 10, f"only {overtakes} provable priority overtakes"
    print(f"\n200 callers: joined in {t_joined - t0:.1f} s, all bridged after {t_done - t0:.1f} s; "
          f"{cross} cross-node calls, {overtakes} provable priority overtakes")


BIG_QUEUE = "big"
# Load bound. A position announcement plays ~10 s of prompts ("there are" + the number + "calls
# waiting" + "thank you"): telling 2,000 callers is 20,000 channel-seconds of gsm playback, and a few
# hundred prompts at once saturate this 2-core box until ARI requests time out (measured). The test
# checks what each caller was told (clusterq sets CLUSTERQ_POSITION before the prompt starts), so
# CutPrompts stops every prompt as soon as it started. Even so, announcement bursts of ~70/s (2,000
# callers joined as fast as possible, all told 30 s later) overloaded both nodes; joining at JOIN_RATE
# and telling each caller every ANNOUNCE_EVERY s keeps them at <= 2000 / 60 = 33/s.
JOIN_RATE = 25.0  # callers per second, both nodes together
ANNOUNCE_EVERY = 60.0
# An announcement decided before the leader applied the leavers' CallLeft events starts playing well
# within this time (normally milliseconds), so the round starts this long after the markers.
STALE_MARGIN = 5.0


def process_usage(pid: int | None) -> str:
    """CPU seconds and peak RSS of a process (for the run summary), from /proc."""
    if pid is None:
        return "gone"
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    hwm = next(line.split()[1] for line in Path(f"/proc/{pid}/status").read_text().splitlines()
               if line.startswith("VmHWM"))
    return f"{cpu:.0f} s CPU, peak RSS {int(hwm) // 1024} MB"


def big_queue(announce_every: float) -> admin_pb2.QueueDefinition:
    """The 2,000-caller queue: music off, every caller told its position every `announce_every` s."""
    return admin_pb2.QueueDefinition(
        name=BIG_QUEUE, strategy="leastrecent", ring_timeout=8, music_class="none", announce_position="yes",
        announce_frequency=announce_every, min_announce_frequency=announce_every)


async def bounded(coros: Sequence[Callable[[], Awaitable[T]]], limit: int) -> list[T]:
    """Run the coroutine factories with at most `limit` in flight; results in input order."""
    sem = asyncio.Semaphore(limit)

    async def one(make: Callable[[], Awaitable[T]]) -> T:
        async with sem:
            return await make()

    return list(await asyncio.gather(*(one(m) for m in coros)))


async def originate_per_node(ledgers: Mapping[str, Ledger], count: int, first_number: int, rate: float
                             ) -> list[Placed]:
    """`count` callers alternating nodes, `rate` per second in all; each node dials its own callers one
    at a time (the next once clusterq answered the previous), the nodes in parallel. Per node, clusterq
    thus sees the joins in origination order; across nodes the leader's CLUSTERQ_SEQ defines the
    arrival order."""
    names = sorted(ledgers)
    out: list[Placed] = []
    start = time.monotonic()

    async def node_loop(node: str) -> None:
        for i in range(names.index(node), count, len(names)):
            await asyncio.sleep(max(0.0, start + i / rate - time.monotonic()))
            out.append(await originate(ledgers[node], i, str(first_number + i), BIG_QUEUE, wait_seq=False,
                                       timeout=30))

    await asyncio.gather(*(node_loop(n) for n in names))
    return sorted(out, key=lambda c: c.index)


async def leave_and_mark(ledgers: Mapping[str, Ledger], leavers: Sequence[Placed]) -> list[Placed]:
    """Hang the leavers up, then dial one marker caller per node (returned). A marker is dialled after
    its node's leavers were destroyed, so the leader applies its join after that node's CallLeft events
    (one stream per node, in order): announcements decided after both markers were sequenced know the
    new positions."""
    await bounded([functools.partial(ledgers[c.node].obs.hangup, c.legs.phone_id) for c in leavers], 20)

    def leavers_gone() -> bool:
        refresh(ledgers)
        return all(c.legs.queue_id in ledgers[c.node].gone for c in leavers)

    await wait_until(leavers_gone, 30, "the leavers gone")
    markers = [await originate(ledgers[n], 2000 + i, str(902000 + i), BIG_QUEUE, wait_seq=True, timeout=30)
               for i, n in enumerate(sorted(ledgers))]
    refresh(ledgers)
    assert_sequenced_in_order(markers, ledgers)
    return markers


@pytest.mark.timeout(900)
async def test_2000_callers_one_queue_positions(
        clusterq: Clusterq, asterisk_factory: object, observers: object) -> None:
    a, b, ledgers = await two_node_cluster(clusterq, asterisk_factory, observers)
    client = clusterq.client()
    await client.create_queue(big_queue(ANNOUNCE_EVERY))
    t0 = time.monotonic()
    async with running(CutPrompts(ledgers)):
        callers = await originate_per_node(ledgers, 2000, 900000, JOIN_RATE)
        t_joined = time.monotonic()

        # Arrival order = the leader's sequences; per node they follow the node's origination order.
        def sequenced() -> bool:
            refresh(ledgers)
            return all(seq_of(c, ledgers) for c in callers)

        await wait_until(sequenced, 30, "every caller sequenced")
        for node in ledgers:
            seqs = [seq_of(c, ledgers) for c in callers if c.node == node]
            assert all(x < y for x, y in itertools.pairwise(seqs)), f"{node}: sequences not in origination order"
        arrival = sorted(callers, key=lambda c: seq_of(c, ledgers))
        assert {c.node for c in arrival[:100]} == {"a", "b"}

        # Every 10th caller (in arrival order) hangs up: the positions of everyone behind it change.
        leavers = set(arrival[3::10])
        markers = await leave_and_mark(ledgers, sorted(leavers, key=lambda c: c.index))
        await asyncio.sleep(STALE_MARGIN)
        round_start = time.monotonic()
        remaining = [c for c in arrival if c not in leavers] + markers

        def untold() -> list[Placed]:
            refresh(ledgers)
            return [c for c in remaining if ledgers[c.node].played.get(c.legs.queue_id, 0.0) <= round_start]

        await wait_until(lambda: not untold(), ANNOUNCE_EVERY + 30, "an announcement round",
                         lambda: f"{len(untold())} callers not told again, e.g. {untold()[:3]}")
        t_round = time.monotonic()
        told = await bounded([functools.partial(ledgers[c.node].obs.get_var, c.legs.queue_id, POSITION_VAR)
                              for c in remaining], 20)
        wrong = [(c.number, c.node, pos, i) for i, (c, pos) in enumerate(zip(remaining, told, strict=True), 1)
                 if pos != str(i)]
        assert not wrong, f"{len(wrong)} wrong CLUSTERQ_POSITION (number, node, told, expected): {wrong[:10]}"
        t_checked = time.monotonic()

    # Drain with agents on both nodes (announcements off first: the calls get the CPU).
    await client.call(lambda ch: admin_pb2_grpc.QueueAdminStub(ch).UpdateQueue(
        admin_pb2.UpdateQueueRequest(queue=big_queue(announce_every=0.0)), timeout=5))
    drainers = [f"dr{i:02d}" for i in range(20)]
    homes = {agent: ("a", "b")[i % 2] for i, agent in enumerate(drainers)}
    for agent in drainers:
        ledgers[homes[agent]].obs.set_agent_behaviour(agent, "answer", delay=0.02)
    async with running(Talk(ledgers, remaining, lambda leg: 0.05)):
        for agent in drainers:
            await client.login(agent, f"Local/{agent}@clusterq-agents-test/n", homes[agent], [BIG_QUEUE])
        await wait_until(lambda: all_bridged(remaining, ledgers), 600, "the queue drained",
                         lambda: unbridged(remaining, ledgers), step=0.5)
        t_drained = time.monotonic()
        await wait_until(lambda: all_legs_ended(ledgers), 30, "every agent leg ended")
    refresh(ledgers)
    for led in ledgers.values():
        assert not led.obs.errors, led.obs.errors
    assert_each_caller_bridged_once(remaining, ledgers)
    assert_no_agent_in_two_calls(ledgers)
    first = first_offers(remaining, ledgers)
    # Everyone joined before the first agent logged in: the first offers follow arrival exactly.
    offered = sorted(remaining, key=lambda c: first[c.number])
    out_of_order = [(i, c.number, remaining[i].number) for i, c in enumerate(offered) if c is not remaining[i]]
    assert not out_of_order, f"drain order differs from arrival (offer #, got, expected): {out_of_order[:10]}"
    print(f"\n2000 callers: joined in {t_joined - t0:.1f} s, told again after {t_round - t0:.1f} s, positions "
          f"checked after {t_checked - t0:.1f} s, drained after {t_drained - t0:.1f} s ({len(remaining)} calls, "
          f"{cross_node_calls(remaining, ledgers)} cross-node); Asterisk a: {process_usage(a.pid)}, "
          f"b: {process_usage(b.pid)}")

"""Leader SIGKILL on real parts: nothing lost, nothing offered twice, order kept, new epoch in force.

All call facts come from the tests' ARI observer on the Asterisk node; the epochs come from the
coordinators' own logs only to know which epoch is new.
"""

from __future__ import annotations

import asyncio
import re
import signal

import pytest

from clusterq_testing.observer import AriObserver
from tests.e2e.conftest import Clusterq

pytestmark = pytest.mark.chaos


def _epoch(log: str) -> int:
    found = re.findall(r"leading with epoch (\d+)", log)
    assert found, "replica never led"
    return int(found[-1])


async def _kill_leader(cq: Clusterq) -> tuple[str, int]:
    name = await cq.wait_leader()
    old = _epoch(cq.coordinators[name].log_text())
    cq.coordinators[name].signal(signal.SIGKILL)
    return name, old


async def _wait_new_leader(cq: Clusterq, dead: str, timeout: float = 15.0) -> int:
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        for name, proc in cq.coordinators.items():
            if name != dead and proc.alive() and "leading with epoch" in proc.log_text():
                return _epoch(proc.log_text())
        await asyncio.sleep(0.05)
    raise TimeoutError("no new leader")


async def test_leader_killed_while_offer_rings_new_epoch_reoffers_and_bridges(
        clusterq: Clusterq, asterisk_factory: object, observers: object) -> None:
    [node] = await asterisk_factory(["a"])  # type: ignore[operator]
    obs: AriObserver = await observers(node)  # type: ignore[operator]
    await clusterq.start_coordinators(2)
    await clusterq.start_stasis([node])
    client = clusterq.client()
    obs.set_agent_behaviour("alice", "noanswer")
    await client.login("alice", "Local/alice@clusterq-agents-test/n", "a", ["support"])
    caller = await obs.originate_caller("support", caller_number="777")
    await obs.wait_for(lambda e: e.type == "StasisStart" and e.args[:2] == ("agent", "alice"), timeout=10)
    # A caller waits and its offer rings: now the leader dies.
    dead, old_epoch = await _kill_leader(clusterq)
    obs.set_agent_behaviour("alice", "answer", delay=0.2)
    new_epoch = await _wait_new_leader(clusterq, dead)
    assert new_epoch > old_epoch
    # The new leader offers again (a second agent leg), and that leg is bridged with the caller.
    deadline = asyncio.get_running_loop().time() + 15
    bridged_with = None
    while bridged_with is None:
        assert asyncio.get_running_loop().time() < deadline, "caller never bridged after failover"
        for b in await obs.list_bridges():
            if caller.queue_id in b.channel_ids and len(b.channel_ids) == 2:
                bridged_with = next(c for c in b.channel_ids if c != caller.queue_id)
        await asyncio.sleep(0.05)
    assert bridged_with.startswith(f"a-ag-e{new_epoch}-"), bridged_with
    assert len(obs.agent_legs("alice")) == 2
    # The first leg (old epoch) was hung up before the second rang: never two legs at once.
    ends = {e.channel_id: i for i, e in enumerate(obs.events) if e.type == "StasisEnd"}
    starts = [i for i, e in enumerate(obs.events)
              if e.type == "StasisStart" and e.args[:2] == ("agent", "alice")]
    first_leg = obs.agent_legs("alice")[0]
    assert first_leg in ends and ends[first_leg] < starts[1]


async def test_many_callers_survive_a_leader_kill_each_answered_once_in_order(
        clusterq: Clusterq, asterisk_factory: object, observers: object) -> None:
    [node] = await asterisk_factory(["a"])  # type: ignore[operator]
    obs: AriObserver = await observers(node)  # type: ignore[operator]
    await clusterq.start_coordinators(2)
    await clusterq.start_stasis([node])
    client = clusterq.client()
    agents = ["ag1", "ag2", "ag3"]
    for a in agents:
        obs.set_agent_behaviour(a, "answer_then_hangup", delay=0.1, after=0.4)
    callers = []
    for i in range(24):
        # One at a time: the phone half enters the test app only after clusterq answered (and
        # reported) the caller, so the joining order is exactly this loop's order.
        callers.append(await obs.originate_caller("support", caller_number=f"9{i:03d}"))
        await obs.wait_for_type("StasisStart", callers[-1].phone_id, timeout=15)
    for a in agents:
        await client.login(a, f"Local/{a}@clusterq-agents-test/n", "a", ["support"])
    # Kill the leader once some calls were served and an offer is ringing or a call is up.
    await obs.wait_for(lambda e: e.type == "ChannelEnteredBridge" and len(e.raw["bridge"]["channels"]) == 2,
                       timeout=15)
    dead, _ = await _kill_leader(clusterq)
    await _wait_new_leader(clusterq, dead)

    ids = {c.queue_id: i for i, c in enumerate(callers)}
    bridged: dict[str, set[str]] = {}
    deadline = asyncio.get_running_loop().time() + 60
    while len(bridged) < len(callers):
        assert asyncio.get_running_loop().time() < deadline, f"only {len(bridged)} of {len(callers)} answered"
        for e in obs.events_of("ChannelEnteredBridge"):
            chans = e.raw["bridge"]["channels"]
            for ch in chans:
                if ch in ids and len(chans) == 2:
                    bridged.setdefault(ch, set()).add(e.raw["bridge"]["id"])
        await asyncio.sleep(0.2)
    # Every caller was bridged exactly once (one bridge), none lost.
    assert all(len(b) == 1 for b in bridged.values()), bridged
    # No agent ever had two legs alive at the same time.
    live: dict[str, str] = {}
    for e in obs.events:
        if e.type == "StasisStart" and e.args[:1] == ("agent",):
            agent = e.args[1]
            assert agent not in live, f"{agent} had two legs at once: {live[agent]} and {e.channel_id}"
            live[agent] = e.channel_id or ""
        elif e.type == "StasisEnd":
            for a, ch in list(live.items()):
                if ch == e.channel_id:
                    del live[a]
    # Order kept across the kill: agents were offered callers strictly in arrival order (the caller
    # number travels on every agent leg, so the offers' order is read from Asterisk itself).
    # Legs of offers made together are originated in parallel, so they are ordered by their offer
    # id (a-ag-e<epoch>-<n>_;2: epoch, then the leader's offer counter), not by arrival on Asterisk.
    numbers = [f"9{i:03d}" for i in range(len(callers))]
    offers = []
    for e in obs.events_of("StasisStart"):
        m = re.match(r"a-ag-e(\d+)-(\d+)_;2$", e.channel_id or "")
        if e.args[:1] == ("agent",) and m:
            offers.append((int(m.group(1)), int(m.group(2)), e.raw["channel"]["caller"]["number"]))
    first_offer: list[str] = []
    for _, _, num in sorted(offers):
        if num not in first_offer:
            first_offer.append(num)
    assert first_offer == numbers, sorted(offers)

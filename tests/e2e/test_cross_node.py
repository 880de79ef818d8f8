"""Caller on node a, agent homed on node b: the agent leg reaches a over the PJSIP trunk."""

from __future__ import annotations

import asyncio

import pytest

from clusterq_testing.observer import AriObserver
from tests.e2e.conftest import Clusterq

pytestmark = pytest.mark.e2e


async def _wait_digits(obs: AriObserver, channel_id: str, digits: str, timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while digits not in obs.dtmf_received(channel_id):
        assert asyncio.get_running_loop().time() < deadline, f"{digits!r} never reached {channel_id}"
        await asyncio.sleep(0.05)


async def test_cross_node_bridge_carries_dtmf_both_ways_and_tears_down(
        clusterq: Clusterq, asterisk_factory: object, observers: object) -> None:
    a, b = await asterisk_factory(["a", "b"])  # type: ignore[operator]
    obs_a: AriObserver = await observers(a)  # type: ignore[operator]
    obs_b: AriObserver = await observers(b)  # type: ignore[operator]
    await clusterq.start_coordinators(1)
    await clusterq.start_stasis([a, b])
    client = clusterq.client()
    obs_b.set_agent_behaviour("bob", "answer", delay=0.2)
    await client.login("bob", "Local/bob@clusterq-agents-test/n", "b", ["support"])

    caller = await obs_a.originate_caller("support", caller_number="4915", caller_name="Far")
    agent = await obs_b.wait_for(lambda e: e.type == "StasisStart" and e.args[:2] == ("agent", "bob"), timeout=10)
    # The agent on b sees the caller's number from a.
    assert agent.raw["channel"]["caller"]["number"] == "4915"

    async def bridge_of(obs: AriObserver, channel: str) -> tuple[str, ...]:
        deadline = asyncio.get_running_loop().time() + 10
        while asyncio.get_running_loop().time() < deadline:
            for br in await obs.list_bridges():
                if channel in br.channel_ids and len(br.channel_ids) == 2:
                    return br.channel_ids
            await asyncio.sleep(0.05)
        raise TimeoutError(f"{channel} never bridged")

    on_a = await bridge_of(obs_a, caller.queue_id)
    trunk_on_a = next(c for c in on_a if c != caller.queue_id)
    assert not trunk_on_a.startswith("a-ag-"), "the agent must be rung from its home node b, not from a"
    agent_leg_b = (agent.channel_id or "").removesuffix(";2")
    on_b = await bridge_of(obs_b, agent_leg_b)
    assert any(c.startswith("b-tr-") for c in on_b), on_b

    await obs_b.send_dtmf(agent.channel_id or "", "7")
    await _wait_digits(obs_a, caller.phone_id, "7")
    await obs_a.send_dtmf(caller.phone_id, "3")
    await _wait_digits(obs_b, agent.channel_id or "", "3")

    # The agent hangs up: the caller goes back to its dialplan with CONTINUE, legs on both nodes end.
    await obs_b.hangup(agent.channel_id or "")
    ev = await obs_a.wait_for(lambda e: e.type == "ChannelUserevent" and e.channel_id == caller.queue_id, timeout=10)
    assert ev.raw["userevent"]["status"] == "CONTINUE"
    deadline = asyncio.get_running_loop().time() + 10
    while True:
        left_b, left_a = await obs_b.channel_ids(), await obs_a.channel_ids()
        if not any(c in left_b for c in on_b) and trunk_on_a not in left_a:
            break
        assert asyncio.get_running_loop().time() < deadline, "legs left behind"
        await asyncio.sleep(0.1)

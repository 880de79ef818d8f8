"""Agents' device state on real Asterisk + etcd, like app_queue's state_interface: an agent whose phone
is on a call clusterq did not make is not rung (unless ringinuse), and is rung as soon as that call ends.

The "direct call" is a Local channel the test originates to the agent's own device, outside clusterq:
Asterisk itself marks the device in use. What the agents' phones were offered comes from the tests'
observer app (`cqtest`), never from clusterq's reports; the admin API is read only to know the node has
reported the device state (a sync point), and to check what it shows an operator.
"""

from __future__ import annotations

import asyncio
import signal
import time
import uuid
from typing import Any

import pytest

from clusterq_common.leader_client import AdminClient
from clusterq_testing.observer import AriObserver
from tests.e2e.calls import agent_starts, answered_caller, bridged, until
from tests.e2e.conftest import QUEUES_YAML, Clusterq

pytestmark = pytest.mark.e2e

QUEUES = QUEUES_YAML + """
  devq:
    strategy: linear
    ring_timeout: 8
  devq_inuse:
    strategy: linear
    ring_timeout: 8
    ringinuse: true
"""
AGENT_CONTEXT = "clusterq-agents-test"


async def _device_state(client: AdminClient, agent: str, want: set[str], timeout: float = 10.0) -> str:
    """Wait until the leader knows the agent's device in one of the `want` states (reported by its node)."""
    deadline = time.monotonic() + timeout
    while True:
        state = (await client.agent_state(agent)).device_state
        if state in want:
            return state
        assert time.monotonic() < deadline, f"device of {agent} still {state!r}, want {want}"
        await asyncio.sleep(0.1)


async def _direct_call(obs: AriObserver, agent: str) -> str:
    """A call to the agent's device that clusterq does not know: a Local channel to its extension (the
    observer answers the agent's half). Returns the id of the calling half."""
    calling = f"direct-{uuid.uuid4().hex[:10]}"
    await obs.ari("POST", "/channels", {"endpoint": f"Local/{agent}@{AGENT_CONTEXT}/n", "app": obs.app,
                                        "appArgs": "direct", "channelId": calling, "formats": "ulaw"})
    await until(lambda: len(agent_starts(obs, agent)) == 1, 10, f"the direct call to {agent}")
    return calling


async def _one_agent(clusterq: Clusterq, asterisk_factory: Any, observers: Any, agent: str, queue: str,
                     coordinators: int = 1) -> tuple[AriObserver, AdminClient]:
    """One node, `coordinators` replicas, `agent` logged in to `queue` and answering; returns once its
    node reported the device free."""
    clusterq.queues_file.write_text(QUEUES)
    [node] = await asterisk_factory(["a"])
    obs: AriObserver = await observers(node)
    await clusterq.start_coordinators(coordinators)
    await clusterq.start_stasis([node])
    client = clusterq.client()
    obs.set_agent_behaviour(agent, "answer", delay=0.1)
    await client.login(agent, f"Local/{agent}@{AGENT_CONTEXT}/n", "a", [queue])
    await _device_state(client, agent, {"NOT_INUSE"})
    return obs, client


async def test_an_agent_on_a_call_clusterq_did_not_make_is_rung_only_after_it_ends(
        clusterq: Clusterq, asterisk_factory: Any, observers: Any) -> None:
    obs, client = await _one_agent(clusterq, asterisk_factory, observers, "dora", "devq")
    assert (await client.agent_state("dora")).state_interface == f"Local/dora@{AGENT_CONTEXT}"

    direct = await _direct_call(obs, "dora")
    await _device_state(client, "dora", {"INUSE"})
    shown = await client.agent_state("dora")
    assert shown.state == "busy", shown
    caller = await answered_caller(obs, "devq", "901")
    await asyncio.sleep(2.0)
    assert len(agent_starts(obs, "dora")) == 1, "dora was rung while her phone was on another call"
    assert not [e for e in obs.events_of("ChannelEnteredBridge") if caller.queue_id in e.raw["bridge"]["channels"]]

    hung = time.monotonic()
    await obs.hangup(direct)
    await bridged(obs, caller.queue_id)
    assert time.monotonic() - hung < 5.0
    starts = agent_starts(obs, "dora")
    assert len(starts) == 2 and starts[1].raw["channel"]["caller"]["number"] == "901"


async def test_ringinuse_rings_an_agent_whose_phone_is_on_another_call(
        clusterq: Clusterq, asterisk_factory: Any, observers: Any) -> None:
    obs, client = await _one_agent(clusterq, asterisk_factory, observers, "ines", "devq_inuse")
    await _direct_call(obs, "ines")
    await _device_state(client, "ines", {"INUSE"})
    caller = await answered_caller(obs, "devq_inuse", "902")
    await bridged(obs, caller.queue_id)
    starts = agent_starts(obs, "ines")
    assert len(starts) == 2 and starts[1].raw["channel"]["caller"]["number"] == "902"


async def test_a_new_leader_does_not_ring_an_agent_whose_phone_is_on_another_call(
        clusterq: Clusterq, asterisk_factory: Any, observers: Any) -> None:
    # A new leader knows no device state of its own: the node's Register carries the states it last
    # reported, so the agent stays busy across the leader change instead of being rung at once.
    obs, client = await _one_agent(clusterq, asterisk_factory, observers, "vera", "devq", coordinators=2)
    direct = await _direct_call(obs, "vera")
    await _device_state(client, "vera", {"INUSE"})
    caller = await answered_caller(obs, "devq", "903")
    await asyncio.sleep(0.5)
    old = await clusterq.wait_leader()
    clusterq.coordinators[old].signal(signal.SIGKILL)
    deadline = time.monotonic() + 20
    while await clusterq.wait_leader() == old:
        assert time.monotonic() < deadline, "no new leader"
        await asyncio.sleep(0.1)
    # Known again once the node has registered with the new leader (UNKNOWN until then).
    await _device_state(client, "vera", {"INUSE"}, timeout=20)
    await asyncio.sleep(2.0)
    assert len(agent_starts(obs, "vera")) == 1, "the new leader rang vera while her phone was on another call"
    await obs.hangup(direct)
    await bridged(obs, caller.queue_id)
    starts = agent_starts(obs, "vera")
    assert len(starts) == 2 and starts[1].raw["channel"]["caller"]["number"] == "903"

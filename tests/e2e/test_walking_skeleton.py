"""One call all the way through real Asterisk + etcd: queued with music, agent rung, bridged.

Every assertion comes from the tests' own ARI observer (what really happened on Asterisk), except
the final queue/agent state, which is also read from the coordinator's statistics.
"""

from __future__ import annotations

import asyncio

import pytest

from clusterq_testing.observer import AriObserver
from tests.e2e.conftest import Clusterq

pytestmark = pytest.mark.e2e


async def _bridge_with(obs: AriObserver, channel_id: str, timeout: float = 10.0) -> tuple[str, ...]:
    """Channels of the bridge that holds channel_id (waits until it holds two)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        for b in await obs.list_bridges():
            if channel_id in b.channel_ids and len(b.channel_ids) == 2:
                return b.channel_ids
        await asyncio.sleep(0.05)
    raise TimeoutError(f"{channel_id} never shared a bridge with another channel")


async def test_one_call_is_queued_rung_bridged_and_dtmf_flows(
        clusterq: Clusterq, asterisk_factory: object, observers: object) -> None:
    [node] = await asterisk_factory(["a"])  # type: ignore[operator]
    obs: AriObserver = await observers(node)  # type: ignore[operator]
    await clusterq.start_coordinators(1)
    await clusterq.start_stasis([node])
    client = clusterq.client()

    obs.set_agent_behaviour("alice", "answer", delay=0.3)
    # The caller joins first, with no agent logged in: it must be answered and wait with music.
    caller = await obs.originate_caller("support", caller_number="5551234", caller_name="Ada")
    await obs.wait_for_type("StasisStart", caller.phone_id, timeout=10)  # ;1 enters only once ;2 is answered
    await asyncio.sleep(0.3)
    assert not obs.agent_legs("alice")

    await client.login("alice", "Local/alice@clusterq-agents-test/n", "a", ["support"])
    agent_start = await obs.wait_for(lambda e: e.type == "StasisStart" and e.args[:2] == ("agent", "alice"),
                                     timeout=10)
    # The agent sees the caller's number.
    assert agent_start.raw["channel"]["caller"]["number"] == "5551234"
    members = await _bridge_with(obs, caller.queue_id)
    agent_leg = next(c for c in members if c != caller.queue_id)
    assert agent_leg.startswith("a-ag-")

    # DTMF from the agent's phone reaches the caller's phone through the bridge.
    await obs.send_dtmf(agent_start.channel_id or "", "5")
    deadline = asyncio.get_running_loop().time() + 10
    while "5" not in obs.dtmf_received(caller.phone_id):
        assert asyncio.get_running_loop().time() < deadline, "DTMF never reached the caller"
        await asyncio.sleep(0.05)

    # The caller hangs up: the agent leg is torn down, the queue is empty, alice is free again.
    await obs.hangup(caller.phone_id)
    await obs.wait_for_type("StasisEnd", agent_start.channel_id, timeout=10)
    deadline = asyncio.get_running_loop().time() + 10
    while True:
        state = await client.agent_state("alice")
        snap = await client.snapshot("support")
        if state.state == "available" and snap.queues[0].waiting == 0:
            break
        assert asyncio.get_running_loop().time() < deadline, f"alice is {state.state}, queue {snap.queues[0]}"
        await asyncio.sleep(0.1)
    assert agent_leg not in await obs.channel_ids()

    # The leader's queue_log tells the same story in app_queue's format (flushed every 0.5 s); CONNECT
    # names the agent leg by its channel id on Asterisk, as app_queue names the member channel.
    expected = [["support", "NONE", "ENTERQUEUE", "", "5551234", "1"], ["support", "alice", "ADDMEMBER"],
                ["support", "alice", "CONNECT"], ["support", "alice", "COMPLETECALLER"]]
    deadline = asyncio.get_running_loop().time() + 5
    while True:
        story = [f[2:] for f in clusterq.queue_log() if f[1] in (caller.queue_id, "NONE")]
        if len(story) >= 4 or asyncio.get_running_loop().time() > deadline:
            break
        await asyncio.sleep(0.1)
    assert [s[:len(e)] for s, e in zip(story, expected, strict=False)] == expected, story
    connect, complete = story[2], story[3]
    # CONNECT|holdtime|agent leg|ringtime, both in whole seconds as app_queue writes them: the caller's
    # wait includes its agent's ringing.
    assert connect[4] == agent_leg and int(connect[3]) >= int(connect[5]) >= 0, connect
    assert int(complete[4]) >= 0 and complete[5] == "1", complete  # call time; entered at position 1


async def test_unknown_queue_and_bad_args_go_back_to_the_dialplan(
        clusterq: Clusterq, asterisk_factory: object, observers: object) -> None:
    [node] = await asterisk_factory(["a"])  # type: ignore[operator]
    obs: AriObserver = await observers(node)  # type: ignore[operator]
    await clusterq.start_coordinators(1)
    await clusterq.start_stasis([node])

    unknown = await obs.originate_caller("nosuchqueue")
    bad = await obs.originate_caller("support,priority=high")
    results: dict[str, str] = {}
    deadline = asyncio.get_running_loop().time() + 10
    while len(results) < 2:
        for ue in obs.user_events("ClusterqResult"):
            if ue.channel_id in (unknown.queue_id, bad.queue_id):
                results[ue.channel_id or ""] = ue.fields.get("status", "")
        assert asyncio.get_running_loop().time() < deadline, f"results so far: {results}"
        await asyncio.sleep(0.05)
    assert results[unknown.queue_id] == "UNKNOWN_QUEUE"
    assert results[bad.queue_id] == "INVALID_ARGS"

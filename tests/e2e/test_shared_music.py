"""Shared music (CLUSTERQ_SHARED_MUSIC=1) on a real Asterisk: waiting callers sit in one holding bridge
per music class and hear its one music stream; a prompt replaces it for one caller and it comes back
by itself; a connection moves the caller into its call's bridge; an exit digit still works.

Judged by the tests' own ARI observer: GET /bridges, bridge events, playbacks, and what each caller's
phone really receives (recorded from the phone's channel)."""

from __future__ import annotations

import asyncio

import pytest

from clusterq_testing.asterisk import AsteriskNode
from clusterq_testing.observer import AriObserver
from tests.e2e.calls import answered_caller, until
from tests.e2e.conftest import Clusterq
from tests.e2e.test_caller_experience import (
    QUEUES,
    _dialplan_functions,
    _playbacks,
    _result,
    heard,
)

pytestmark = pytest.mark.e2e

HOLD = "a-hold-default_"


async def _start(cq: Clusterq, factory: object, observers: object) -> tuple[AsteriskNode, AriObserver]:
    cq.queues_file.write_text(QUEUES)
    [node] = await factory(["a"])  # type: ignore[operator]
    obs = await observers(node)  # type: ignore[operator]
    await cq.start_coordinators(1)
    await cq.start_stasis([node], shared_music=True)
    return node, obs


async def _members(obs: AriObserver, bridge: str) -> set[str]:
    return {ch for b in await obs.list_bridges() if b.bridge_id == bridge for ch in b.channel_ids}


async def test_waiting_callers_hear_one_shared_stream_prompts_replace_it_and_a_call_moves_them_out(
        clusterq: Clusterq, asterisk_factory: object, observers: object) -> None:
    node, obs = await _start(clusterq, asterisk_factory, observers)
    first = await answered_caller(obs, "announced", "201")
    second = await answered_caller(obs, "announced", "202")
    members = await _wait_members(obs, {first.queue_id, second.queue_id})
    assert members == {first.queue_id, second.queue_id}
    [hold] = [b for b in await obs.ari("GET", "/bridges") if b["id"] == HOLD]
    assert hold["bridge_type"] == "holding"
    # A prompt for the first caller plays inside the bridge; afterwards the music is back by itself.
    started = await obs.wait_for(lambda e: e.type == "PlaybackStarted" and bool(_playbacks(obs, first.queue_id)), 10)
    pb = started.raw["playback"]["id"]
    await obs.wait_for(lambda e: e.type == "PlaybackFinished" and e.raw["playback"]["id"] == pb, 15)
    (seconds, level), (other_seconds, other_level) = await asyncio.gather(
        heard(obs, node, first.phone_id, 1.0), heard(obs, node, second.phone_id, 1.0))
    assert seconds >= 0.8 and level > 100, f"no music after the prompt: {seconds:.2f} s, RMS {level:.0f}"
    assert other_seconds >= 0.8 and other_level > 100, f"second caller: {other_seconds:.2f} s, RMS {other_level:.0f}"
    assert first.queue_id in await _members(obs, HOLD), "the prompt did not take the caller out of the bridge"
    # An agent: the first caller is moved into its call's bridge with the agent leg.
    obs.set_agent_behaviour("ann", "answer", delay=0.1)
    await clusterq.client().login("ann", "Local/ann@clusterq-agents-test/n", "a", ["announced"])
    entered = await obs.wait_for(lambda e: e.type == "ChannelEnteredBridge"
                                 and first.queue_id in e.raw["bridge"]["channels"]
                                 and e.raw["bridge"]["bridge_type"] != "holding"
                                 and len(e.raw["bridge"]["channels"]) == 2, 15)
    call = entered.raw["bridge"]["id"]
    assert any("-ag-" in ch for ch in await _members(obs, call))
    assert await _members(obs, HOLD) == {second.queue_id}


async def _wait_members(obs: AriObserver, want: set[str], timeout: float = 10.0) -> set[str]:
    """The holding bridge's members once they are `want` (or whatever they are after `timeout`)."""
    got: set[str] = set()
    for _ in range(int(timeout / 0.1)):
        got = await _members(obs, HOLD)
        if got == want:
            break
        await asyncio.sleep(0.1)
    return got


async def test_an_exit_digit_works_from_inside_the_holding_bridge(
        clusterq: Clusterq, asterisk_factory: object, observers: object) -> None:
    node, obs = await _start(clusterq, asterisk_factory, observers)
    await _dialplan_functions(node)
    leaving = await answered_caller(obs, "exitable", "401")
    assert await _wait_members(obs, {leaving.queue_id}) == {leaving.queue_id}
    await obs.wait_for(lambda e: e.type == "ChannelVarset" and e.channel_id == leaving.queue_id
                       and e.raw.get("variable") == "CLUSTERQ_EXIT_CONTEXT", timeout=10)
    await obs.send_dtmf(leaving.phone_id, "5")
    fields = await until(lambda: _result(obs, leaving.queue_id, "ClusterqExitKey"), 10, "ClusterqExitKey")
    assert (fields["digit"], fields["status"]) == ("5", "EXITWITHKEY")
    assert await _members(obs, HOLD) == set()

"""A caller waiting for the trunk leg of its cross-node agent is never kept forever (connections.py)."""

from __future__ import annotations

import asyncio

import pytest

from stasis_app.ari.fake import FakeAri
from stasis_app.call import connections as connections_mod
from stasis_app.call import records as r
from tests.unit.stasis_app.harness import Node, running


async def _connecting(n: Node) -> str:
    """A sequenced caller connected to agent alice homed on node b (offer o1): it waits for the trunk leg."""
    cid = await n.queued_caller()
    n.offer("o1", cid, agent_node="b")
    n.connect("o1", cid, agent_node="b")
    await n.settle()
    assert n.app.callers[cid].state == r.CONNECTING
    return cid


async def test_a_trunk_leg_that_never_comes_fails_the_offer_and_the_caller_waits_again(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(connections_mod, "TRUNK_WAIT", 0.05)
    ari = FakeAri("a")
    async with running(ari) as n:
        cid = await _connecting(n)
        await asyncio.sleep(0.1)
        await n.settle()
        assert [(f.offer_id, f.reason) for f in n.coord.of("agent_leg_failed")] == [("o1", "failed")]
        c = n.app.callers[cid]
        assert (c.state, c.offer_id, c.agent_id) == (r.WAITING, "", "")
        assert n.coord.reregisters == 0, "never reported connected: the AgentLegFailed re-queues it"
        assert ari.channels[cid].moh_class == "default"
        n.offer("o2", cid, agent="bob", agent_node="b")  # the leader re-queued it: the next agent
        await n.settle()
        assert (c.state, c.offer_id) == (r.RINGING, "o2")


async def test_a_trunk_leg_that_came_in_time_is_not_failed_afterwards(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(connections_mod, "TRUNK_WAIT", 0.05)
    ari = FakeAri("a")
    async with running(ari) as n:
        cid = await _connecting(n)
        leg = ari.caller_enters(["inbound", "cq-o1"])
        await n.settle()
        await asyncio.sleep(0.1)
        await n.settle()
        assert n.app.callers[cid].state == r.CONNECTED and set(ari.bridges["a-br-o1_"].channels) == {cid, leg}
        assert not n.coord.of("agent_leg_failed")


async def test_a_caller_waiting_for_its_trunk_leg_goes_back_unavailable_after_the_grace_time() -> None:
    ari = FakeAri("a")
    async with running(ari, grace=0.1) as n:
        cid = await _connecting(n)
        n.coord.disconnect()
        await asyncio.sleep(0.2)
        await n.settle()
        assert [x.channel_id for x in ari.continued] == [cid]
        assert ari.channels[cid].variables["CLUSTERQ_STATUS"] == "UNAVAILABLE"


async def test_a_failed_call_a_register_reported_connected_is_re_registered_waiting(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A call some Register reported connected may be adopted by the leader, which does not re-queue an
    adopted call on AgentLegFailed: a fresh Register, in which the caller waits, makes it do so."""
    monkeypatch.setattr(connections_mod, "TRUNK_WAIT", 0.05)
    ari = FakeAri("a")
    async with running(ari) as n:
        cid = await _connecting(n)
        [reported] = [x for x in n.app.snapshot().calls if x.joined.call_id == cid]  # a reconnect's Register
        assert reported.state == "connected"
        await asyncio.sleep(0.1)
        await n.settle()
        assert n.coord.reregisters == 1
        c = n.app.callers[cid]
        [snap] = [x for x in n.coord.registers[-1].calls if x.joined.call_id == cid]
        assert (snap.state, snap.offer_id, snap.arrival_seq) == ("waiting", "", c.arrival_seq)


async def test_a_timeout_that_fell_while_connecting_counts_once_the_caller_waits_again(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """timeout= fires while the caller is connecting (ignored then); the trunk leg never comes and
    the caller waits again: its timeout applies at once, instead of never."""
    monkeypatch.setattr(connections_mod, "TRUNK_WAIT", 0.3)
    ari = FakeAri("a")
    async with running(ari) as n:
        cid = await n.queued_caller(("support", "timeout=0.2"))
        n.offer("o1", cid, agent_node="b")
        n.connect("o1", cid, agent_node="b")
        await n.settle()
        assert n.app.callers[cid].state == r.CONNECTING
        await asyncio.sleep(0.6)  # the timeout fell at 0.2 s, the trunk wait ended at 0.3 s
        for _ in range(10):
            await n.settle()
        assert cid not in n.app.callers
        assert ari.channels[cid].variables["CLUSTERQ_STATUS"] == "TIMEOUT"

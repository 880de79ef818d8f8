"""NodeApp bridging on the fake ARI: trunk legs between nodes, bridge retries, offers cancelled after Connect."""

from __future__ import annotations

import asyncio

import pytest

from clusterq_proto.v1 import node_pb2
from stasis_app.ari.fake import FakeAri, OriginateOutcome
from stasis_app.ari.port import AriError, AriUnavailable
from stasis_app.call import connections as connections_mod
from stasis_app.call import records as r
from tests.unit.stasis_app.harness import running


async def test_a_trunk_leg_arriving_before_its_offer_is_kept_and_bridged_once_the_decision_comes() -> None:
    # The agent's node dials the caller's node as soon as it gets its own Connect; the caller's node
    # may still be waiting for the leader's Offer / Connect of that caller.
    ari = FakeAri("a")
    async with running(ari) as n:
        cid = await n.queued_caller()
        leg = ari.caller_enters(["inbound", "cq-o1"])
        await n.settle()
        assert leg in ari.channels, "the early trunk leg must not be hung up"
        n.offer("o1", cid, agent_node="b")
        n.connect("o1", cid, agent_node="b")
        await n.settle()
        [bridge] = ari.bridges.values()
        assert set(bridge.channels) == {cid, leg}


async def test_a_trunk_leg_nobody_claims_is_hung_up_after_the_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(connections_mod, "INBOUND_WAIT", 0.05)
    ari = FakeAri("a")
    async with running(ari) as n:
        leg = ari.caller_enters(["inbound", "cq-o9"])
        await n.settle()
        assert leg in ari.channels
        await asyncio.sleep(0.1)
        await n.settle()
        assert leg not in ari.channels


async def test_an_offer_cancelled_after_connect_puts_the_caller_back_to_waiting() -> None:
    # The agent hung up between answering and the node bridging it: the leader re-queues the caller.
    ari = FakeAri("a")
    async with running(ari) as n:
        cid = await n.queued_caller()
        n.offer("o1", cid, agent_node="b")
        n.connect("o1", cid, agent_node="b")
        await n.settle()
        assert n.app.callers[cid].state == r.CONNECTING
        n.coord.decide(cancel_offer=node_pb2.CancelOffer(offer_id="o1", call_id=cid,
                                                         reason="failed"))
        await n.settle()
        c = n.app.callers[cid]
        assert (c.state, c.offer_id, c.agent_id) == (r.WAITING, "", "")
        n.offer("o2", cid, agent="bob", agent_node="b")
        await n.settle()
        assert (c.state, c.offer_id, c.agent_id) == (r.RINGING, "o2", "bob")


async def test_a_bridge_asterisk_does_not_answer_is_retried() -> None:
    ari = FakeAri("a")
    async with running(ari) as n:
        cid = await n.queued_caller()
        ari.outcomes["Local/alice@agents/n"] = OriginateOutcome.ANSWER
        ari.errors["add_to_bridge"] = [AriUnavailable("add_to_bridge: timed out")]
        n.offer("o1", cid)
        await n.settle()
        n.connect("o1", cid)
        await asyncio.sleep(0.3)  # the first retry comes after 0.2 s
        await n.settle()
        assert ari.bridges["a-br-o1_"].channels == [cid, "a-ag-o1_"]
        assert not n.coord.of("agent_leg_failed")


async def test_a_bridge_that_keeps_failing_puts_the_caller_back_in_its_place_with_music() -> None:
    ari = FakeAri("a")
    async with running(ari) as n:
        cid = await n.queued_caller()
        ari.outcomes["Local/alice@agents/n"] = OriginateOutcome.ANSWER
        ari.errors["add_to_bridge"] = [AriError(500, "Internal Server Error")]
        n.offer("o1", cid)
        await n.settle()
        n.connect("o1", cid)
        await n.settle()
        assert [(f.offer_id, f.reason) for f in n.coord.of("agent_leg_failed")] == [("o1", "failed")]
        assert "a-ag-o1_" not in ari.channels and "a-br-o1_" not in ari.bridges
        c = n.app.callers[cid]
        assert (c.state, c.offer_id, c.peer_channel) == (r.WAITING, "", "")
        assert ari.channels[cid].moh_class == "default"
        assert not n.coord.of("call_ended"), "the call never started"
        n.offer("o2", cid, agent="bob")
        ari.outcomes["Local/bob@agents/n"] = OriginateOutcome.ANSWER
        await n.settle()
        n.connect("o2", cid, agent="bob")
        await n.settle()
        assert ari.bridges["a-br-o2_"].channels == [cid, "a-ag-o2_"]


async def test_a_connect_sent_again_for_a_bridged_call_changes_nothing() -> None:
    """A leader re-sends a Connect it cannot tell arrived (the node's Register after a stream drop):
    acted on twice, the node hung up the agent of the live call and sent the caller back."""
    ari = FakeAri("a")
    ari.outcomes["Local/alice@agents/n"] = OriginateOutcome.ANSWER
    async with running(ari) as n:
        cid = await n.queued_caller()
        n.offer("o1", cid)
        await n.settle()
        n.connect("o1", cid)
        await n.settle()
        assert set(ari.bridges["a-br-o1_"].channels) == {cid, "a-ag-o1_"}
        n.connect("o1", cid)
        await n.settle()
        assert set(ari.bridges["a-br-o1_"].channels) == {cid, "a-ag-o1_"} and "a-ag-o1_" in ari.channels
        assert not n.coord.of("call_ended") and not ari.continued


async def test_a_reconnect_to_the_same_leader_keeps_a_ringing_caller_ringing() -> None:
    """Offers of the same leader go on across a stream drop (it kept them): resetting the caller to
    plain waiting made that leader take the call for failed once the agent answered."""
    ari = FakeAri("a")
    async with running(ari) as n:
        cid = await n.queued_caller()
        n.offer("o1", cid, agent_node="b")
        await n.settle()
        assert n.app.callers[cid].state == r.RINGING
        n.coord.disconnect()
        n.coord.connect(epoch=1)
        await n.settle()
        assert (n.app.callers[cid].state, n.app.callers[cid].offer_id) == (r.RINGING, "o1")
        n.coord.disconnect()
        n.coord.connect(epoch=2)  # a new leader: its predecessor's offers are void
        await n.settle()
        assert (n.app.callers[cid].state, n.app.callers[cid].offer_id) == (r.WAITING, "")

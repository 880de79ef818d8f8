"""The agent's side of a cross-node call: bridging the agent leg with the trunk leg (agent_legs.py)."""

from __future__ import annotations

import asyncio

from clusterq_proto.v1 import node_pb2
from stasis_app.ari.fake import FakeAri, FakeBridge, OriginateOutcome
from stasis_app.ari.port import AriError, AriUnavailable
from tests.unit.stasis_app.harness import Node, running


def _cross_node_connect(n: Node, ari: FakeAri) -> None:
    """Agent bob (homed on this node b) answers offer o5 for a caller on node a; the leader connects."""
    ari.outcomes["Local/bob@agents/n"] = OriginateOutcome.ANSWER
    ari.outcomes["PJSIP/cq-o5@a"] = OriginateOutcome.ANSWER
    n.offer("o5", "a-caller", agent="bob", agent_node="b", caller_node="a")


async def _connect(n: Node) -> None:
    await n.settle()
    n.connect("o5", "a-caller", agent="bob", agent_node="b", caller_node="a")
    await n.settle()


async def test_a_trunk_bridge_asterisk_does_not_answer_is_retried_and_one_already_made_is_used() -> None:
    ari = FakeAri("b")
    async with running(ari, node_id="b") as n:
        _cross_node_connect(n, ari)
        # An earlier attempt made the bridge but its answer was lost (409 now), then one request
        # gets no answer at all.
        ari.bridges["b-br-o5_"] = FakeBridge("b-br-o5_", "clusterq-agent-bob")
        ari.errors["add_to_bridge"] = [AriUnavailable("add_to_bridge: timed out")]
        await _connect(n)
        await asyncio.sleep(0.3)  # the first retry comes after 0.2 s
        await n.settle()
        assert ari.bridges["b-br-o5_"].channels == ["b-ag-o5_", "b-tr-o5_"]
        assert not n.coord.of("call_ended")


async def test_a_trunk_bridge_that_fails_releases_the_agent_and_the_callers_node() -> None:
    ari = FakeAri("b")
    async with running(ari, node_id="b") as n:
        _cross_node_connect(n, ari)
        ari.errors["add_to_bridge"] = [AriError(500, "Internal Server Error")]
        await _connect(n)
        assert "b-ag-o5_" not in ari.channels, "the agent must not stay in silence"
        assert "b-tr-o5_" not in ari.channels, "the caller's node sees its trunk leg end"
        assert "b-br-o5_" not in ari.bridges
        assert [(e.call_id, e.offer_id, e.agent_hung_up) for e in n.coord.of("call_ended")] == [
            ("a-caller", "o5", True)]
        assert not n.app.legs.legs


async def test_a_connected_offer_cancelled_before_its_trunk_leg_was_bridged_releases_the_agent() -> None:
    # The caller's node never got the trunk leg (or could not bridge it) and reported the offer failed.
    ari = FakeAri("b")
    async with running(ari, node_id="b") as n:
        _cross_node_connect(n, ari)
        ari.outcomes["PJSIP/cq-o5@a"] = OriginateOutcome.PENDING  # the trunk leg is still being dialled
        await _connect(n)
        assert {"b-ag-o5_", "b-tr-o5_"} <= set(ari.channels)
        n.coord.decide(cancel_offer=node_pb2.CancelOffer(offer_id="o5", call_id="a-caller", reason="failed"))
        await n.settle()
        assert "b-ag-o5_" not in ari.channels and "b-tr-o5_" not in ari.channels
        assert not n.coord.of("call_ended") and not n.coord.of("agent_leg_failed")
        assert not n.app.legs.legs

"""Validation at the node edge: what a node may say about a caller's wait and its snapshot."""

from __future__ import annotations

import math

import pytest

from clusterq_proto.v1 import node_pb2
from coordinator.queue import CallerJoined
from coordinator.rpc.convert_node import BadNodeEvent, adopted_call_error, agent_leg_error, joined_event


@pytest.mark.parametrize("waited", [math.inf, -math.inf, math.nan, -1.0, 86_401.0])
def test_an_impossible_wait_rejects_the_caller(waited: float) -> None:
    ev = joined_event(node_pb2.CallJoined(call_id="c1", queue="q", waited=waited), "n1", 1, 100.0)
    assert isinstance(ev, BadNodeEvent) and ev.call_id == "c1" and "waited" in ev.message


def test_the_wait_dates_the_join_back_on_the_leaders_clock() -> None:
    ev = joined_event(node_pb2.CallJoined(call_id="c1", queue="q", waited=30.0), "n1", 1, 100.0, re_report=True)
    assert isinstance(ev, CallerJoined) and ev.joined_at == 70.0 and ev.re_report


def _connected(call_id: str = "c1", queue: str = "q", agent_id: str = "ag", offer_id: str = "e1-1"
               ) -> node_pb2.CallSnapshot:
    return node_pb2.CallSnapshot(joined=node_pb2.CallJoined(call_id=call_id, queue=queue), state="connected",
                                 agent_id=agent_id, offer_id=offer_id)


@pytest.mark.parametrize(("snap", "fragment"), [
    (_connected(call_id=""), "call_id is empty"),
    (_connected(call_id="c" * 5_000_000), "call_id longer"),
    (_connected(queue="bad queue"), "invalid queue"),
    (_connected(agent_id="a" * 65), "invalid agent_id"),
    (_connected(offer_id="o" * 129), "offer_id longer"),
])
def test_an_unusable_connected_call_in_a_snapshot_is_named(snap: node_pb2.CallSnapshot, fragment: str) -> None:
    err = adopted_call_error(snap)
    assert err is not None and fragment in err and len(err) < 200
    assert adopted_call_error(_connected()) is None


@pytest.mark.parametrize(("leg", "fragment"), [
    (node_pb2.AgentLegSnapshot(offer_id="", agent_id="ag", call_id="c1"), "offer_id is empty"),
    (node_pb2.AgentLegSnapshot(offer_id="o1", agent_id="ag", call_id="c" * 129), "call_id longer"),
    (node_pb2.AgentLegSnapshot(offer_id="o1", agent_id="", call_id="c1"), "invalid agent_id"),
    (node_pb2.AgentLegSnapshot(offer_id="o1", agent_id="ag", call_id="c1", caller_node="n" * 65), "caller_node"),
])
def test_an_unusable_agent_leg_in_a_snapshot_is_named(leg: node_pb2.AgentLegSnapshot, fragment: str) -> None:
    err = agent_leg_error(leg)
    assert err is not None and fragment in err
    assert agent_leg_error(node_pb2.AgentLegSnapshot(offer_id="o1", agent_id="ag", call_id="c1")) is None


def test_a_call_end_names_its_offer_and_an_oversized_offer_id_is_refused() -> None:
    from coordinator.queue import CallEnded
    from coordinator.rpc.convert_node import simple_event

    ev = node_pb2.NodeEvent(call_ended=node_pb2.CallEnded(call_id="c1", offer_id="o7", agent_hung_up=True))
    assert simple_event(ev) == CallEnded("c1", True, "o7")
    long = node_pb2.NodeEvent(call_ended=node_pb2.CallEnded(call_id="c1", offer_id="o" * 129))
    bad = simple_event(long)
    assert isinstance(bad, BadNodeEvent) and "offer_id" in bad.message

"""A node whose stream is down (NodeDetached) gets no new offer, for its agents or its callers, until
it is back (NodeAlive); what already rings there goes on; NodeLost takes over."""

from __future__ import annotations

from coordinator.queue import (
    AgentLoggedIn,
    AgentStateChanged,
    CancelOffer,
    NodeAlive,
    NodeDetached,
    NodeLost,
)

from .helpers import agent, engine, join, offered, only


def test_no_offer_rings_an_agent_on_a_detached_node_until_it_is_back() -> None:
    e = engine(agents=(agent("far", node="n2"),))
    out = e.apply(NodeDetached("n2"), 0.0)
    assert AgentStateChanged("far", "unavailable", "node_detached") in out
    assert offered(e.apply(join("c1"), 1.0)) == []
    assert offered(e.apply(NodeAlive("n2"), 2.0)) == [("c1", "far")]


def test_a_caller_on_a_detached_node_is_passed_over_and_offered_once_its_node_is_back() -> None:
    e = engine()
    e.apply(join("c1", node="n2"), 0.0)
    e.apply(join("c2", node="n1"), 0.0)
    e.apply(NodeDetached("n2"), 1.0)
    assert offered(e.apply(AgentLoggedIn(agent("a1")), 2.0)) == [("c2", "a1")]
    assert offered(e.apply(AgentLoggedIn(agent("a2")), 3.0)) == []
    assert offered(e.apply(NodeAlive("n2"), 4.0)) == [("c1", "a2")]


def test_what_already_rings_on_a_detached_node_goes_on_and_node_lost_cancels_it() -> None:
    e = engine(agents=(agent("far", node="n2"),))
    assert offered(e.apply(join("c1"), 0.0)) == [("c1", "far")]
    assert only(e.apply(NodeDetached("n2"), 1.0), CancelOffer) == []
    cancelled = only(e.apply(NodeLost("n2"), 7.0), CancelOffer)
    assert [(x.call_id, x.reason) for x in cancelled] == [("c1", "node_lost")]
    # Lost, not detached any more: when it comes back its agent is offered again.
    assert offered(e.apply(NodeAlive("n2"), 8.0)) == [("c1", "far")]

"""Calls that cross a leader change (adopted from node re-reports) or fail after their Connect."""

from __future__ import annotations

import pytest

from coordinator.queue import (
    AgentLoggedIn,
    AgentLoggedOut,
    CallAdopted,
    CallEnded,
    CancelOffer,
    Connect,
    NodeLost,
    Offer,
    OfferAnswered,
    OfferFailed,
    QueueConfig,
    Strategy,
)

from .helpers import agent, engine, join, offered, only

LINEAR = QueueConfig("q", strategy=Strategy.LINEAR, ring_timeout=20.0)


def _states(e: object) -> dict[str, str]:
    return {v.agent_id: v.state for v in e.agent_states()}  # type: ignore[attr-defined]


@pytest.mark.parametrize("adopt_first", [False, True], ids=["agent-known", "agent-logs-in-later"])
def test_adopted_call_keeps_its_agent_busy_until_it_ends(adopt_first: bool) -> None:
    # A new leader learns agents from etcd and calls from the nodes, in either order.
    e = engine(LINEAR, agents=() if adopt_first else (agent("a"),))
    e.apply(CallAdopted("old", "q", "n1", "a", "o-old"), 0.5)
    if adopt_first:
        e.apply(AgentLoggedIn(agent("a")), 0.6)
    assert _states(e)["a"] == "busy"
    assert offered(e.apply(join("x"), 1.0)) == []
    assert e.position("x") == 1
    out = e.apply(CallEnded("old", agent_hung_up=False), 5.0)
    assert offered(out) == [("x", "a")]
    assert e.caller("old") is None


def test_adopted_call_reported_by_both_nodes_is_one_call() -> None:
    e = engine(LINEAR, agents=(agent("a", node="n2"), agent("b")))
    # The agent's node knows neither the queue nor the caller's node; the caller's node fills them in.
    e.apply(CallAdopted("old", "", "", "a", "o-old"), 0.1)
    e.apply(CallAdopted("old", "q", "n1", "a", "o-old"), 0.2)
    view = e.caller("old")
    assert view is not None and (view.queue, view.node_id, view.state) == ("q", "n1", "connected")
    out = e.apply(join("x"), 1.0)
    assert offered(out) == [("x", "b")]
    e.apply(CallEnded("old", agent_hung_up=False), 2.0)
    assert e.caller("old") is None and _states(e)["a"] == "available"


def test_agent_logging_in_again_mid_call_stays_busy() -> None:
    e = engine(LINEAR, agents=(agent("a"),))
    e.apply(OfferAnswered(only(e.apply(join("x"), 0.0), Offer)[0].offer_id), 1.0)
    e.apply(AgentLoggedOut("a"), 2.0)
    e.apply(AgentLoggedIn(agent("a")), 3.0)
    assert _states(e)["a"] == "busy"
    assert offered(e.apply(join("y"), 4.0)) == []


def test_agent_leg_failing_after_connect_requeues_the_caller_in_its_place() -> None:
    e = engine(LINEAR, agents=(agent("a"), agent("b")))
    first = e.apply(join("x"), 0.0)
    assert offered(first) == [("x", "a")]
    offer_id = only(first, Offer)[0].offer_id
    out = e.apply(OfferAnswered(offer_id), 1.0)
    assert only(out, Connect)[0].offer_id == offer_id
    assert offered(e.apply(join("y"), 2.0)) == [("y", "b")]
    assert offered(e.apply(join("z"), 3.0)) == []
    # a hung up before its node bridged it: x waits again ahead of z (it joined first).
    out = e.apply(OfferFailed(offer_id, "failed"), 4.0)
    cancels = only(out, CancelOffer)
    assert [(c.offer_id, c.call_id, c.agent_id, c.reason) for c in cancels] == [(offer_id, "x", "a", "failed")]
    # a is free again; x and z wait, x ranks first, but a just failed x: with nobody else free a new
    # round starts and x (first in line) is offered to a again, never z ahead of x.
    assert offered(out) == [("x", "a")]
    assert (e.position("x"), e.position("y"), e.position("z")) == (1, 2, 3)  # y still rings on b


def test_failure_of_an_unknown_or_adopted_offer_changes_nothing() -> None:
    e = engine(LINEAR, agents=(agent("a"),))
    e.apply(CallAdopted("old", "q", "n1", "a", "o-old"), 0.0)
    assert e.apply(OfferFailed("o-old", "failed"), 1.0) == []
    assert e.apply(OfferFailed("nope", "failed"), 1.0) == []
    assert _states(e)["a"] == "busy"


def test_an_adopted_call_ends_with_its_callers_node() -> None:
    # Only the agent's node re-reported the call (the caller's node never came back): when the caller's
    # node is declared lost, the call ends there and the agent is free again after it.
    e = engine(LINEAR, agents=(agent("a", node="n2"),))
    e.apply(CallAdopted("old", "", "n1", "a", "o-old"), 0.1)
    assert _states(e)["a"] == "busy"
    e.apply(NodeLost("n1"), 6.0)
    assert e.caller("old") is None and _states(e)["a"] == "available"

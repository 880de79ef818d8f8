"""An operator changes a waiting caller's priority (CallerPriorityChanged): it moves in its line as if
it had joined with that priority, keeping its arrival order there, and its node is told."""

from __future__ import annotations

from coordinator.queue import (
    AgentLoggedIn,
    CallerPriorityChanged,
    OfferAnswered,
    PriorityChanged,
    QueueConfig,
    Strategy,
)

from .helpers import agent, engine, join, offered, only


def test_a_raised_caller_moves_ahead_of_lower_priorities_and_behind_its_elders_of_that_priority() -> None:
    e = engine(QueueConfig("q", strategy=Strategy.LINEAR))
    e.apply(join("vip", priority=5), 0.0)
    for call_id in ("a", "b", "c"):
        e.apply(join(call_id, node="n2"), 1.0)
    out = e.apply(CallerPriorityChanged("c", 5), 2.0)
    assert out == [PriorityChanged("c", "n2", 5)]
    assert [v.call_id for v in e.waiting_callers("q")] == ["vip", "c", "a", "b"]
    assert e.position("c") == 2
    assert offered(e.apply(AgentLoggedIn(agent("x")), 3.0)) == [("vip", "x")]
    e.apply(CallerPriorityChanged("c", 0), 4.0)  # back down: its arrival order again
    assert [v.call_id for v in e.waiting_callers("q")] == ["vip", "a", "b", "c"]


def test_a_ringing_caller_moves_too_and_keeps_its_offer() -> None:
    e = engine(QueueConfig("q", strategy=Strategy.LINEAR), agents=(agent("x"),))
    assert offered(e.apply(join("a"), 0.0)) == [("a", "x")]
    e.apply(join("b"), 0.0)
    assert only(e.apply(CallerPriorityChanged("a", -3), 1.0), PriorityChanged) == [PriorityChanged("a", "n1", -3)]
    assert [v.call_id for v in e.waiting_callers("q")] == ["b", "a"]
    caller = e.caller("a")
    assert caller is not None and caller.state == "ringing"


def test_a_connected_unknown_or_unchanged_caller_is_left_alone() -> None:
    e = engine(QueueConfig("q"), agents=(agent("x"),))
    e.apply(join("a", priority=2), 0.0)
    e.apply(OfferAnswered("o1"), 1.0)
    assert e.apply(CallerPriorityChanged("a", 9), 2.0) == []  # talking: nothing to re-rank
    assert e.apply(CallerPriorityChanged("nobody", 9), 2.0) == []
    e.apply(join("b", priority=2), 3.0)
    assert e.apply(CallerPriorityChanged("b", 2), 4.0) == []

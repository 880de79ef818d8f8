"""A new leader's settle (events.Settling): while the nodes re-report, nothing is offered, no caller
leaves by leavewhenempty and no join is refused by joinempty (agents of nodes still to re-attach look
unavailable); at the end, everything held is decided at once."""

from __future__ import annotations

from coordinator.queue import (
    AgentLoggedIn,
    CallerExit,
    CallerStatus,
    DeviceStateChanged,
    JoinRejected,
    NodeAlive,
    NodeAttached,
    NodeDetached,
    NodeLost,
    QueueConfig,
    QueueEngine,
    Settling,
)

from .helpers import agent, engine, join, offered, only


def _settling(cfg: QueueConfig) -> QueueEngine:
    """A new leader: queue defined, settle begun, the known nodes expected, its agents loaded."""
    e = engine(cfg)
    e.apply(Settling(True), 0.0)
    e.apply(NodeDetached("n1"), 0.0)
    e.apply(NodeDetached("n2"), 0.0)
    e.apply(AgentLoggedIn(agent("a1", node="n1")), 0.0)
    e.apply(AgentLoggedIn(agent("a2", node="n2")), 0.0)
    return e


def test_nothing_is_offered_until_the_settle_ends_then_the_best_caller_first() -> None:
    e = engine()
    e.apply(Settling(True), 0.0)
    e.apply(AgentLoggedIn(agent("a1")), 0.0)
    # Node n2 re-reports its later caller first; n1's earlier one (sequence 1) follows.
    assert offered(e.apply(join("late", node="n2", arrival_seq=2), 0.1)) == []
    assert offered(e.apply(join("early", node="n1", arrival_seq=1), 0.2)) == []
    assert offered(e.apply(Settling(False), 0.3)) == [("early", "a1")]


def test_an_agent_whose_node_re_reports_its_device_in_use_is_not_offered_at_the_end() -> None:
    e = _settling(QueueConfig("q"))
    for node in ("n1", "n2"):
        e.apply(NodeAttached(node), 0.1)
    e.apply(join("c1", node="n1", arrival_seq=1), 0.1)
    e.apply(DeviceStateChanged("n1", "PJSIP/a1", "INUSE"), 0.1)  # from n1's Register
    for node in ("n1", "n2"):
        assert offered(e.apply(NodeAlive(node), 0.2)) == []
    assert offered(e.apply(Settling(False), 0.3)) == [("c1", "a2")]


def test_leavewhenempty_waits_for_the_settle_and_applies_at_its_end() -> None:
    e = _settling(QueueConfig("q", leavewhenempty=frozenset({"unavailable"})))
    e.apply(NodeAttached("n1"), 0.1)
    out = e.apply(join("c1", node="n1", arrival_seq=1), 0.1)  # a2's node n2 is not back yet
    assert only(out, CallerExit) == []
    assert only(e.apply(NodeAlive("n1"), 0.2), CallerExit) == []
    out = e.apply(Settling(False), 0.3)  # a1 is back: c1 is offered, not sent back
    assert offered(out) == [("c1", "a1")] and only(out, CallerExit) == []


def test_a_queue_whose_members_nodes_are_lost_after_the_settle_sends_its_callers_back() -> None:
    e = _settling(QueueConfig("q", leavewhenempty=frozenset({"unavailable"})))
    e.apply(NodeAttached("n3"), 0.1)
    assert only(e.apply(join("c1", node="n3", arrival_seq=1), 0.1), CallerExit) == []
    e.apply(NodeAlive("n3"), 0.2)
    # n1 and n2 are not back yet: their agents are not offered, but a node still within its TTL is
    # no reason to send callers away.
    assert only(e.apply(Settling(False), 2.0), CallerExit) == []
    e.apply(NodeLost("n1"), 6.0)
    out = e.apply(NodeLost("n2"), 6.0)  # both members' nodes lost: unavailable
    assert [(x.call_id, x.status) for x in only(out, CallerExit)] == [("c1", CallerStatus.LEAVEEMPTY)]


def test_joinempty_is_not_applied_to_a_new_caller_while_the_leader_settles() -> None:
    e = _settling(QueueConfig("q", joinempty=frozenset({"unavailable"})))
    e.apply(NodeAttached("n3"), 0.1)
    e.apply(NodeAlive("n3"), 0.1)
    assert only(e.apply(join("new", node="n3"), 0.2), JoinRejected) == []
    e.apply(Settling(False), 0.3)
    e.apply(NodeLost("n1"), 6.0)
    e.apply(NodeLost("n2"), 6.0)
    refused = only(e.apply(join("later", node="n3"), 6.1), JoinRejected)
    assert [(x.call_id, x.status) for x in refused] == [("later", CallerStatus.JOINEMPTY)]

"""maxlen, joinempty, leavewhenempty, max_wait, unknown queue, invalid arguments."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from coordinator.queue import (
    AgentLoggedOut,
    AgentPaused,
    CallEnded,
    CallerExit,
    CallerStatus,
    CancelOffer,
    JoinAccepted,
    JoinRejected,
    NodeDetached,
    NodeLost,
    OfferAnswered,
    OfferFailed,
    PenaltyRule,
    QueueConfig,
    QueueEngine,
    Strategy,
    Tick,
)

from .helpers import agent, engine, join, only


def _noop(e: QueueEngine) -> None:
    del e


def _pause(e: QueueEngine) -> None:
    e.apply(AgentPaused("a"), 0.0)


def _in_call(e: QueueEngine) -> None:
    e.apply(join("busy"), 0.0)
    e.apply(OfferAnswered("o1"), 0.0)


def _ringing(e: QueueEngine) -> None:
    e.apply(join("ring"), 0.0)


def _node_lost(e: QueueEngine) -> None:
    e.apply(NodeLost("n9"), 0.0)


def _wrapup(e: QueueEngine) -> None:
    _in_call(e)
    e.apply(CallEnded("busy", False), 0.0)


@pytest.mark.parametrize(
    ("joinempty", "with_agent", "setup", "expected"),
    [
        (frozenset(), False, _noop, None),
        (frozenset({"paused"}), False, _noop, CallerStatus.JOINEMPTY),
        (frozenset({"paused"}), True, _noop, None),
        (frozenset({"paused"}), True, _pause, CallerStatus.JOINEMPTY),
        (frozenset({"inuse"}), True, _pause, None),
        (frozenset({"inuse"}), True, _in_call, CallerStatus.JOINEMPTY),
        (frozenset({"paused"}), True, _in_call, None),
        (frozenset({"ringing"}), True, _ringing, CallerStatus.JOINEMPTY),
        (frozenset({"unavailable"}), True, _node_lost, CallerStatus.JOINEMPTY),
        (frozenset({"wrapup"}), True, _wrapup, CallerStatus.JOINEMPTY),
        (frozenset({"wrapup"}), True, _noop, None),
    ],
)
def test_joinempty(
    joinempty: frozenset[str],
    with_agent: bool,
    setup: Callable[[QueueEngine], None],
    expected: CallerStatus | None,
) -> None:
    cfg = QueueConfig("q", strategy=Strategy.LINEAR, joinempty=joinempty, wrapup_time=30.0)
    e = engine(cfg, agents=(agent("a", node="n9"),) if with_agent else ())
    setup(e)
    out = e.apply(join("x", node="n1"), 1.0)
    if expected is None:
        assert [j.call_id for j in only(out, JoinAccepted)] == ["x"]
    else:
        assert [(r.call_id, r.status) for r in only(out, JoinRejected)] == [("x", expected)]
        assert e.caller("x") is None


def test_joinempty_penalty_uses_the_band_at_join() -> None:
    cfg = QueueConfig("q", joinempty=frozenset({"penalty"}), penalty_rules=(PenaltyRule(0, 1),))
    e = engine(cfg, agents=(agent("a", penalty=4),))
    assert only(e.apply(join("x"), 0.0), JoinRejected)[0].status is CallerStatus.JOINEMPTY


def test_joinempty_is_checked_before_maxlen_and_its_message_tells_empty_from_unusable() -> None:
    # app_queue's join_queue: an unmet joinempty condition wins over a full queue, and it is always
    # JOINEMPTY (members exist but none is usable: the case a dialplan branching on JOINEMPTY expects).
    e = engine(QueueConfig("q", maxlen=1, joinempty=frozenset({"paused"})), agents=(agent("a"),))
    e.apply(join("first"), 0.0)
    assert only(e.apply(join("full"), 1.0), JoinRejected)[0].status is CallerStatus.FULL
    e.apply(AgentPaused("a"), 2.0)
    [refused] = only(e.apply(join("x"), 3.0), JoinRejected)
    assert (refused.status, refused.message) == (CallerStatus.JOINEMPTY, "queue q has no usable member")
    e.apply(AgentLoggedOut("a"), 4.0)
    [refused] = only(e.apply(join("y"), 5.0), JoinRejected)
    assert (refused.status, refused.message) == (CallerStatus.JOINEMPTY, "queue q has no members")


def test_maxlen_full_but_re_report_accepted() -> None:
    e = engine(QueueConfig("q", maxlen=2))
    e.apply(join("a"), 0.0)
    e.apply(join("b"), 1.0)
    assert only(e.apply(join("c"), 2.0), JoinRejected)[0].status is CallerStatus.FULL
    assert only(e.apply(join("d", arrival_seq=99), 3.0), JoinAccepted)[0].position == 3


@pytest.mark.parametrize(
    ("event_kwargs", "status"),
    [
        ({"call_id": "x", "queue": "nope"}, CallerStatus.UNKNOWN_QUEUE),
        ({"call_id": "", "queue": "q"}, CallerStatus.INVALID_ARGS),
        ({"call_id": "x", "queue": "q", "position": -1}, CallerStatus.INVALID_ARGS),
        ({"call_id": "x", "queue": "q", "node": ""}, CallerStatus.INVALID_ARGS),
    ],
)
def test_rejected_joins(event_kwargs: dict[str, object], status: CallerStatus) -> None:
    e = engine()
    out = e.apply(join(**event_kwargs), 0.0)  # type: ignore[arg-type]
    assert [r.status for r in only(out, JoinRejected)] == [status]


def test_leavewhenempty_unavail_then_empty() -> None:
    cfg = QueueConfig("q", leavewhenempty=frozenset({"paused", "inuse"}))
    e = engine(cfg, agents=(agent("a"), agent("b")))
    e.apply(join("x"), 0.0)
    e.apply(OfferAnswered("o1"), 1.0)  # ringall: a answered, b cancelled
    e.apply(join("y"), 2.0)  # rings b
    e.apply(join("z"), 3.0)
    out = e.apply(AgentPaused("b"), 4.0)  # a in use, b paused (still ringing y): z must leave, y not
    assert [(x.call_id, x.status, x.position) for x in only(out, CallerExit)] == [("z", CallerStatus.LEAVEEMPTY, 2)]
    out = e.apply(AgentLoggedOut("b"), 5.0)  # y back to waiting with a in use -> LEAVEEMPTY
    assert [(x.call_id, x.status) for x in only(out, CallerExit)] == [("y", CallerStatus.LEAVEEMPTY)]


def test_leavewhenempty_with_no_members_is_leaveempty() -> None:
    e = engine(QueueConfig("q", leavewhenempty=frozenset({"paused"})), agents=(agent("a"),))
    e.apply(AgentPaused("a"), 0.0)
    out = e.apply(join("w"), 1.0)
    assert [(x.call_id, x.status) for x in only(out, CallerExit)] == [("w", CallerStatus.LEAVEEMPTY)]
    e.apply(AgentLoggedOut("a"), 2.0)
    out = e.apply(join("v"), 3.0)
    assert [(x.call_id, x.status) for x in only(out, CallerExit)] == [("v", CallerStatus.LEAVEEMPTY)]


def test_leavewhenempty_penalty_applies_per_band() -> None:
    rules = (PenaltyRule(0, 0), PenaltyRule(20, 5))
    cfg = QueueConfig("q", leavewhenempty=frozenset({"penalty"}), penalty_rules=rules)
    e = engine(cfg, agents=(agent("a", penalty=3),))
    # Re-reported caller joined 25 s ago: band 0..5 includes a -> it is offered, not sent away.
    out = e.apply(join("old", arrival_seq=1, joined_at=-25.0), 0.0)
    assert only(out, CallerExit) == []
    out = e.apply(join("new"), 1.0)
    assert [(x.call_id, x.status) for x in only(out, CallerExit)] == [("new", CallerStatus.LEAVEEMPTY)]


def test_max_wait_times_out_waiting_and_ringing_callers() -> None:
    e = engine(QueueConfig("q", max_wait=30.0, ring_timeout=60.0), agents=(agent("a"),))
    e.apply(join("x"), 0.0)  # rings a
    e.apply(join("y"), 10.0)
    assert e.next_deadline() == 30.0
    out = e.apply(Tick(), 30.0)
    assert [(c.call_id, c.reason) for c in only(out, CancelOffer)] == [("x", "timeout")]
    assert [(x.call_id, x.status, x.wait_time) for x in only(out, CallerExit)] == [("x", CallerStatus.TIMEOUT, 30.0)]
    out = e.apply(Tick(), 40.0)
    assert [x.call_id for x in only(out, CallerExit)] == ["y"]
    assert e.snapshot(40.0)[0].timed_out == 2


def test_a_node_whose_stream_is_briefly_down_does_not_empty_a_queue_its_loss_does() -> None:
    # leavewhenempty=unavailable: the agents of a node whose stasis app restarts are not offered, but
    # their phones are still there; the other nodes' callers leave only once that node is lost.
    cfg = QueueConfig("q", leavewhenempty=frozenset({"unavailable"}), joinempty=frozenset({"unavailable"}))
    e = engine(cfg, agents=(agent("far", node="n2"),))
    e.apply(join("c1", node="n1"), 0.0)
    e.apply(OfferFailed("o1", "noanswer"), 1.0)
    assert only(e.apply(NodeDetached("n2"), 2.0), CallerExit) == []
    assert only(e.apply(join("c2", node="n1"), 3.0), JoinRejected) == []
    out = e.apply(NodeLost("n2"), 8.0)
    assert sorted((x.call_id, x.status) for x in only(out, CallerExit)) == [
        ("c1", CallerStatus.LEAVEEMPTY), ("c2", CallerStatus.LEAVEEMPTY)]

"""Ranking: priority, position override, arrival order; positions; re-reports after a leader change."""

from __future__ import annotations

import pytest

from coordinator.queue import (
    AgentLoggedIn,
    CallerJoined,
    CallerLeft,
    JoinAccepted,
    OfferAnswered,
    QueueConfig,
    Strategy,
)

from .helpers import agent, engine, join, offered, only

LR = QueueConfig("q", strategy=Strategy.LEASTRECENT)


@pytest.mark.parametrize(
    ("joins", "expected_order"),
    [
        pytest.param([join("a"), join("b"), join("c")], ["a", "b", "c"], id="fifo"),
        pytest.param([join("a"), join("b", priority=5), join("c", priority=1)], ["b", "c", "a"], id="priority"),
        pytest.param([join("a"), join("b"), join("c", position=1)], ["c", "a", "b"], id="position-1"),
        pytest.param([join("a"), join("b"), join("c", position=2)], ["a", "c", "b"], id="position-2"),
        pytest.param([join("a"), join("b"), join("c", position=9)], ["a", "b", "c"], id="position-past-end"),
        pytest.param(
            [join("a"), join("b"), join("c", position=2), join("d", position=2)],
            ["a", "d", "c", "b"],
            id="two-overrides-same-position",
        ),
        pytest.param(
            [join("a", priority=1), join("b"), join("c", priority=1, position=1)],
            ["c", "a", "b"],
            id="position-within-priority-band",
        ),
        pytest.param(
            [join("a"), join("b", position=1), join("c", priority=2)],
            ["c", "b", "a"],
            id="priority-beats-override",
        ),
    ],
)
def test_positions_and_service_order(joins: list[CallerJoined], expected_order: list[str]) -> None:
    e = engine(LR)
    for i, ev in enumerate(joins):
        e.apply(ev, float(i))
    assert [e.position(c) for c in expected_order] == list(range(1, len(expected_order) + 1))
    # Agents logging in one by one serve callers in exactly that order.
    served: list[str] = []
    for i in range(len(expected_order)):
        out = e.apply(AgentLoggedIn(agent(f"ag{i}")), 10.0 + i)
        served += [call for call, _ in offered(out)]
    assert served == expected_order


def test_override_is_stable_when_others_leave() -> None:
    e = engine(LR)
    for i, ev in enumerate([join("a"), join("b"), join("c"), join("d", position=3)]):
        e.apply(ev, float(i))
    assert e.position("d") == 3
    e.apply(CallerLeft("a", "hangup"), 5.0)
    e.apply(join("e"), 6.0)
    assert [e.position(c) for c in ("b", "d", "c", "e")] == [1, 2, 3, 4]


def test_join_accepted_reports_sequence_and_position() -> None:
    e = engine(LR)
    first = only(e.apply(join("a"), 0.0), JoinAccepted)
    second = only(e.apply(join("b", priority=3), 1.0), JoinAccepted)
    assert [(j.call_id, j.arrival_seq, j.position) for j in first + second] == [("a", 1, 1), ("b", 2, 1)]
    assert e.position("a") == 2


def test_connected_callers_leave_the_line() -> None:
    e = engine(LR, agents=(agent("x"),))
    e.apply(join("a"), 0.0)
    e.apply(join("b"), 1.0)
    e.apply(join("c"), 2.0)
    assert e.position("c") == 3
    offer = e.caller("a")
    assert offer is not None and offer.state == "ringing"
    e.apply(OfferAnswered("o1"), 3.0)
    view = e.caller("a")
    assert view is not None and view.state == "connected" and view.position is None
    assert (e.position("b"), e.position("c")) == (1, 2)


def test_re_report_after_leader_change_keeps_order_and_bumps_counter() -> None:
    old = engine(LR)
    for i, c in enumerate("abcd"):
        old.apply(join(c, priority=1 if c == "c" else 0), float(i))
    views = [old.caller(c) for c in "abcd"]
    # A new leader receives the re-reports in a scrambled order.
    new = engine(LR)
    for v in reversed(views):
        assert v is not None
        out = new.apply(join(v.call_id, priority=v.priority, arrival_seq=v.arrival_seq, joined_at=v.joined_at), 20.0)
        assert only(out, JoinAccepted)[0].arrival_seq == v.arrival_seq
    assert [new.position(c) for c in "cabd"] == [1, 2, 3, 4]
    fresh = only(new.apply(join("e"), 21.0), JoinAccepted)[0]
    assert fresh.arrival_seq == 5 and fresh.position == 5
    view = new.caller("a")
    assert view is not None and view.joined_at == 0.0


def test_duplicate_join_is_idempotent() -> None:
    e = engine(LR)
    e.apply(join("a"), 0.0)
    again = only(e.apply(join("a"), 1.0), JoinAccepted)
    assert [(j.arrival_seq, j.position) for j in again] == [(1, 1)]
    stats = e.snapshot(1.0)[0]
    assert stats.waiting == 1


def test_waiting_callers_lists_queue_order() -> None:
    e = engine(LR, agents=(agent("x"),))
    e.apply(join("a"), 0.0)  # rings x
    e.apply(join("b"), 1.0)
    e.apply(join("c", priority=2), 2.0)
    views = e.waiting_callers("q")
    assert [(v.call_id, v.position, v.state) for v in views] == [
        ("c", 1, "waiting"),
        ("a", 2, "ringing"),
        ("b", 3, "waiting"),
    ]
    assert [v.call_id for v in e.waiting_callers("q", limit=2)] == ["c", "a"]
    assert e.waiting_callers("nope") == []


def test_a_lazy_listing_keeps_the_order_of_its_start_and_skips_callers_gone_meanwhile() -> None:
    e = engine(LR)
    for i, cid in enumerate("abcd"):
        e.apply(join(cid), float(i))
    views = e.iter_waiting_callers("q")
    first = next(views)
    e.apply(CallerLeft("c", "hangup"), 5.0)  # while the listing is under way
    e.apply(join("e", priority=9), 5.0)  # would be first now: not in a listing started before
    assert [(first.call_id, first.position)] + [(v.call_id, v.position) for v in views] == [
        ("a", 1), ("b", 2), ("d", 4)]

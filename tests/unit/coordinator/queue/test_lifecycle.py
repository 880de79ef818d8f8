"""Queue updates and deletion, node loss, announcements, statistics, EWT, next_deadline."""

from __future__ import annotations

import pytest

from coordinator.queue import (
    AgentLoggedIn,
    AgentPaused,
    AgentStateChanged,
    Announce,
    CallEnded,
    CallerExit,
    CallerLeft,
    CallerStatus,
    CancelOffer,
    JoinRejected,
    NodeAlive,
    NodeLost,
    Offer,
    OfferAnswered,
    OfferFailed,
    PeriodicAnnounce,
    QueueConfig,
    QueueDefined,
    QueueDeleted,
    Strategy,
    Tick,
)
from coordinator.queue.ewt import erlang_c_pwait, erlang_c_wait

from .helpers import agent, engine, join, offered, only

LR = QueueConfig("q", strategy=Strategy.LEASTRECENT)


def test_delete_while_waiting() -> None:
    e = engine(LR, agents=(agent("a"),))
    e.apply(join("talking"), 0.0)
    e.apply(OfferAnswered("o1"), 1.0)
    e.apply(join("x"), 2.0)
    e.apply(join("y"), 3.0)
    e.apply(CallEnded("talking", False), 4.0)  # a now rings x
    out = e.apply(QueueDeleted("q"), 5.0)
    assert [(c.call_id, c.reason) for c in only(out, CancelOffer)] == [("x", "queue_deleted")]
    assert [(x.call_id, x.status, x.position) for x in only(out, CallerExit)] == [
        ("x", CallerStatus.QUEUE_DELETED, 1),
        ("y", CallerStatus.QUEUE_DELETED, 1),  # position when it left: x had already gone
    ]
    assert e.snapshot(5.0) == [] and e.caller("x") is None
    assert only(e.apply(join("z"), 6.0), JoinRejected)[0].status is CallerStatus.UNKNOWN_QUEUE
    # Redefining brings the logged-in members back.
    e.apply(QueueDefined(LR), 7.0)
    assert offered(e.apply(join("z"), 8.0)) == [("z", "a")]


def test_connected_call_survives_queue_deletion() -> None:
    e = engine(LR, agents=(agent("a", wrapup=2.0),))
    e.apply(join("x"), 0.0)
    e.apply(OfferAnswered("o1"), 1.0)
    e.apply(QueueDeleted("q"), 2.0)
    assert e.apply(CallEnded("x", agent_hung_up=True), 3.0) == [CallerExit("x", "n1", CallerStatus.CONTINUE, 1.0, 0)]


def test_queue_update_keeps_callers_and_applies_new_rules() -> None:
    e = engine(LR)
    e.apply(join("x"), 0.0)
    e.apply(join("y"), 1.0)
    e.apply(QueueDefined(QueueConfig("q", strategy=Strategy.LINEAR, max_wait=10.0)), 2.0)
    assert (e.position("x"), e.position("y")) == (1, 2)
    assert e.next_deadline() == 10.0
    out = e.apply(Tick(), 10.0)
    assert [(x.call_id, x.status) for x in only(out, CallerExit)] == [("x", CallerStatus.TIMEOUT)]


def test_invalid_queue_config_raises_and_changes_nothing() -> None:
    e = engine(LR)
    with pytest.raises(ValueError, match="ring_timeout"):
        e.apply(QueueDefined(QueueConfig("q", ring_timeout=-1.0)), 1.0)
    assert e.snapshot(1.0)[0].queue == "q"


def test_node_lost_and_alive() -> None:
    e = engine(LR, agents=(agent("a1", node="n1"), agent("a2", node="n2", wrapup=0.0)))
    e.apply(join("x", node="n1"), 0.0)  # rings a1
    e.apply(join("y", node="n2"), 1.0)  # rings a2
    e.apply(join("z", node="n1"), 2.0)
    out = e.apply(NodeLost("n2"), 3.0)
    assert [(x.call_id, x.status) for x in only(out, CallerExit)] == [("y", CallerStatus.NODE_LOST)]
    assert [(c.call_id, c.agent_id) for c in only(out, CancelOffer)] == [("y", "a2")]
    assert only(out, AgentStateChanged) == [AgentStateChanged("a2", "unavailable", "node_lost")]
    assert offered(out) == []  # a2 unavailable, z keeps waiting
    assert only(e.apply(join("w", node="n2"), 4.0), JoinRejected)[0].status is CallerStatus.UNAVAILABLE
    out = e.apply(NodeAlive("n2"), 5.0)
    assert offered(out) == [("z", "a2")]


def test_node_lost_cancels_offers_to_its_agents_and_requeues() -> None:
    e = engine(LR, agents=(agent("a1", node="n1"), agent("a2", node="n2")))
    e.apply(join("x", node="n1"), 0.0)  # rings a1
    out = e.apply(NodeLost("n1"), 1.0)
    assert [x.call_id for x in only(out, CallerExit)] == ["x"]
    e.apply(NodeAlive("n1"), 2.0)
    e.apply(join("y", node="n2"), 3.0)  # rings a1 (leastrecent, order)
    out = e.apply(NodeLost("n1"), 4.0)
    assert [(c.call_id, c.reason) for c in only(out, CancelOffer)] == [("y", "node_lost")]
    assert offered(out) == [("y", "a2")]


def test_node_lost_ends_connected_calls() -> None:
    e = engine(QueueConfig("q", strategy=Strategy.LEASTRECENT, wrapup_time=5.0), agents=(agent("a", node="n2"),))
    e.apply(join("x", node="n1"), 0.0)
    e.apply(OfferAnswered("o1"), 1.0)
    out = e.apply(NodeLost("n2"), 3.0)  # agent's node died; caller's node is alive
    assert only(out, CallerExit) == [CallerExit("x", "n1", CallerStatus.CONTINUE, 1.0, 0)]
    assert e.caller("x") is None


def test_announcements_follow_frequency_and_position_changes() -> None:
    cfg = QueueConfig("q", announce_frequency=60.0, min_announce_frequency=15.0, announce_holdtime="once")
    e = engine(cfg)
    e.apply(join("a"), 0.0)
    e.apply(join("b"), 0.0)
    assert e.next_deadline() == 15.0
    assert only(e.apply(Tick(), 15.0), Announce) == []  # nothing changed
    e.apply(CallerLeft("a", "hangup"), 20.0)
    out = e.apply(Tick(), 30.0)  # position changed 2 -> 1, min frequency passed
    assert out == [Announce("b", "n1", 1, 0.0, True, True)]
    assert only(e.apply(Tick(), 89.0), Announce) == []
    out = e.apply(Tick(), 90.0)  # 60 s after the last announcement; holdtime only once
    assert out == [Announce("b", "n1", 1, 0.0, True, False)]


@pytest.mark.parametrize(("mode", "position", "say"), [("limit", 2, True), ("limit", 3, False), ("no", 1, False)])
def test_announce_position_modes(mode: str, position: int, say: bool) -> None:
    cfg = QueueConfig(
        "q",
        announce_frequency=30.0,
        announce_position=mode,
        announce_position_limit=2,
        announce_holdtime="yes",
    )
    e = engine(cfg)
    for i in range(position):
        e.apply(join(f"c{i}"), 0.0)
    out = [a for a in only(e.apply(Tick(), 30.0), Announce) if a.call_id == f"c{position - 1}"]
    assert [(a.position, a.say_position, a.say_holdtime) for a in out] == [(position, say, True)]


def test_announce_position_only_up_announces_only_an_improved_position() -> None:
    cfg = QueueConfig("q", announce_frequency=30.0, min_announce_frequency=5.0, announce_position_only_up=True)
    e = engine(cfg)
    for i in range(3):
        e.apply(join(f"c{i}"), 0.0)
    said = [(a.call_id, a.position) for t in (30.0, 60.0, 90.0) for a in only(e.apply(Tick(), t), Announce)]
    assert said == []  # unchanged since the join, which told each its position
    e.apply(CallerLeft("c0", "hangup"), 91.0)
    said = [(a.call_id, a.position) for t in (95.0, 96.0) for a in only(e.apply(Tick(), t), Announce)]
    assert said == [("c1", 1), ("c2", 2)]


def test_announce_position_more_says_more_than_the_limit_past_it() -> None:
    cfg = QueueConfig("q", announce_frequency=30.0, announce_position="more", announce_position_limit=2)
    e = engine(cfg)
    for i in range(3):
        e.apply(join(f"c{i}"), 0.0)
    said = {a.call_id: (a.position, a.say_position, a.more_than) for a in only(e.apply(Tick(), 30.0), Announce)}
    assert said == {"c0": (1, True, 0), "c1": (2, True, 0), "c2": (3, True, 2)}


def test_a_caller_whose_agent_is_being_rung_hears_no_announcement_until_it_waits_again() -> None:
    # app_queue announces in wait_our_turn only (announce-to-first-user is off by default).
    cfg = QueueConfig("q", strategy=Strategy.LINEAR, ring_timeout=100.0, announce_frequency=20.0,
                      periodic_announce=("p1",), periodic_announce_frequency=20.0)
    e = engine(cfg, agents=(agent("a"),))
    [offer] = only(e.apply(join("x"), 0.0), Offer)
    e.apply(join("y"), 0.0)
    out = e.apply(Tick(), 20.0)
    assert {d.call_id for d in out if isinstance(d, (Announce, PeriodicAnnounce))} == {"y"}
    e.apply(AgentPaused("a"), 21.0)
    e.apply(OfferFailed(offer.offer_id, "busy"), 21.0)
    out = [d for t in (35.0, 41.0, 60.0) for d in e.apply(Tick(), t)]
    assert {d.call_id for d in out if isinstance(d, (Announce, PeriodicAnnounce))} == {"x", "y"}


def test_periodic_announcements_cycle() -> None:
    e = engine(QueueConfig("q", periodic_announce=("p1", "p2"), periodic_announce_frequency=20.0))
    e.apply(join("x", node="n3"), 0.0)
    prompts = []
    for t in (19.0, 20.0, 40.0, 61.0):
        prompts += [p.prompt for p in only(e.apply(Tick(), t), PeriodicAnnounce)]
    assert prompts == ["p1", "p2", "p1"]
    e.apply(OfferAnswered("none"), 62.0)
    e.apply(CallerLeft("x", "hangup"), 63.0)
    assert e.next_deadline() is None


def test_statistics_and_ewma() -> None:
    e = engine(QueueConfig("q", strategy=Strategy.LINEAR, service_level=10.0), agents=(agent("a"),))
    e.apply(join("x"), 0.0)
    e.apply(join("y"), 0.0)
    e.apply(join("z"), 0.0)
    e.apply(OfferAnswered("o1"), 8.0)  # x waited 8 (within)
    e.apply(CallEnded("x", False), 18.0)  # talk 10; a rings y
    e.apply(OfferAnswered("o2"), 20.0)  # y waited 20 (outside)
    e.apply(CallerLeft("z", "hangup"), 25.0)  # abandoned outside SL
    s = e.snapshot(25.0)[0]
    assert (s.answered, s.abandoned, s.waiting, s.timed_out) == (2, 1, 0, 0)
    assert s.service_level_pct == 50.0
    assert s.service_level2_pct == pytest.approx(100.0 / 3)
    assert s.asa == 14.0 and s.avg_talk_time == 10.0
    assert s.holdtime_ewma == pytest.approx((3 * (8 / 4) + 20) / 4)
    assert (s.agents_logged_in, s.agents_available, s.agents_busy, s.agents_paused) == (1, 0, 1, 0)
    e.apply(join("w"), 30.0)
    assert e.estimated_wait("w", 30.0) == pytest.approx(s.holdtime_ewma)
    assert e.estimated_wait("w", 33.0) == pytest.approx(s.holdtime_ewma - 3)
    assert e.estimated_wait("w", 1000.0) == 0.0
    assert e.snapshot(40.0)[0].longest_wait == 10.0


def test_erlang_c_formulas() -> None:
    assert erlang_c_pwait(2, 1.0) == pytest.approx(1 / 3)
    assert erlang_c_pwait(1, 0.5) == pytest.approx(0.5)  # M/M/1: P_wait = rho
    assert erlang_c_pwait(3, 3.0) == 1.0 and erlang_c_pwait(3, 0.0) == 0.0
    assert erlang_c_wait(2, 2, 100.0, 0.01) == pytest.approx((1 / 3) * 2 * 100.0 / 2)
    assert erlang_c_wait(1, 4, 60.0, None) == pytest.approx(15.0)


def test_erlang_c_method_in_engine() -> None:
    e = engine(QueueConfig("q", strategy=Strategy.LINEAR, ewt_method="erlang_c"), agents=(agent("a"), agent("b")))
    e.apply(join("x"), 0.0)
    e.apply(OfferAnswered("o1"), 1.0)
    e.apply(CallEnded("x", False), 101.0)  # AHT = 100
    e.apply(join("y"), 101.0)
    e.apply(OfferAnswered("o2"), 101.0)
    e.apply(join("u"), 102.0)
    e.apply(OfferAnswered("o3"), 102.0)
    e.apply(join("v"), 103.0)
    # 2 agents, both busy; gaps 101, 1, 1 -> EWMA of gaps; v at position 1.
    gap = ((3 * ((3 * 101 + 1) / 4)) + 1) / 4
    expected = erlang_c_wait(1, 2, 100.0, 1 / gap)
    assert e.estimated_wait("v", 103.0) == pytest.approx(expected)


def test_only_hangups_and_lost_nodes_count_as_abandoned_like_queue_log() -> None:
    e = engine(QueueConfig("q", service_level=60.0))
    for call_id, node in (("hung", "n1"), ("timed", "n1"), ("keyed", "n1"), ("lost", "n2")):
        e.apply(join(call_id, node=node), 0.0)
    e.apply(CallerLeft("hung", "hangup"), 5.0)  # ABANDON
    e.apply(CallerLeft("timed", "timeout"), 6.0)  # the node's timeout=: EXITWITHTIMEOUT
    e.apply(CallerLeft("keyed", "exitkey", "5"), 7.0)  # EXITWITHKEY: neither
    e.apply(NodeLost("n2"), 8.0)  # queue_log writes ABANDON for it
    s = e.snapshot(9.0)[0]
    assert (s.abandoned, s.timed_out, s.answered, s.waiting) == (2, 1, 0, 0)
    assert s.service_level2_pct == 100.0  # both abandoned within the threshold


def test_an_answer_whose_call_fails_before_it_starts_is_not_counted() -> None:
    e = engine(QueueConfig("q", strategy=Strategy.LINEAR, service_level=10.0), agents=(agent("a"), agent("b")))
    e.apply(join("x"), 0.0)
    e.apply(OfferAnswered("o1"), 4.0)  # a answers; its leg fails before the bridge
    out = e.apply(OfferFailed("o1", "failed"), 5.0)
    assert offered(out) == [("x", "b")]
    e.apply(OfferAnswered(only(out, Offer)[0].offer_id), 18.0)  # b answers: the one real answer
    s = e.snapshot(21.0)[0]
    assert (s.answered, s.asa, s.service_level_pct) == (1, 18.0, 0.0)
    calls = {v.agent_id: v.calls_taken for v in e.agent_states()}
    assert calls == {"a": 0, "b": 1}


@pytest.mark.parametrize(("periodic", "announce", "minimum"), [(60.0, 0.0, 15.0), (0.0, 60.0, 0.0)])
def test_announcements_held_back_while_ringing_are_said_once_the_caller_waits_again(
        periodic: float, announce: float, minimum: float) -> None:
    # An agent away from its phone: every offer rings out (15 s) and the retry (5 s) follows. With a
    # 60 s period on the 20 s ring cycle, an announcement due while ringing and re-armed a whole period
    # later was never said; held back, it is said at the next wait.
    cfg = QueueConfig("q", ring_timeout=15.0, retry=5.0, periodic_announce=("p1",) if periodic else (),
                      periodic_announce_frequency=periodic, announce_frequency=announce,
                      min_announce_frequency=minimum)
    e = engine(cfg)
    out = list(e.apply(join("x"), 0.0))
    out += e.apply(AgentLoggedIn(agent("a")), 10.0)
    while (t := e.next_deadline()) is not None and t <= 600.0:
        out += e.apply(Tick(), t)
    said = [d for d in out if isinstance(d, (Announce, PeriodicAnnounce))]
    assert len(said) >= 8, said
    assert len(only(out, Offer)) >= 25  # it kept ringing meanwhile

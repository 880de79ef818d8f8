"""Offer lifecycle: ringall, answers, failures, timeouts, retry, wrap-up, ringinuse, skills, weights."""

from __future__ import annotations

from coordinator.queue import (
    AgentConfig,
    AgentLoggedIn,
    AgentLoggedOut,
    CallEnded,
    CallerExit,
    CallerLeft,
    CallerStatus,
    CancelOffer,
    Connect,
    Membership,
    Offer,
    OfferAnswered,
    OfferFailed,
    QueueConfig,
    Strategy,
    Tick,
)

from .helpers import agent, engine, join, offered, only

RINGALL = QueueConfig("q", strategy=Strategy.RINGALL, ring_timeout=20.0)
LR = QueueConfig("q", strategy=Strategy.LEASTRECENT, ring_timeout=20.0)


def test_ringall_rings_everyone_and_first_answer_wins() -> None:
    e = engine(RINGALL, agents=(agent("a"), agent("b", node="n2"), agent("c")))
    out = e.apply(join("x"), 1.0)
    offers = only(out, Offer)
    assert sorted(o.agent_id for o in offers) == ["a", "b", "c"]
    assert {o.call_id for o in offers} == {"x"} and len({o.offer_id for o in offers}) == 3
    winner = next(o for o in offers if o.agent_id == "b")
    out = e.apply(OfferAnswered(winner.offer_id), 3.0)
    assert out[0] == Connect(winner.offer_id, "x", "b", "n1", "n2")
    cancels = only(out, CancelOffer)
    assert sorted(c.agent_id for c in cancels) == ["a", "c"]
    assert {c.reason for c in cancels} == {"answered_elsewhere"}
    # A late second answer is stale and changes nothing.
    loser = next(o for o in offers if o.agent_id == "a")
    assert e.apply(OfferAnswered(loser.offer_id), 3.1) == []
    states = {v.agent_id: v.state for v in e.agent_states()}
    assert states == {"a": "available", "b": "busy", "c": "available"}


def test_ring_timeout_cancels_and_moves_to_next_agent() -> None:
    e = engine(LR, agents=(agent("a"), agent("b")))
    out = e.apply(join("x"), 0.0)
    assert offered(out) == [("x", "a")]
    assert e.next_deadline() == 20.0
    assert e.apply(Tick(), 19.9) == []
    out = e.apply(Tick(), 20.0)
    cancel = only(out, CancelOffer)
    assert [(c.agent_id, c.reason) for c in cancel] == [("a", "timeout")]
    assert offered(out) == [("x", "b")]


def test_failed_offer_keeps_rank_and_avoids_same_agent() -> None:
    e = engine(QueueConfig("q", strategy=Strategy.LINEAR), agents=(agent("a"), agent("b")))
    e.apply(join("x"), 0.0)
    e.apply(join("y"), 1.0)  # rung on b
    out = e.apply(OfferFailed("o1", "busy"), 2.0)
    # a is free again, x (rank 1) is waiting again; linear would pick a, but a just failed x and no
    # other agent is free, so a new round starts and x is offered to a again (x outranks y).
    assert offered(out) == [("x", "a")]
    assert e.position("x") == 1


def test_failed_offer_prefers_an_untried_agent() -> None:
    e = engine(QueueConfig("q", strategy=Strategy.LINEAR), agents=(agent("a"), agent("b")))
    e.apply(join("x"), 0.0)
    out = e.apply(OfferFailed("o1", "noanswer"), 1.0)
    assert offered(out) == [("x", "b")]


def test_retry_delays_the_next_offer() -> None:
    e = engine(QueueConfig("q", strategy=Strategy.LINEAR, retry=5.0), agents=(agent("a"),))
    e.apply(join("x"), 0.0)
    assert offered(e.apply(OfferFailed("o1", "noanswer"), 1.0)) == []
    assert e.next_deadline() == 6.0
    assert offered(e.apply(Tick(), 6.0)) == [("x", "a")]


def test_caller_hangup_while_ringing_cancels_and_counts_abandoned() -> None:
    e = engine(RINGALL, agents=(agent("a"), agent("b")))
    e.apply(join("x"), 0.0)
    out = e.apply(CallerLeft("x", "hangup"), 4.0)
    assert sorted((c.agent_id, c.reason) for c in only(out, CancelOffer)) == [
        ("a", "caller_left"),
        ("b", "caller_left"),
    ]
    stats = e.snapshot(4.0)[0]
    assert (stats.waiting, stats.abandoned, stats.answered) == (0, 1, 0)
    assert e.caller("x") is None


def test_wrapup_after_caller_hangup() -> None:
    e = engine(QueueConfig("q", strategy=Strategy.LEASTRECENT, wrapup_time=10.0), agents=(agent("a"),))
    e.apply(join("x"), 0.0)
    e.apply(OfferAnswered("o1"), 1.0)
    e.apply(join("y"), 2.0)
    out = e.apply(CallEnded("x", agent_hung_up=False), 30.0)
    assert only(out, CallerExit) == [] and offered(out) == []
    assert [v.state for v in e.agent_states()] == ["wrapup"]
    assert e.next_deadline() == 40.0
    assert offered(e.apply(Tick(), 39.0)) == []
    assert offered(e.apply(Tick(), 40.0)) == [("y", "a")]
    stats = e.snapshot(40.0)[0]
    assert stats.avg_talk_time == 29.0


def test_agent_hangup_returns_caller_with_continue() -> None:
    e = engine(LR, agents=(agent("a", wrapup=3.0),))
    e.apply(join("x", node="n7"), 0.0)
    e.apply(OfferAnswered("o1"), 2.0)
    out = e.apply(CallEnded("x", agent_hung_up=True), 12.0)
    assert only(out, CallerExit) == [CallerExit("x", "n7", CallerStatus.CONTINUE, 2.0, 0)]
    assert e.next_deadline() == 15.0


def test_ringinuse_false_skips_busy_agent_and_true_rings_it() -> None:
    for ringinuse, expected in ((False, []), (True, [("y", "a")])):
        e = engine(QueueConfig("q", strategy=Strategy.LEASTRECENT, ringinuse=ringinuse), agents=(agent("a"),))
        e.apply(join("x"), 0.0)
        e.apply(OfferAnswered("o1"), 1.0)
        assert offered(e.apply(join("y"), 2.0)) == expected


def test_one_pending_offer_per_agent_and_per_caller() -> None:
    e = engine(LR, agents=(agent("a"),))
    assert offered(e.apply(join("x"), 0.0)) == [("x", "a")]
    assert offered(e.apply(join("y"), 1.0)) == []
    # b takes y, not x again: x already rings on a.
    assert offered(e.apply(AgentLoggedIn(agent("b")), 2.0)) == [("y", "b")]
    assert [v.offer_id for v in e.agent_states()] == ["o1", "o2"]


def test_skills_do_not_block_lower_callers() -> None:
    e = engine(LR, agents=(agent("a", skills=(("lang", "en"),)),))
    e.apply(join("x", requires=(("lang", "fr"),)), 0.0)
    out = e.apply(join("y", requires=(("lang", "*"),)), 1.0)
    assert offered(out) == [("y", "a")]
    out = e.apply(AgentLoggedIn(agent("b", skills=(("lang", "fr"),))), 2.0)
    assert offered(out) == [("x", "b")]


def test_agent_eligible_for_higher_caller_never_gets_lower_one() -> None:
    e = engine(LR)
    e.apply(join("x", requires=(("lang", "fr"),)), 0.0)
    e.apply(join("y"), 1.0)
    # "fr" speaker is eligible for both: it must get x (rank 1); the other agent gets y.
    out = e.apply(AgentLoggedIn(agent("fr", skills=(("lang", "fr"),))), 2.0)
    assert offered(out) == [("x", "fr")]
    assert offered(e.apply(AgentLoggedIn(agent("en")), 3.0)) == [("y", "en")]


def test_multi_queue_agent_prefers_weight_then_priority_then_age() -> None:
    e = engine(
        QueueConfig("low", strategy=Strategy.LEASTRECENT),
        QueueConfig("high", strategy=Strategy.LEASTRECENT, weight=5),
        QueueConfig("other", strategy=Strategy.LEASTRECENT),
    )
    e.apply(join("l1", "low"), 0.0)
    e.apply(join("o1", "other"), 1.0)
    e.apply(join("o2", "other", priority=3), 2.0)
    e.apply(join("h1", "high"), 3.0)
    served = []
    for i in range(4):
        out = e.apply(AgentLoggedIn(agent(f"a{i}", "low", "high", "other")), 10.0 + i)
        served += [c for c, _ in offered(out)]
    assert served == ["h1", "o2", "l1", "o1"]


def test_membership_weight_steers_one_agent() -> None:
    e = engine(QueueConfig("a", strategy=Strategy.LEASTRECENT), QueueConfig("b", strategy=Strategy.LEASTRECENT))
    e.apply(join("xa", "a"), 0.0)
    e.apply(join("xb", "b"), 1.0)
    cfg = AgentConfig("m", "PJSIP/m", "n1", (Membership("a"), Membership("b", penalty=0, weight=3)))
    assert offered(e.apply(AgentLoggedIn(cfg), 2.0)) == [("xb", "m")]


def test_logout_while_ringing_requeues_caller() -> None:
    e = engine(LR, agents=(agent("a"), agent("b")))
    e.apply(join("x"), 0.0)
    e.apply(OfferAnswered("o1"), 1.0)
    e.apply(join("y"), 2.0)  # rings b
    out = e.apply(AgentLoggedOut("b"), 3.0)
    assert [(c.agent_id, c.reason) for c in only(out, CancelOffer)] == [("b", "agent_logged_out")]
    view = e.caller("y")
    assert view is not None and view.state == "waiting" and view.position == 1


def test_a_late_call_end_of_an_earlier_offer_does_not_end_the_callers_new_call() -> None:
    # x's first agent answered, but the cross-node path never came up: the caller's node failed the
    # connected offer and x was offered again. The agent's node reports the end of the FIRST call later.
    e = engine(QueueConfig("q", strategy=Strategy.LINEAR), agents=(agent("a"), agent("b")))
    [first] = only(e.apply(join("x"), 0.0), Offer)
    assert only(e.apply(OfferAnswered(first.offer_id), 1.0), Connect)
    [second] = only(e.apply(OfferFailed(first.offer_id, "failed"), 16.0), Offer)
    assert second.agent_id == "b"
    assert only(e.apply(OfferAnswered(second.offer_id), 17.0), Connect)
    assert e.apply(CallEnded("x", agent_hung_up=True, offer_id=first.offer_id), 18.0) == []
    caller = e.caller("x")
    assert caller is not None and caller.state == "connected"
    out = e.apply(CallEnded("x", agent_hung_up=True, offer_id=second.offer_id), 60.0)
    assert [(x.call_id, x.status) for x in only(out, CallerExit)] == [("x", CallerStatus.CONTINUE)]
    assert e.caller("x") is None

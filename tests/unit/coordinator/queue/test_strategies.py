"""Each strategy picks the documented agent; penalties, tiers, autopause."""

from __future__ import annotations

from collections import Counter

import pytest

from coordinator.queue import (
    AgentPaused,
    AgentStateChanged,
    AgentUnpaused,
    CallEnded,
    Offer,
    OfferAnswered,
    OfferFailed,
    PenaltyRule,
    QueueConfig,
    QueueDefined,
    QueueEngine,
    Strategy,
    Tick,
)

from .helpers import agent, engine, join, offered, only


def serve_one(e: QueueEngine, call_id: str, t: float, talk: float = 1.0) -> str:
    """Join a caller, answer its (single) offer, end the call; return the agent that got it."""
    offers = only(e.apply(join(call_id), t), Offer)
    assert len(offers) == 1, offers
    e.apply(OfferAnswered(offers[0].offer_id), t + 0.5)
    e.apply(CallEnded(call_id, agent_hung_up=False), t + 0.5 + talk)
    return offers[0].agent_id


@pytest.mark.parametrize(
    ("strategy", "expected"),
    [
        (Strategy.LINEAR, ["a", "a", "a", "a"]),
        (Strategy.RRMEMORY, ["a", "b", "c", "a"]),
        (Strategy.RRORDERED, ["a", "b", "c", "a"]),
        (Strategy.LEASTRECENT, ["a", "b", "c", "a"]),
        (Strategy.FEWESTCALLS, ["a", "b", "c", "a"]),
        (Strategy.LONGEST_IDLE, ["a", "b", "c", "a"]),
    ],
)
def test_sequential_calls(strategy: Strategy, expected: list[str]) -> None:
    e = engine(QueueConfig("q", strategy=strategy), agents=(agent("a"), agent("b"), agent("c")))
    assert [serve_one(e, f"x{i}", 10.0 * i) for i in range(4)] == expected


def test_ringall_rings_all_free_agents_of_the_lowest_tier() -> None:
    e = engine(
        QueueConfig("q", strategy=Strategy.RINGALL),
        agents=(agent("a", penalty=1), agent("b"), agent("c"), agent("d", penalty=2)),
    )
    assert sorted(a for _, a in offered(e.apply(join("x"), 1.0))) == ["b", "c"]
    # The next caller gets the next tier that is still free.
    assert offered(e.apply(join("y"), 2.0)) == [("y", "a")]


def test_rrmemory_skips_busy_agents_and_remembers() -> None:
    e = engine(QueueConfig("q", strategy=Strategy.RRMEMORY), agents=(agent("a"), agent("b"), agent("c")))
    assert serve_one(e, "x1", 0.0) == "a"
    e.apply(AgentPaused("b"), 5.0)
    assert serve_one(e, "x2", 10.0) == "c"
    e.apply(AgentUnpaused("b"), 15.0)
    assert serve_one(e, "x3", 20.0) == "a"
    assert serve_one(e, "x4", 30.0) == "b"


def test_leastrecent_fewestcalls_longest_idle_differ() -> None:
    results = {}
    for strategy in (Strategy.LEASTRECENT, Strategy.FEWESTCALLS, Strategy.LONGEST_IDLE):
        e = engine(QueueConfig("q", strategy=strategy), agents=(agent("a"), agent("b"), agent("c")))
        e.apply(AgentPaused("b"), 0.0)
        e.apply(AgentPaused("c"), 0.0)
        serve_one(e, "x1", 1.0)  # a: 1 call, ends at 2.5
        serve_one(e, "x2", 3.0)  # a: 2 calls, ends at 4.5
        e.apply(AgentUnpaused("b"), 5.0)
        e.apply(AgentPaused("a"), 5.0)
        serve_one(e, "x3", 6.0, talk=20.0)  # b: 1 call, ends at 26.5
        e.apply(AgentUnpaused("a"), 7.0)  # a idle since 7
        e.apply(AgentUnpaused("c"), 8.0)  # c idle since 8, never called
        # Now: a last call 4.5 / 2 calls / idle since 7; b 26.5 / 1 / 26.5; c never / 0 / 8.
        e.apply(AgentPaused("c"), 30.0)
        results[strategy] = serve_one(e, "x4", 40.0)
    assert results == {Strategy.LEASTRECENT: "a", Strategy.FEWESTCALLS: "b", Strategy.LONGEST_IDLE: "a"}


def test_longest_idle_uses_time_since_free_not_last_call() -> None:
    e = engine(QueueConfig("q", strategy=Strategy.LONGEST_IDLE), agents=(agent("a"), agent("b"), agent("c")))
    serve_one(e, "x1", 1.0)  # a ends at 2.5
    e.apply(AgentPaused("b"), 3.0)
    e.apply(AgentUnpaused("b"), 4.0)  # b free since 4, c since 0
    assert serve_one(e, "x2", 5.0) == "c"
    assert serve_one(e, "x3", 10.0) == "a"


@pytest.mark.parametrize("strategy", [Strategy.RANDOM, Strategy.WRANDOM])
def test_random_strategies_are_seeded_and_spread(strategy: Strategy) -> None:
    def picks(seed: int) -> list[str]:
        e = engine(
            QueueConfig("q", strategy=strategy),
            agents=(agent("a"), agent("b"), agent("c", penalty=1)),
            seed=seed,
        )
        return [serve_one(e, f"x{i}", 10.0 * i) for i in range(300)]

    first = picks(7)
    assert first == picks(7)
    counts = Counter(first)
    if strategy is Strategy.RANDOM:
        # c has a higher penalty: random only picks within the lowest tier.
        assert set(counts) == {"a", "b"} and min(counts.values()) > 100
    else:
        # wrandom: penalty is a weight; c (metric range 0..2000) wins less often than a or b (0..1000).
        assert set(counts) == {"a", "b", "c"} and counts["c"] < counts["a"] and counts["c"] < counts["b"]


def test_higher_penalty_only_when_lower_tier_busy() -> None:
    e = engine(QueueConfig("q", strategy=Strategy.LINEAR), agents=(agent("hi", penalty=2), agent("lo")))
    assert offered(e.apply(join("x"), 0.0)) == [("x", "lo")]
    assert offered(e.apply(join("y"), 1.0)) == [("y", "hi")]


@pytest.mark.parametrize("strategy", [s for s in Strategy if s is not Strategy.WRANDOM])
def test_a_lower_penalty_agent_that_let_an_offer_ring_out_is_rung_again_before_an_overflow_one(
        strategy: Strategy) -> None:
    # app_queue's metric is penalty * 1,000,000 + the strategy's: the overflow member (penalty 1) rings
    # only when nobody of penalty 0 is free, not because the penalty-0 member missed a ring.
    e = engine(QueueConfig("q", strategy=strategy, ring_timeout=15), agents=(agent("a"), agent("sup", penalty=1)))
    [first] = only(e.apply(join("x"), 0.0), Offer)
    assert first.agent_id == "a"
    [again] = only(e.apply(Tick(), 15.0), Offer)  # a let it ring out
    assert again.agent_id == "a"
    e.apply(AgentPaused("a"), 16.0)
    assert offered(e.apply(OfferFailed(again.offer_id, "noanswer"), 17.0)) == [("x", "sup")]  # nobody of 0 free


@pytest.mark.parametrize("retry", [0.0, 5.0])
def test_a_busy_lower_penalty_member_passes_the_caller_to_the_next_tier_at_once(retry: float) -> None:
    # app_queue's ring_one after a BUSY rings the next member by metric, of a higher penalty if need be.
    e = engine(QueueConfig("q", strategy=Strategy.LINEAR, retry=retry), agents=(agent("a"), agent("b", penalty=1)))
    [first] = only(e.apply(join("x"), 0.0), Offer)
    assert first.agent_id == "a"
    assert offered(e.apply(OfferFailed(first.offer_id, "busy"), 1.0)) == [("x", "b")]


def test_linear_after_a_busy_member_and_a_ring_out_rings_the_next_member_not_the_busy_one() -> None:
    # app_queue's linear moves on past the member that rang out; the busy one is not rung again first.
    e = engine(QueueConfig("q", strategy=Strategy.LINEAR), agents=(agent("busy1"), agent("deaf2"), agent("good3")))
    [first] = only(e.apply(join("x"), 0.0), Offer)
    [second] = only(e.apply(OfferFailed(first.offer_id, "busy"), 0.5), Offer)
    assert (first.agent_id, second.agent_id) == ("busy1", "deaf2")
    assert offered(e.apply(Tick(), 15.5)) == [("x", "good3")]  # deaf2 rang out


def test_ringall_with_its_whole_tier_busy_rings_the_next_tier() -> None:
    e = engine(QueueConfig("q"), agents=(agent("a"), agent("b"), agent("c", penalty=1)))
    offers = only(e.apply(join("x"), 0.0), Offer)
    assert sorted(o.agent_id for o in offers) == ["a", "b"]
    e.apply(OfferFailed(offers[0].offer_id, "busy"), 1.0)
    assert offered(e.apply(OfferFailed(offers[1].offer_id, "unavailable"), 1.0)) == [("x", "c")]


def test_busy_rings_the_next_member_at_once_and_retry_is_waited_when_the_round_failed() -> None:
    # app_queue: on BUSY ring_one rings the next member; `retry` separates whole rounds (and follows a
    # member that rang out).
    e = engine(QueueConfig("q", strategy=Strategy.LINEAR, retry=5), agents=(agent("a"), agent("b")))
    [first] = only(e.apply(join("x"), 0.0), Offer)
    assert first.agent_id == "a"
    [second] = only(e.apply(OfferFailed(first.offer_id, "busy"), 1.0), Offer)
    assert second.agent_id == "b"
    assert offered(e.apply(OfferFailed(second.offer_id, "unavailable"), 2.0)) == []  # round over: retry
    assert offered(e.apply(Tick(), 6.9)) == []
    [third] = only(e.apply(Tick(), 7.0), Offer)
    assert third.agent_id == "a"
    assert offered(e.apply(OfferFailed(third.offer_id, "noanswer"), 8.0)) == []  # rang out: retry first
    assert offered(e.apply(Tick(), 13.0)) == [("x", "b")]


def test_a_retry_owed_when_the_queue_retry_became_0_does_not_hold_the_caller() -> None:
    e = engine(QueueConfig("q", strategy=Strategy.LINEAR, retry=5), agents=(agent("a"), agent("b")))
    [first] = only(e.apply(join("x"), 0.0), Offer)
    [second] = only(e.apply(OfferFailed(first.offer_id, "busy"), 1.0), Offer)  # a retry is owed
    e.apply(QueueDefined(QueueConfig("q", strategy=Strategy.LINEAR, retry=0)), 2.0)
    assert offered(e.apply(OfferFailed(second.offer_id, "busy"), 3.0)) == [("x", "a")]  # no retry any more


def test_penalty_rules_widen_over_time() -> None:
    rules = (PenaltyRule(0, max_penalty=0), PenaltyRule(30, max_penalty=5), PenaltyRule(60, 9, min_penalty=6))
    e = engine(QueueConfig("q", strategy=Strategy.LINEAR, penalty_rules=rules), agents=(agent("p3", penalty=3),))
    assert offered(e.apply(join("x"), 0.0)) == []
    assert e.next_deadline() == 30.0
    assert offered(e.apply(Tick(), 29.0)) == []
    out = e.apply(Tick(), 30.0)
    assert offered(out) == [("x", "p3")]
    # The band also narrows: after 60 s only penalties 6..9 may ring this caller.
    assert offered(e.apply(OfferFailed(only(out, Offer)[0].offer_id, "busy"), 61.0)) == []
    view = e.caller("x")
    assert view is not None and view.state == "waiting"


def test_autopause_after_consecutive_no_answers() -> None:
    e = engine(QueueConfig("q", strategy=Strategy.LINEAR, autopause_after=2), agents=(agent("a"),))
    e.apply(join("x"), 0.0)
    out = e.apply(OfferFailed("o1", "busy"), 1.0)  # busy does not count
    assert offered(out) == [("x", "a")]
    out = e.apply(OfferFailed("o2", "noanswer"), 2.0)
    assert offered(out) == [("x", "a")]
    out = e.apply(Tick(), 2.0 + 15.0)  # ring timeout = second consecutive no answer
    assert only(out, AgentStateChanged) == [AgentStateChanged("a", "paused", "autopause")]
    assert offered(out) == []
    view = e.agent_states()[0]
    assert (view.state, view.pause_reason) == ("paused", "autopause")
    assert offered(e.apply(AgentUnpaused("a"), 20.0)) == [("x", "a")]


def test_answer_resets_autopause_counter() -> None:
    e = engine(QueueConfig("q", strategy=Strategy.LINEAR, autopause_after=2), agents=(agent("a"),))
    e.apply(join("x"), 0.0)
    e.apply(OfferFailed("o1", "noanswer"), 1.0)
    e.apply(OfferAnswered("o2"), 2.0)
    e.apply(CallEnded("x", False), 3.0)
    e.apply(join("y"), 4.0)
    out = e.apply(OfferFailed("o3", "noanswer"), 5.0)
    assert only(out, AgentStateChanged) == [] and offered(out) == [("y", "a")]

"""10,000 callers in one queue: positions stay exact and the hot path does not scan the line."""

from __future__ import annotations

import random

import pytest

import coordinator.queue.dispatch as dispatch_module
from coordinator.queue import AgentLoggedIn, CallEnded, CallerLeft, OfferAnswered, QueueConfig, Strategy

from .helpers import CallCounter, agent, engine, join, offered

N = 10_000


def test_positions_at_scale_match_a_list_reference() -> None:
    rng = random.Random(42)
    e = engine(QueueConfig("q", strategy=Strategy.LEASTRECENT))
    ref: list[str] = []
    count_by_prio = dict.fromkeys(range(5), 0)
    prio_of: dict[str, int] = {}
    for i in range(N):
        call, prio = f"c{i}", rng.randrange(5)
        higher = sum(n for p, n in count_by_prio.items() if p > prio)
        override = rng.randrange(1, 30) if rng.random() < 0.02 else 0
        if override and override - 1 < count_by_prio[prio]:
            index = higher + override - 1
        else:
            index = higher + count_by_prio[prio]
        ref.insert(index, call)
        count_by_prio[prio] += 1
        prio_of[call] = prio
        e.apply(join(call, priority=prio, position=override), float(i))
    assert all(e.position(c) == i + 1 for i, c in enumerate(ref))
    for call in rng.sample(ref, 1000):
        e.apply(CallerLeft(call, "hangup"), float(N))
        ref.remove(call)
    assert all(e.position(c) == i + 1 for i, c in enumerate(ref))
    assert e.snapshot(float(N))[0].waiting == N - 1000


def test_joins_with_all_agents_busy_do_not_scan(monkeypatch: pytest.MonkeyPatch) -> None:
    # Eligibility is judged by eligible() or, for one free agent in one queue, _first_eligible().
    counter = CallCounter(monkeypatch, dispatch_module, "eligible", "_first_eligible")
    e = engine(QueueConfig("q", strategy=Strategy.LEASTRECENT))
    e.apply(AgentLoggedIn(agent("a")), 0.0)
    e.apply(join("first"), 0.0)
    e.apply(OfferAnswered("o1"), 0.0)
    counter.calls = 0
    for i in range(N):
        e.apply(join(f"c{i}"), 1.0 + i)
    assert counter.calls == 0  # no free agent: dispatch returns at once
    out = e.apply(CallEnded("first", False), 2.0 * N)
    assert offered(out) == [("c0", "a")] and counter.calls == 1


def test_idle_agents_are_not_rescanned_when_nothing_could_pair(monkeypatch: pytest.MonkeyPatch) -> None:
    scans = CallCounter(monkeypatch, dispatch_module, "_best_callers", "_agent_fits")
    # 200 free agents, all needing a skill no caller asks for: nobody can be offered.
    e = engine(QueueConfig("q"), agents=tuple(agent(f"a{i}", skills=(("lang", "de"),)) for i in range(200)))
    e.apply(join("x", requires=(("lang", "fr"),)), 1.0)  # one pass: 200 agents scanned
    scans.calls = 0
    for i in range(100):
        # Events that cannot pair anyone (stale reports) leave the idle agents alone.
        e.apply(CallerLeft(f"gone{i}", "hangup"), 2.0 + i)
        e.apply(CallEnded(f"gone{i}", False), 2.0 + i)
    assert scans.calls == 0
    out = e.apply(join("y"), 200.0)  # a caller anyone can take: a pass again
    assert scans.calls > 0 and {call for call, _ in offered(out)} == {"y"}


def test_agents_logging_in_while_nobody_waits_do_not_walk_the_idle_agents(monkeypatch: pytest.MonkeyPatch) -> None:
    """A new leader applies every stored agent in one step: with a pass over the idle agents per login
    that was O(N^2) (about 6 s for 2,000 agents, longer than the election lease's TTL)."""
    scans = CallCounter(monkeypatch, dispatch_module, "_best_callers", "_agent_fits")
    e = engine(QueueConfig("q", strategy=Strategy.LEASTRECENT), QueueConfig("r", strategy=Strategy.LEASTRECENT))
    for i in range(2_000):
        e.apply(AgentLoggedIn(agent(f"a{i}", "q", "r")), float(i))
    assert scans.calls == 0
    # The tally follows the lines: the first caller after the logins is offered at once.
    out = e.apply(join("x", queue="r"), 3_000.0)
    assert offered(out) == [("x", "a0")]  # leastrecent: nobody took a call, the first logged in wins ties
    out = e.apply(join("y", queue="q"), 3_001.0)
    assert offered(out) == [("y", "a1")]


def test_with_many_free_agents_a_caller_nobody_can_take_does_not_hold_up_the_next(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Skills routing in one queue: a French caller nobody free speaks waits at the head; each caller
    after it goes to the strategy's agent among all free ones, and only the line's callers are looked at."""
    e = engine(QueueConfig("q", strategy=Strategy.LEASTRECENT),
               agents=tuple(agent(f"a{i}", skills=(("lang", "en"),)) for i in range(300)))
    e.apply(join("fr", requires=(("lang", "fr"),)), 1.0)
    fits = CallCounter(monkeypatch, dispatch_module, "_agent_fits")
    out = e.apply(join("en1", requires=(("lang", "en"),)), 2.0)
    assert offered(out) == [("en1", "a0")]
    assert fits.calls == 2 * 300  # each free agent against the two open callers, once
    out = e.apply(join("en2"), 3.0)
    assert offered(out) == [("en2", "a1")]


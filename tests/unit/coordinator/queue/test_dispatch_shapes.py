"""The cheaper shapes of a dispatch pass (nobody waiting, one free agent, every caller in one queue)
decide exactly what the general heap pass decides: two engines with the same seed take the same
random events, one dispatching as in production, the other always through `_dispatch_general`; their
decisions, rng states, round-robin pointers, lines, callers' tried sets, offers and idle sets must
stay equal after every event. The events cover every strategy, weights, penalty rules, skills,
ringinuse, retry pauses, autopause, node loss and return, device states and queue redefinition.
"""

from __future__ import annotations

import random
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import coordinator.queue.dispatch as dispatch_module
import coordinator.queue.machine as machine_module
from coordinator.queue import (
    AgentConfig,
    AgentLoggedIn,
    AgentLoggedOut,
    AgentPaused,
    AgentUnpaused,
    CallEnded,
    CallerJoined,
    CallerLeft,
    DeviceStateChanged,
    Event,
    Membership,
    NodeAlive,
    NodeAttached,
    NodeDetached,
    NodeLost,
    OfferAnswered,
    OfferFailed,
    QueueConfig,
    QueueDefined,
    QueueEngine,
    Requirement,
    Strategy,
    Tick,
)
from coordinator.queue.model import PenaltyRule

QUEUES = ("q1", "q2", "q3")
AGENTS = tuple(f"a{i}" for i in range(6))
NODES = ("n1", "n2")


def _queue(r: random.Random, name: str, strategy: Strategy) -> QueueConfig:
    rules: tuple[PenaltyRule, ...] = ()
    if r.random() < 0.4:
        rules = (PenaltyRule(0.0, r.randint(0, 1), 0), PenaltyRule(4.0, 2, r.randint(0, 1)))
    return QueueConfig(name, strategy=strategy, retry=r.choice([0.0, 0.0, 2.0]), wrapup_time=r.choice([0.0, 3.0]),
                       ringinuse=r.random() < 0.3, weight=r.choice([0, 0, 1, 2]), penalty_rules=rules,
                       autopause_after=r.choice([0, 0, 2]), ring_timeout=r.choice([5.0, 15.0]))


def _event(r: random.Random, e: QueueEngine, calls: list[int]) -> Event | None:
    """One random event, drawn against engine `e`'s state (both engines hold the same state)."""
    state = e._st
    k = r.random()
    if k < 0.22:
        calls[0] += 1
        reqs = r.choice([(), (), (), (Requirement("lang", "en"),), (Requirement("lang", "fr"),)])
        queue = r.choice(QUEUES[:2] if r.random() < 0.6 else QUEUES)
        return CallerJoined(f"c{calls[0]}", queue, r.choice(NODES), r.choice([0, 0, 1]), requirements=reqs)
    if k < 0.37:
        aid = r.choice(AGENTS)
        ms = tuple(Membership(q, r.choice([0, 0, 1, 2]), r.choice([0, 0, 1])) for q in r.sample(QUEUES, r.randint(1, 3)))
        skills = r.choice([(), (), (("lang", "en"),), (("lang", "fr"),)])
        return AgentLoggedIn(AgentConfig(aid, f"PJSIP/{aid}", r.choice(NODES), ms, skills,
                                         ringinuse=r.choice([None, None, True, False])))
    agents, offers = sorted(state.agents), sorted(state.offers)
    connected = sorted(c.call_id for c in state.callers.values() if c.state == "connected")
    if k < 0.40:
        return AgentLoggedOut(r.choice(agents)) if agents else None
    if k < 0.45:
        return (AgentPaused(r.choice(agents), "x") if r.random() < 0.5 else AgentUnpaused(r.choice(agents))
                ) if agents else None
    if k < 0.55:
        return OfferAnswered(r.choice(offers)) if offers else None
    if k < 0.63:
        return OfferFailed(r.choice(offers), r.choice(["noanswer", "busy", "failed"])) if offers else None
    if k < 0.70:
        return CallEnded(r.choice(connected), r.random() < 0.5) if connected else None
    if k < 0.74:
        return CallerLeft(r.choice(sorted(state.callers)), "hangup") if state.callers else None
    if k < 0.77:
        return r.choice([NodeAlive, NodeAlive, NodeAttached, NodeDetached, NodeLost])(r.choice(NODES))
    if k < 0.82:
        if not agents:
            return None
        a = state.agents[r.choice(agents)]
        return DeviceStateChanged(a.config.home_node, a.config.device, r.choice(["NOT_INUSE", "INUSE", "UNAVAILABLE"]))
    if k < 0.84:
        return QueueDefined(_queue(r, r.choice(QUEUES), r.choice(list(Strategy))))
    return Tick()


def _state(e: QueueEngine) -> Any:
    s = e._st
    return (e._rng.getstate(), {n: (q.rr_last, list(q.line)) for n, q in s.queues.items()},
            {c.call_id: (c.state, sorted(c.tried), sorted(c.offers), c.retry_until) for c in s.callers.values()},
            list(s.idle), sorted(s.offers))


@settings(max_examples=120, deadline=None)
@given(seed=st.integers(0, 2**32 - 1))
def test_every_shape_of_a_pass_decides_like_the_general_pass(seed: int) -> None:
    production, general = QueueEngine(random.Random(seed), "x-"), QueueEngine(random.Random(seed), "x-")
    real_dispatch = dispatch_module.dispatch

    def general_only(state: Any, rng: random.Random, prefix: str, now: float, out: list[Any]) -> None:
        if state is general._st:
            if state.idle and state.dispatch_dirty:
                state.dispatch_dirty = False
                dispatch_module._dispatch_general(state, rng, prefix, now, out)
        else:
            real_dispatch(state, rng, prefix, now, out)

    r = random.Random(seed)
    strategy = r.choice(list(Strategy))
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(machine_module, "dispatch", general_only)
        now, calls = 0.0, [0]
        for q in QUEUES:
            ev: Event | None = QueueDefined(_queue(r, q, strategy if r.random() < 0.7 else r.choice(list(Strategy))))
            assert ev is not None
            assert production.apply(ev, now) == general.apply(ev, now)
        for _ in range(120):
            ev = _event(r, production, calls)
            if ev is None:
                continue
            if isinstance(ev, Tick):
                now += r.choice([0.5, 1.0, 2.5, 5.0])
            assert production.apply(ev, now) == general.apply(ev, now), ev
            assert _state(production) == _state(general), ev
            lines = production._st.lines
            assert (lines.callers, lines.lines) == (sum(len(q.line) for q in production._st.queues.values()),
                                                    sum(bool(q.line) for q in production._st.queues.values()))

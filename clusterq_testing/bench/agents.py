"""The engine with many agents, in-process: what a call centre's size costs the leader.

- logging in N agents while nobody waits (a new leader loads every stored agent in one step, so
  this must stay well below the election lease's TTL);
- a caller joining, being answered and hanging up while N agents wait for calls (each join makes
  the engine choose among every free agent), with the line empty or with one caller at its head
  that nobody free can take (skills routing);
- the first device-state reports a new leader gets for every agent (not reported -> NOT_INUSE).

Pure engine calls on a fake clock: no gRPC, no etcd, so the figures show the engine's own scaling.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from coordinator.queue import (
    AgentConfig,
    AgentLoggedIn,
    CallEnded,
    CallerJoined,
    DeviceStateChanged,
    Membership,
    Offer,
    OfferAnswered,
    QueueConfig,
    QueueDefined,
    QueueEngine,
    Requirement,
    Strategy,
)

__all__ = ["AgentScalePoint", "agent_scale"]

QUEUE = "agents-bench"


@dataclass(frozen=True)
class AgentScalePoint:
    """Costs at one number of agents (all free, one queue, leastrecent)."""

    agents: int
    login_all_ms: float
    cycle_us: float
    """One caller joining, answered, hanging up: mean over the cycles."""
    cycle_behind_unservable_us: float
    """The same with a caller at the head of the line whom no free agent can take."""
    device_reports_ms: float
    """One NOT_INUSE report per agent (a new leader's first reports), a caller nobody can take waiting."""


def _engine(agents: int) -> tuple[QueueEngine, float]:
    engine = QueueEngine()
    engine.apply(QueueDefined(QueueConfig(QUEUE, strategy=Strategy.LEASTRECENT)), 0.0)
    started = time.perf_counter()
    for i in range(agents):
        cfg = AgentConfig(f"a{i}", f"PJSIP/a{i}", f"n{i % 4}", (Membership(QUEUE),), skills=(("lang", "en"),))
        engine.apply(AgentLoggedIn(cfg), 0.0)
    return engine, (time.perf_counter() - started) * 1e3


def _join(engine: QueueEngine, call_id: str, now: float, lang: str = "en") -> list[object]:
    return list(engine.apply(CallerJoined(call_id=call_id, queue=QUEUE, node_id="n0",
                                          requirements=(Requirement("lang", lang),)), now))


def _cycles(engine: QueueEngine, cycles: int, start: float) -> float:
    """Mean microseconds of join -> offer -> answer -> call end."""
    started = time.perf_counter()
    for c in range(cycles):
        now = start + c
        offers = [d for d in _join(engine, f"c{start:.0f}-{c}", now) if isinstance(d, Offer)]
        if len(offers) != 1:
            raise RuntimeError(f"expected one offer per join, got {len(offers)}")
        engine.apply(OfferAnswered(offers[0].offer_id), now)
        engine.apply(CallEnded(offers[0].call_id, False), now + 0.5)
    return (time.perf_counter() - started) / cycles * 1e6


def agent_scale(sizes: tuple[int, ...] = (10, 500, 2_000), cycles: int = 200) -> list[AgentScalePoint]:
    """The costs above at each number of agents."""
    points = []
    for n in sizes:
        engine, login_ms = _engine(n)
        cycle = _cycles(engine, cycles, 1.0)
        _join(engine, "unservable", 10_000.0, lang="fr")
        behind = _cycles(engine, cycles, 10_001.0)
        started = time.perf_counter()
        for i in range(n):
            engine.apply(DeviceStateChanged(f"n{i % 4}", f"PJSIP/a{i}", "NOT_INUSE"), 20_000.0)
        reports_ms = (time.perf_counter() - started) * 1e3
        points.append(AgentScalePoint(n, login_ms, cycle, behind, reports_ms))
    return points

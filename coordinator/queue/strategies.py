"""Pick the agent(s) to ring for one caller among the free eligible agents.

Pure functions; the engine passes the only candidates that may take this caller. Penalty tiers: except
for wrandom (which uses the penalty as a random weight, like app_queue), only the lowest penalty among
the candidates is considered. Ties are always broken by the order agents were added to the queue.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from coordinator.queue.fastinit import fast_init
from coordinator.queue.model import Strategy

__all__ = ["Candidate", "choose_agents"]


@fast_init
@dataclass(frozen=True, slots=True)
class Candidate:
    """What a strategy may look at about one free eligible agent."""

    agent_id: str
    penalty: int
    order: int
    """Order the agent was added to the queue (rr*, linear, tie-breaks)."""
    last_call_end: float
    """When its last call ended (-inf if never): leastrecent."""
    available_since: float
    """When it last became free: longest-idle."""
    calls_taken: int
    """Calls answered from this queue: fewestcalls."""


def choose_agents(strategy: Strategy, candidates: list[Candidate], rng: random.Random, rr_last: int) -> list[Candidate]:
    """The agent(s) to ring: all of the lowest tier for ringall, one otherwise (empty in, empty out).

    `rr_last` is the member order of the agent rrmemory/rrordered rang last (-1 = none).
    """
    if not candidates:
        return []
    ordered = sorted(candidates, key=lambda c: c.order)
    if strategy is Strategy.WRANDOM:
        # app_queue: metric = random() % ((1 + penalty) * 1000); the lowest metric wins.
        metrics = [(rng.randrange((1 + c.penalty) * 1000), c.order, c) for c in ordered]
        return [min(metrics, key=lambda m: (m[0], m[1]))[2]]
    tier = min(c.penalty for c in ordered)
    ordered = [c for c in ordered if c.penalty == tier]
    if strategy is Strategy.RINGALL:
        return ordered
    if strategy is Strategy.LEASTRECENT:
        return [min(ordered, key=lambda c: (c.last_call_end, c.order))]
    if strategy is Strategy.FEWESTCALLS:
        return [min(ordered, key=lambda c: (c.calls_taken, c.order))]
    if strategy is Strategy.RANDOM:
        return [rng.choice(ordered)]
    if strategy in (Strategy.RRMEMORY, Strategy.RRORDERED):
        after = [c for c in ordered if c.order > rr_last]
        return [after[0] if after else ordered[0]]
    if strategy is Strategy.LINEAR:
        return [ordered[0]]
    if strategy is Strategy.LONGEST_IDLE:
        return [min(ordered, key=lambda c: (c.available_since, c.order))]
    raise AssertionError(f"unhandled strategy {strategy!r}")

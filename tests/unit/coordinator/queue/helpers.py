"""Builders shared by the queue engine tests."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import TypeVar

import pytest

from coordinator.queue import (
    AgentConfig,
    AgentLoggedIn,
    CallerJoined,
    Decision,
    Membership,
    Offer,
    QueueConfig,
    QueueDefined,
    QueueEngine,
    Requirement,
)

T = TypeVar("T")


def agent(
    agent_id: str,
    *queues: str,
    node: str = "n1",
    penalty: int = 0,
    weight: int = 0,
    skills: tuple[tuple[str, str], ...] = (),
    ringinuse: bool | None = None,
    wrapup: float | None = None,
    iface: str = "",
) -> AgentConfig:
    """An agent in `queues` (default: "q") with the same penalty and weight in each."""
    names = queues or ("q",)
    return AgentConfig(
        agent_id=agent_id,
        endpoint=f"PJSIP/{agent_id}",
        home_node=node,
        memberships=tuple(Membership(q, penalty, weight) for q in names),
        skills=skills,
        ringinuse=ringinuse,
        wrapup_time=wrapup,
        state_interface=iface,
    )


def engine(*configs: QueueConfig, agents: tuple[AgentConfig, ...] = (), seed: int = 1) -> QueueEngine:
    """An engine with queues defined and agents logged in at t=0."""
    e = QueueEngine(random.Random(seed))
    for cfg in configs or (QueueConfig("q"),):
        e.apply(QueueDefined(cfg), 0.0)
    for a in agents:
        e.apply(AgentLoggedIn(a), 0.0)
    return e


def join(
    call_id: str,
    queue: str = "q",
    *,
    node: str = "n1",
    priority: int = 0,
    position: int = 0,
    requires: tuple[tuple[str, str], ...] = (),
    arrival_seq: int | None = None,
    joined_at: float | None = None,
) -> CallerJoined:
    """A CallerJoined event with short keyword names."""
    return CallerJoined(
        call_id=call_id,
        queue=queue,
        node_id=node,
        priority=priority,
        position=position,
        requirements=tuple(Requirement(k, v) for k, v in requires),
        arrival_seq=arrival_seq,
        joined_at=joined_at,
    )


def only(decisions: list[Decision], kind: type[T]) -> list[T]:
    """The decisions of one type, in order."""
    return [d for d in decisions if isinstance(d, kind)]


def offered(decisions: list[Decision]) -> list[tuple[str, str]]:
    """(call_id, agent_id) of every Offer, in order."""
    return [(o.call_id, o.agent_id) for o in only(decisions, Offer)]


class CallCounter:
    """Counts the calls of module-level functions it replaces through monkeypatch: how many agents or
    callers a dispatch pass looked at, to show a pass was skipped (not how long it took)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, module: object, *names: str) -> None:
        self.calls = 0
        for name in names:
            monkeypatch.setattr(module, name, self._counting(getattr(module, name)))

    def _counting(self, original: Callable[..., object]) -> Callable[..., object]:
        def wrapper(*args: object) -> object:
            self.calls += 1
            return original(*args)

        return wrapper

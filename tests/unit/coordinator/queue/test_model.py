"""Config validation and skills matching."""

from __future__ import annotations

import math
from typing import Any

import pytest

from coordinator.queue import AgentConfig, Membership, PenaltyRule, QueueConfig, Requirement, Strategy


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"name": "bad name"}, "must match"),
        ({"name": ""}, "must match"),
        ({"name": "x" * 65}, "must match"),
        ({"ring_timeout": 0.0}, "ring_timeout"),
        ({"retry": -1.0}, "retry"),
        ({"wrapup_time": float("nan")}, "wrapup_time"),
        ({"max_wait": -5.0}, "max_wait"),
        ({"maxlen": -1}, "maxlen"),
        ({"autopause_after": -1}, "autopause_after"),
        ({"joinempty": frozenset({"sleepy"})}, "joinempty"),
        ({"leavewhenempty": frozenset({"paused", "nope"})}, "leavewhenempty"),
        ({"announce_position": "maybe"}, "announce_position"),
        ({"announce_holdtime": "twice"}, "announce_holdtime"),
        ({"ewt_method": "magic"}, "ewt_method"),
        ({"periodic_announce": ("p",)}, "periodic_announce_frequency"),
        ({"penalty_rules": (PenaltyRule(10, 1), PenaltyRule(5, 2))}, "sorted"),
        ({"penalty_rules": (PenaltyRule(10, 1, min_penalty=2),)}, "min <= max"),
        ({"strategy": "ringall"}, "not a Strategy"),  # plain strings are refused: use Strategy(...)
        ({"strategy": Strategy("longest-idle")}, None),
        # Timers that re-arm: a tiny positive value froze the leader (fired again at the same `now`).
        ({"ring_timeout": 1e-6}, "ring_timeout must be at least 1 s"),
        ({"ring_timeout": 0.5}, "ring_timeout must be at least 1 s"),
        ({"ring_timeout": 1.0}, None),
        ({"announce_frequency": 1e-12, "min_announce_frequency": 0.0}, "announce_frequency must be 0 .off."),
        ({"announce_frequency": 30.0, "min_announce_frequency": 1e-12}, "min_announce_frequency must be 0 .off."),
        ({"announce_frequency": 30.0, "min_announce_frequency": 0.0}, None),
        ({"periodic_announce": ("p",), "periodic_announce_frequency": 1e-12}, "periodic_announce_frequency"),
        ({"periodic_announce": ("p",), "periodic_announce_frequency": 1.0}, None),
        ({"retry": 0.001}, "retry must be 0 .off."),
        ({"retry": 0.0}, None),
        # One-shot timers keep any value in range; no duration beyond a year.
        ({"max_wait": 0.2, "wrapup_time": 0.5, "service_level": 0.0}, None),
        ({"ring_timeout": 1e300}, "ring_timeout must be a number of seconds in 0..31536000"),
        ({"max_wait": math.inf}, "max_wait"),
        ({"penalty_rules": (PenaltyRule(1e300, 1),)}, "after_seconds must be in 0..31536000"),
    ],
)
def test_queue_config_validation(kwargs: dict[str, Any], message: str | None) -> None:
    base: dict[str, Any] = {"name": "sales.eu-1_x"}
    cfg = QueueConfig(**(base | kwargs))
    if message is None:
        cfg.validate()
        return
    with pytest.raises(ValueError, match=message):
        cfg.validate()


def test_default_config_is_valid_and_ringall() -> None:
    cfg = QueueConfig("q")
    cfg.validate()
    assert cfg.strategy == "ringall" and cfg.ring_timeout == 15.0 and cfg.min_announce_frequency == 15.0


@pytest.mark.parametrize(
    ("skills", "requirements", "ok"),
    [
        ((), (), True),
        ((("lang", "en"),), (Requirement("lang", "en"),), True),
        ((("lang", "en"),), (Requirement("lang", "fr"),), False),
        ((("lang", "en"),), (Requirement("lang", "*"),), True),
        ((), (Requirement("lang", "*"),), False),
        ((("lang", "en"), ("tier", "gold")), (Requirement("lang", "en"), Requirement("tier", "gold")), True),
        ((("lang", "en"), ("lang", "fr")), (Requirement("lang", "fr"),), True),
        ((("lang", "en"),), (Requirement("lang", "en"), Requirement("tier", "*")), False),
    ],
)
def test_skills(skills: tuple[tuple[str, str], ...], requirements: tuple[Requirement, ...], ok: bool) -> None:
    a = AgentConfig("a", "PJSIP/a", "n1", (Membership("q"),), skills=skills)
    assert a.has_skills(requirements) is ok


@pytest.mark.parametrize(
    ("agent", "message"),
    [
        (AgentConfig("", "PJSIP/a", "n1", ()), "agent_id"),
        (AgentConfig("a", "", "n1", ()), "endpoint"),
        (AgentConfig("a", "PJSIP/a", "", ()), "home_node"),
        (AgentConfig("a", "PJSIP/a", "n1", (Membership("q"), Membership("q"))), "duplicate"),
        (AgentConfig("a", "PJSIP/a", "n1", (Membership("q", penalty=-1),)), "negative"),
        (AgentConfig("a", "PJSIP/a", "n1", (), wrapup_time=-1.0), "wrapup"),
    ],
)
def test_agent_validation(agent: AgentConfig, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        agent.validate()

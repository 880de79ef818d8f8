"""The reference model of test_properties: its caller and agent records and the pools hypothesis draws from.

Written apart from the engine on purpose: it knows the rules (eligibility by skills, memberships
with weights), not the engine's data structures.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from coordinator.queue import AgentConfig, Requirement

QUEUES = ("q1", "q2")
AGENT_IDS = ("a0", "a1", "a2", "a3")
NODES = ("n1", "n2")
# Agents' devices: their own (PJSIP/<id>, from the endpoint) or one they share.
SHARED_DEVICE = "PJSIP/shared"
DEVICES = (*(f"PJSIP/{a}" for a in AGENT_IDS), SHARED_DEVICE)
STATE_INTERFACES = ("", "", SHARED_DEVICE)
# NOT_INUSE repeated: devices come back free often enough for agents to be offered again.
DEVICE_STATE_DRAWS = ("NOT_INUSE", "NOT_INUSE", "NOT_INUSE", "UNKNOWN", "INUSE", "BUSY", "RINGING", "RINGINUSE",
                      "ONHOLD", "UNAVAILABLE", "INVALID")
IN_USE = frozenset({"INUSE", "BUSY", "RINGING", "RINGINUSE", "ONHOLD"})
DOWN = frozenset({"UNAVAILABLE", "INVALID"})
# Repeats bias the draws towards overlap, so that agents and callers actually meet.
SKILL_SETS: tuple[tuple[tuple[str, str], ...], ...] = ((), (), (("lang", "en"),), (("lang", "fr"),))
MEMBERSHIPS: tuple[tuple[tuple[str, int], ...], ...] = (
    (("q1", 0), ("q2", 0)),
    (("q1", 0), ("q2", 0)),
    (("q1", 0),),
    (("q1", 1), ("q2", 0)),
    (("q2", 1),),
    (),
)
REQUIREMENTS: tuple[tuple[Requirement, ...], ...] = (
    (),
    (),
    (),
    (Requirement("lang", "en"),),
    (Requirement("lang", "fr"),),
    (Requirement("lang", "*"),),
)


@dataclass
class RCaller:
    call_id: str
    queue: str
    node: str
    priority: int
    seq: int
    reqs: tuple[Requirement, ...]
    state: str = "waiting"
    offers: set[str] = field(default_factory=set)
    agent: str = ""


@dataclass
class RAgent:
    cfg: AgentConfig
    paused: bool = False
    offer: str | None = None
    calls: set[str] = field(default_factory=set)
    wrapup_until: float = float("-inf")


def device(cfg: AgentConfig) -> str:
    """The device an agent's state follows (endpoints here are PJSIP/<id>: their own device)."""
    return cfg.state_interface or cfg.endpoint


def skilled(cfg: AgentConfig, reqs: tuple[Requirement, ...]) -> bool:
    skills = dict(cfg.skills)
    return all(r.key in skills and (r.value == "*" or skills[r.key] == r.value) for r in reqs)

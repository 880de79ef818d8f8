"""Mutable records of the queue engine (private to coordinator.queue).

Invariants kept by the engine:
- an agent has at most one pending offer (`AgentRec.offer_id`);
- a caller has pending offers only while state == "ringing" (several only under ringall);
- a caller is in its queue's QueueLine exactly while state is "waiting" or "ringing";
- `EngineState.idle` holds exactly the agents that could take an offer now in at least one queue;
- `EngineState.devices[node][device]` exists exactly while a logged-in agent homed on `node` has that
  device, lists those agents, and holds the device's last reported state, copied to each of them.
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass, field

from coordinator.queue.model import AgentConfig, QueueConfig, Requirement
from coordinator.queue.ranking import LineTally, QueueLine, RankKey
from coordinator.queue.stats import QueueCounters

__all__ = [
    "DEVICE_DOWN",
    "DEVICE_IN_USE",
    "AgentRec",
    "CallerRec",
    "DeviceRec",
    "EngineState",
    "MemberRec",
    "OfferRec",
    "QueueRec",
    "Timer",
]

WAITING = "waiting"
RINGING = "ringing"
CONNECTED = "connected"

# app_queue's rules for a member's device: in use = rung only with ringinuse; down = never rung.
# NOT_INUSE and UNKNOWN (not reported yet, or Asterisk cannot tell) are available.
DEVICE_IN_USE = frozenset({"INUSE", "BUSY", "RINGING", "RINGINUSE", "ONHOLD"})
DEVICE_DOWN = frozenset({"UNAVAILABLE", "INVALID"})


NOT_REPORTED = ""
"""A device's state before its node reported one (a new login, a new leader): available like UNKNOWN,
shown as UNKNOWN, but not app_queue's "unknown" member condition, which means Asterisk said UNKNOWN.
Otherwise leavewhenempty=unknown would empty every queue after each leader change."""

@dataclass(slots=True, eq=False)
class CallerRec:
    """One caller from join until it leaves or its connected call ends."""

    uid: int
    call_id: str
    queue: str
    node_id: str
    priority: int
    arrival_seq: int
    key: RankKey
    requirements: tuple[Requirement, ...]
    caller_number: str
    caller_name: str
    joined_at: float
    state: str = WAITING
    offers: dict[str, None] = field(default_factory=dict)
    tried: set[str] = field(default_factory=set)
    """Agents that failed this caller in the current round; avoided until everyone of their penalty
    tier was tried."""
    busy: set[str] = field(default_factory=set)
    """Those of `tried` that failed busy / unavailable: out of the round altogether, so the next
    penalty tier rings at once (app_queue's ring_one after a busy), until a round in which every free
    candidate failed busy (dispatch._new_round)."""
    retry_until: float = -math.inf
    retry_owed: bool = False
    """A member failed it busy / unavailable this round: the next member rings at once, the queue's
    retry is waited when the round is over (dispatch._new_round), as app_queue's ring_one does."""
    next_announce: float | None = None
    last_announce: float | None = None
    last_pos_said: int = 0
    holdtime_said: bool = False
    next_periodic: float | None = None
    periodic_index: int = 0
    agent_id: str = ""
    offer_id: str = ""
    agent_node: str = ""
    """The node of its connected offer's agent leg ("" for a call adopted from an earlier leader)."""
    connected_at: float = 0.0
    adopted: bool = False
    """Connected under an earlier leader (CallAdopted): only its agent and its end are known."""
    answered_wait: float | None = None
    """The wait counted in its queue's statistics when its offer was answered (None: not counted by
    this leader): taken back if the call then fails before it starts."""


@dataclass(slots=True, eq=False)
class AgentRec:
    """One logged-in agent and its runtime state."""

    config: AgentConfig
    paused: bool = False
    pause_reason: str = ""
    node_up: bool = True
    offer_id: str | None = None
    calls: dict[str, None] = field(default_factory=dict)
    wrapup_until: float = -math.inf
    last_call_end: float = -math.inf
    available_since: float = 0.0
    unanswered: int = 0
    calls_taken: int = 0
    device_state: str = NOT_REPORTED
    """Its device's last reported state (a copy of its DeviceRec's); the two flags below follow it."""
    device_in_use: bool = False
    device_down: bool = False

    def set_device_state(self, state: str) -> None:
        """Take a reported device state (and what it means for offers)."""
        self.device_state = state
        self.device_in_use = state in DEVICE_IN_USE
        self.device_down = state in DEVICE_DOWN


@dataclass(slots=True, eq=False)
class DeviceRec:
    """A device watched on one node: its last reported state and the agents homed there that use it."""

    state: str = NOT_REPORTED
    agents: dict[str, None] = field(default_factory=dict)


@dataclass(slots=True, eq=False)
class OfferRec:
    """A pending offer: one agent leg ringing for one caller."""

    offer_id: str
    caller_uid: int
    call_id: str
    queue: str
    agent_id: str
    agent_node: str
    caller_node: str
    expires_at: float


@dataclass(slots=True, eq=False)
class MemberRec:
    """An agent's membership of a defined queue."""

    agent_id: str
    penalty: int
    weight: int
    order: int
    calls_taken: int = 0


@dataclass(slots=True, eq=False)
class QueueRec:
    """A defined queue: config, ordered line of callers, members, rr pointer, counters."""

    config: QueueConfig
    line: QueueLine
    """Built with the engine's shared tally (EngineState.lines): a line without it would be invisible
    to dispatch, which returns when the tally says nobody waits."""
    members: dict[str, MemberRec] = field(default_factory=dict)
    member_counter: int = 0
    rr_last: int = -1
    counters: QueueCounters = field(default_factory=QueueCounters)
    caller_timers: bool = field(init=False)
    """Whether the config arms any per-caller timer (see timers.schedule_caller_timers); kept by set_config."""

    def __post_init__(self) -> None:
        self.set_config(self.config)

    def set_config(self, config: QueueConfig) -> None:
        """Replace the config (and what is derived from it)."""
        self.config = config
        self.caller_timers = bool(
            config.max_wait > 0
            or config.penalty_rules
            or config.announce_frequency > 0
            or (config.periodic_announce and config.periodic_announce_frequency > 0)
        )

    def add_member(self, agent_id: str, penalty: int, weight: int) -> None:
        """Add or update a member, keeping its original order when it is already there."""
        existing = self.members.get(agent_id)
        if existing is not None:
            existing.penalty, existing.weight = penalty, weight
            return
        self.members[agent_id] = MemberRec(agent_id, penalty, weight, self.member_counter)
        self.member_counter += 1


Timer = tuple[float, int, str, str, int]
"""(when, seq, kind, ident, token): kinds "ring" (offer id), "wrapup" (agent id), "maxwait", "wake",
"announce", "periodic" (call id, token = caller uid). Stale timers are skipped when popped."""


@dataclass(slots=True, eq=False)
class EngineState:
    """All mutable state of one QueueEngine."""

    queues: dict[str, QueueRec] = field(default_factory=dict)
    agents: dict[str, AgentRec] = field(default_factory=dict)
    callers: dict[str, CallerRec] = field(default_factory=dict)
    by_uid: dict[int, CallerRec] = field(default_factory=dict)
    offers: dict[str, OfferRec] = field(default_factory=dict)
    idle: dict[str, None] = field(default_factory=dict)
    lost_nodes: set[str] = field(default_factory=set)
    detached_nodes: set[str] = field(default_factory=set)  # streams down, not (yet) lost: no new offers
    attaching: set[str] = field(default_factory=set)
    """Nodes between NodeAttached and NodeAlive (their re-report is being applied, within one runtime
    step): no dispatch pass runs meanwhile. Each re-joined caller would mark dispatch dirty and each
    pass walk the whole line past the detached node's callers: O(callers^2), seconds for 10,000."""
    settling: bool = False
    """A new leader settles (events.Settling): no dispatch pass and no leavewhenempty exit meanwhile."""
    lines: LineTally = field(default_factory=LineTally)
    """Callers in all queues' lines together, shared by every QueueLine of this engine."""
    devices: dict[str, dict[str, DeviceRec]] = field(default_factory=dict)
    """node id -> device name -> DeviceRec: what each node must watch, and who a report is about."""
    timers: list[Timer] = field(default_factory=list)
    timer_seq: int = 0
    arrival_counter: int = 0
    uid_counter: int = 0
    offer_counter: int = 0
    dispatch_dirty: bool = True
    """Something happened since the last dispatch pass that could pair a free agent with an eligible
    caller (an agent became free or changed, a caller (re)entered waiting, a timer fired, a queue
    was defined). After a pass no idle agent has an eligible caller, so without this the next
    pass could offer nothing and is skipped."""

    def add_timer(self, when: float, kind: str, ident: str, token: int = 0) -> None:
        """Schedule a timer (stale ones are filtered when they fire)."""
        self.timer_seq += 1
        heapq.heappush(self.timers, (when, self.timer_seq, kind, ident, token))

    def ringinuse(self, agent: AgentRec, queue: QueueConfig) -> bool:
        """Whether this agent may be rung from this queue while in a call."""
        return queue.ringinuse if agent.config.ringinuse is None else agent.config.ringinuse

    def wrapup_for(self, agent: AgentRec, queue: QueueConfig | None) -> float:
        """Wrap-up after a call from `queue` (the agent's own setting wins)."""
        if agent.config.wrapup_time is not None:
            return agent.config.wrapup_time
        return queue.wrapup_time if queue is not None else 0.0

    def can_take(self, agent: AgentRec, queue: QueueConfig, now: float) -> bool:
        """The agent could be offered a caller of `queue` now (ignores skills and penalties). In a call,
        or its device in use on a call clusterq did not make: only with ringinuse; device down: never."""
        if (agent.paused or not agent.node_up or agent.offer_id is not None or agent.wrapup_until > now
                or agent.device_down):
            return False
        return not (agent.calls or agent.device_in_use) or self.ringinuse(agent, queue)

    def refresh_idle(self, agent_id: str, now: float) -> None:
        """Recompute whether an agent belongs to the idle set after any change to it."""
        agent = self.agents.get(agent_id)
        ok = False
        if agent is not None:
            for m in agent.config.memberships:
                q = self.queues.get(m.queue)
                if q is not None and self.can_take(agent, q.config, now):
                    ok = True
                    break
        if ok:
            self.dispatch_dirty = True
            if agent_id not in self.idle:
                self.idle[agent_id] = None
                assert agent is not None
                if not agent.calls:
                    agent.available_since = now
        else:
            self.idle.pop(agent_id, None)

    def band(self, caller: CallerRec, now: float) -> tuple[int, int] | None:
        """The caller's allowed member penalty range from its active rule, None = no limit."""
        q = self.queues.get(caller.queue)
        if q is None:
            return None
        waited = now - caller.joined_at
        active: tuple[int, int] | None = None
        for rule in q.config.penalty_rules:
            if rule.after_seconds <= waited:
                active = (rule.min_penalty, rule.max_penalty)
            else:
                break
        return active

"""Configuration values of the queue engine: queues, agents, memberships, skills.

Everything here is an immutable value. The engine never mutates a config; a redefinition replaces it.
Semantics follow Asterisk app_queue (queues.conf / queuerules.conf) where the names match.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from enum import StrEnum

from clusterq_common.text import clip, clip_items

__all__ = [
    "ANNOUNCE_HOLDTIME_VALUES",
    "ANNOUNCE_POSITION_VALUES",
    "EMPTY_CONDITIONS",
    "EWT_METHODS",
    "NAME_RE",
    "AgentConfig",
    "CallerStatus",
    "DEVICE_STATES",
    "DURATIONS",
    "MAX_SECONDS",
    "MIN_PERIOD",
    "PERIODS",
    "Membership",
    "PenaltyRule",
    "QueueConfig",
    "Requirement",
    "Strategy",
    "device_of",
]

NAME_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}\Z")  # \Z: "$" would also match before a final newline
"""Queue names: safe as etcd key segments, channel variables and metric labels."""

EMPTY_CONDITIONS = frozenset({"paused", "penalty", "inuse", "ringing", "unavailable", "invalid", "unknown", "wrapup"})
"""Member conditions accepted by joinempty / leavewhenempty (app_queue's list)."""

DEVICE_STATES = frozenset(
    {"UNKNOWN", "NOT_INUSE", "INUSE", "BUSY", "INVALID", "UNAVAILABLE", "RINGING", "RINGINUSE", "ONHOLD"}
)
"""Asterisk's device state names as ARI gives them (an agent's state_interface is in one of them)."""

ANNOUNCE_POSITION_VALUES = frozenset({"yes", "no", "limit", "more"})
ANNOUNCE_HOLDTIME_VALUES = frozenset({"yes", "no", "once"})
EWT_METHODS = frozenset({"ewma", "erlang_c"})

MIN_PERIOD = 1.0
"""Least ring_timeout, and least non-zero retry / announcement frequency (app_queue's unit, the second).
These re-arm timers, caller after caller: a tiny value made the leader fire them again and again at
the same `now` (now + 1e-12 == now) and froze its loop. 0 keeps meaning "off" where it did."""
MAX_SECONDS = 31_536_000.0
"""Largest duration setting (a year): beyond, `now + value` loses all precision and nodes' integer
timeouts (an originate's) overflow."""
PERIODS = ("retry", "announce_frequency", "min_announce_frequency", "periodic_announce_frequency")
"""Durations that are 0 (off) or at least MIN_PERIOD."""
DURATIONS = ("ring_timeout", "wrapup_time", "max_wait", "service_level", *PERIODS)
"""Every duration setting of a queue, in seconds (0..MAX_SECONDS)."""


class Strategy(StrEnum):
    """How a waiting caller picks among the free eligible agents (app_queue strategies + longest-idle)."""

    RINGALL = "ringall"
    LEASTRECENT = "leastrecent"
    FEWESTCALLS = "fewestcalls"
    RANDOM = "random"
    RRMEMORY = "rrmemory"
    RRORDERED = "rrordered"
    LINEAR = "linear"
    WRANDOM = "wrandom"
    LONGEST_IDLE = "longest-idle"


class CallerStatus(StrEnum):
    """Why a caller returns to the dialplan (the node sets CLUSTERQ_STATUS to this value)."""

    TIMEOUT = "TIMEOUT"
    FULL = "FULL"
    JOINEMPTY = "JOINEMPTY"
    LEAVEEMPTY = "LEAVEEMPTY"
    JOINUNAVAIL = "JOINUNAVAIL"
    LEAVEUNAVAIL = "LEAVEUNAVAIL"
    UNKNOWN_QUEUE = "UNKNOWN_QUEUE"
    INVALID_ARGS = "INVALID_ARGS"
    EXITWITHKEY = "EXITWITHKEY"
    UNAVAILABLE = "UNAVAILABLE"
    NODE_LOST = "NODE_LOST"
    CONTINUE = "CONTINUE"
    QUEUE_DELETED = "QUEUE_DELETED"


@dataclass(frozen=True, slots=True)
class PenaltyRule:
    """After `after_seconds` of waiting, the caller may be offered members with penalty in [min, max].

    Like queuerules.conf `penaltychange`, absolute values only. The rule with the largest
    `after_seconds` not exceeding the caller's wait is active; before the first rule there is no limit.
    """

    after_seconds: float
    max_penalty: int
    min_penalty: int = 0


@dataclass(frozen=True, slots=True)
class QueueConfig:
    """One cluster-wide queue. Defaults follow app_queue's queues.conf defaults.

    Times are seconds; 0 disables a timer unless stated otherwise.
    """

    name: str
    strategy: Strategy = Strategy.RINGALL
    ring_timeout: float = 15.0
    """Seconds an offer rings before it is cancelled (reason "timeout") and counted as no answer."""
    retry: float = 0.0
    """Pause before the same caller is offered again after its offers all failed."""
    wrapup_time: float = 0.0
    """Agent rest after a call ends (an agent's own `wrapup_time` overrides it)."""
    maxlen: int = 0
    """Maximum callers in the queue (waiting or ringing); 0 = unlimited. Joining a full queue gives FULL."""
    max_wait: float = 0.0
    """A caller waiting this long leaves with TIMEOUT; 0 = never."""
    joinempty: frozenset[str] = frozenset()
    """Refuse to join when no member is usable, members in these conditions counting as unusable."""
    leavewhenempty: frozenset[str] = frozenset()
    """Waiting callers leave when no member is usable, same conditions as joinempty."""
    service_level: float = 60.0
    """Threshold (s) for the SL / SL2 statistics."""
    music_class: str = "default"
    announce_frequency: float = 0.0
    """Position / hold-time announcements every this many seconds; 0 = off."""
    min_announce_frequency: float = 15.0
    """Minimum gap between announcements; a changed position is announced once this has passed."""
    announce_position: str = "yes"
    announce_position_limit: int = 5
    announce_holdtime: str = "no"
    periodic_announce: tuple[str, ...] = ()
    periodic_announce_frequency: float = 0.0
    exit_context: str = ""
    ringinuse: bool = False
    autopause_after: int = 0
    """Pause an agent (reason "autopause") after this many consecutive unanswered offers; 0 = off."""
    penalty_rules: tuple[PenaltyRule, ...] = ()
    ewt_method: str = "ewma"
    weight: int = 0
    """A higher weight wins an agent that is a member of several queues."""
    announce_position_only_up: bool = False
    """app_queue's announce-position-only-up: announce only when the caller's position improved
    since its last announcement, or since its join (whose JoinAck told the node its position)."""

    def validate(self) -> None:
        """Raise ValueError naming the first bad field; a valid config returns None."""
        if not NAME_RE.match(self.name):
            raise ValueError(f"queue name {clip(self.name)} must match {NAME_RE.pattern}")
        if not isinstance(self.strategy, Strategy):
            raise ValueError(f"queue {self.name}: strategy {clip(self.strategy)} is not a Strategy")
        for field in DURATIONS:
            value = getattr(self, field)
            # NaN fails the range test too.
            if not isinstance(value, (int, float)) or not 0 <= value <= MAX_SECONDS:
                raise ValueError(f"queue {self.name}: {field} must be a number of seconds in 0..{MAX_SECONDS:.0f}, "
                                 f"got {clip(value)}")
            if field in PERIODS and 0 < value < MIN_PERIOD:
                raise ValueError(f"queue {self.name}: {field} must be 0 (off) or at least {MIN_PERIOD:g} s, "
                                 f"got {value!r}")
        if self.ring_timeout < MIN_PERIOD:
            raise ValueError(f"queue {self.name}: ring_timeout must be at least {MIN_PERIOD:g} s, "
                             f"got {self.ring_timeout!r}")
        for field in ("maxlen", "autopause_after", "announce_position_limit"):
            value = getattr(self, field)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ValueError(f"queue {self.name}: {field} must be an int >= 0, got {clip(value)}")
        if not isinstance(self.weight, int) or isinstance(self.weight, bool):
            raise ValueError(f"queue {self.name}: weight must be an int, got {clip(self.weight)}")
        for field in ("joinempty", "leavewhenempty"):
            unknown = set(getattr(self, field)) - EMPTY_CONDITIONS
            if unknown:
                raise ValueError(
                    f"queue {self.name}: {field} has unknown conditions {clip_items(sorted(map(str, unknown)))}; "
                    f"allowed: {sorted(EMPTY_CONDITIONS)}"
                )
        if self.announce_position not in ANNOUNCE_POSITION_VALUES:
            raise ValueError(
                f"queue {self.name}: announce_position must be one of "
                f"{sorted(ANNOUNCE_POSITION_VALUES)}, got {clip(self.announce_position)}"
            )
        if self.announce_holdtime not in ANNOUNCE_HOLDTIME_VALUES:
            raise ValueError(
                f"queue {self.name}: announce_holdtime must be one of "
                f"{sorted(ANNOUNCE_HOLDTIME_VALUES)}, got {clip(self.announce_holdtime)}"
            )
        if self.ewt_method not in EWT_METHODS:
            raise ValueError(
                f"queue {self.name}: ewt_method must be one of {sorted(EWT_METHODS)}, got {clip(self.ewt_method)}"
            )
        if self.periodic_announce and self.periodic_announce_frequency <= 0:
            raise ValueError(f"queue {self.name}: periodic_announce needs periodic_announce_frequency > 0")
        if any(not prompt for prompt in self.periodic_announce):
            raise ValueError(f"queue {self.name}: periodic_announce prompts must be non-empty")
        last = -1.0
        for rule in self.penalty_rules:
            if not 0 <= rule.after_seconds <= MAX_SECONDS:  # NaN too
                raise ValueError(f"queue {self.name}: penalty rule after_seconds must be in 0..{MAX_SECONDS:.0f}: "
                                 f"{rule!r}")
            if rule.after_seconds <= last:
                raise ValueError(f"queue {self.name}: penalty rules must be sorted by after_seconds: {rule!r}")
            if rule.min_penalty < 0 or rule.max_penalty < rule.min_penalty:
                raise ValueError(f"queue {self.name}: penalty rule needs 0 <= min <= max: {rule!r}")
            last = rule.after_seconds


@dataclass(frozen=True, slots=True)
class Membership:
    """An agent's membership of one queue. Lower penalty is tried first; higher weight wins across queues."""

    queue: str
    penalty: int = 0
    weight: int = 0


@dataclass(frozen=True, slots=True)
class Requirement:
    """A caller needs an agent whose skill `key` equals `value` ("*" = any value of that key)."""

    key: str
    value: str


@dataclass(frozen=True, slots=True)
class AgentConfig:
    """A logged-in agent: where to ring it and which queues it serves."""

    agent_id: str
    endpoint: str
    home_node: str
    memberships: tuple[Membership, ...]
    skills: tuple[tuple[str, str], ...] = ()
    ringinuse: bool | None = None
    """None = use the queue's ringinuse."""
    wrapup_time: float | None = None
    """None = use the queue's wrapup_time."""
    state_interface: str = ""
    """The device whose state tells whether the agent is busy (app_queue's state_interface), watched on
    its home node; "" = the endpoint's own device (see `device`)."""

    @property
    def device(self) -> str:
        """The device the engine follows: state_interface, else the endpoint's device (`device_of`)."""
        return self.state_interface or device_of(self.endpoint)

    def validate(self) -> None:
        """Raise ValueError for an unusable agent definition."""
        if not self.agent_id:
            raise ValueError("agent_id must be non-empty")
        if not self.endpoint:
            raise ValueError(f"agent {self.agent_id}: endpoint must be non-empty")
        if not self.home_node:
            raise ValueError(f"agent {self.agent_id}: home_node must be non-empty")
        seen: set[str] = set()
        for m in self.memberships:
            if m.queue in seen:
                raise ValueError(f"agent {self.agent_id}: duplicate membership of queue {m.queue}")
            if m.penalty < 0:
                raise ValueError(f"agent {self.agent_id}: negative penalty for queue {m.queue}")
            seen.add(m.queue)
        if self.wrapup_time is not None and (not math.isfinite(self.wrapup_time) or self.wrapup_time < 0):
            raise ValueError(f"agent {self.agent_id}: wrapup_time must be >= 0")

    def has_skills(self, requirements: tuple[Requirement, ...]) -> bool:
        """True when every requirement is met by one of this agent's skills."""
        for req in requirements:
            if not any(k == req.key and (req.value == "*" or v == req.value) for k, v in self.skills):
                return False
        return True


def device_of(endpoint: str) -> str:
    """The device name of a dial string, as Asterisk's device state knows it, or "" (no device: the
    agent is offered as if its device were always free, as before device state).

    A Local channel's "/options" are not part of its device ("Local/alice@agents/n" ->
    "Local/alice@agents"); for other technologies the device is TECH/resource, without a contact
    after it ("PJSIP/alice/sip:alice@10.0.0.1" -> "PJSIP/alice"). A resource with "@"
    ("PJSIP/1001@provider": a number through a trunk, whose device would be the trunk's) or a dial
    string of several ("&", ",") has no device of its own; state_interface can name one."""
    tech, sep, rest = endpoint.partition("/")
    if not sep or "&" in endpoint or "," in endpoint:
        return ""
    resource = rest.partition("/")[0]
    if tech.lower() == "local":
        return f"{tech}/{resource}"
    return "" if "@" in resource or not resource else f"{tech}/{resource}"

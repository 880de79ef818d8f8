"""Outputs of the queue engine: what the coordinator must tell the nodes, and read-only views."""

from __future__ import annotations

from dataclasses import dataclass

from coordinator.queue.fastinit import fast_init
from coordinator.queue.model import CallerStatus, Membership

__all__ = [
    "AgentStateChanged",
    "AgentView",
    "Announce",
    "CallerExit",
    "CallerView",
    "CancelOffer",
    "Connect",
    "Decision",
    "JoinAccepted",
    "JoinRejected",
    "Offer",
    "PeriodicAnnounce",
    "PriorityChanged",
    "QueueStats",
    "WatchDevices",
]


@fast_init
@dataclass(frozen=True, slots=True)
class JoinAccepted:
    """The caller is in the queue at `position` (1-based) with this arrival sequence."""

    call_id: str
    queue: str
    arrival_seq: int
    position: int
    estimated_wait: float


@fast_init
@dataclass(frozen=True, slots=True)
class JoinRejected:
    """The caller was not queued; the node returns it to the dialplan with `status`."""

    call_id: str
    status: CallerStatus
    message: str


@fast_init
@dataclass(frozen=True, slots=True)
class Offer:
    """Ring `endpoint` (on `agent_node`) for the caller parked on `caller_node`."""

    offer_id: str
    call_id: str
    queue: str
    agent_id: str
    endpoint: str
    agent_node: str
    caller_node: str
    ring_timeout: float
    caller_number: str
    caller_name: str


@fast_init
@dataclass(frozen=True, slots=True)
class Connect:
    """The offer was answered first: bridge the caller with the agent leg."""

    offer_id: str
    call_id: str
    agent_id: str
    caller_node: str
    agent_node: str


@fast_init
@dataclass(frozen=True, slots=True)
class CancelOffer:
    """Stop ringing this agent leg (reasons: "answered_elsewhere", "caller_left", "timeout", ...)."""

    offer_id: str
    call_id: str
    agent_id: str
    agent_node: str
    caller_node: str
    reason: str


@fast_init
@dataclass(frozen=True, slots=True)
class CallerExit:
    """The caller leaves the queue without (or after) an agent; the node resumes its dialplan."""

    call_id: str
    node_id: str
    status: CallerStatus
    wait_time: float
    position: int


@fast_init
@dataclass(frozen=True, slots=True)
class Announce:
    """Play the position and/or estimated wait to a waiting caller."""

    call_id: str
    node_id: str
    position: int
    estimated_wait: float
    say_position: bool
    say_holdtime: bool
    more_than: int = 0
    """announce_position "more" past the limit: "more than <more_than> callers" instead of the position."""


@fast_init
@dataclass(frozen=True, slots=True)
class PeriodicAnnounce:
    """Play a periodic prompt to a waiting caller."""

    call_id: str
    node_id: str
    prompt: str


@fast_init
@dataclass(frozen=True, slots=True)
class AgentStateChanged:
    """An agent's administrative state changed (login, logout, pause, autopause, node lost...)."""

    agent_id: str
    state: str
    reason: str


@fast_init
@dataclass(frozen=True, slots=True)
class WatchDevices:
    """Which devices `node_id` must watch and report (DeviceStateChanged): the devices of the agents
    homed there. replace = True: `watch` is the whole list (after the node (re)attaches); otherwise a
    change (an agent logged in, changed its device or home, or logged out)."""

    node_id: str
    watch: tuple[str, ...]
    unwatch: tuple[str, ...]
    replace: bool


@fast_init
@dataclass(frozen=True, slots=True)
class PriorityChanged:
    """A waiting caller's priority was changed (CallerPriorityChanged): its node keeps it on the channel,
    so that the caller keeps it when it is re-reported to a later leader."""

    call_id: str
    node_id: str
    priority: int


Decision = (
    JoinAccepted
    | JoinRejected
    | Offer
    | Connect
    | CancelOffer
    | CallerExit
    | Announce
    | PeriodicAnnounce
    | AgentStateChanged
    | WatchDevices
    | PriorityChanged
)
"""Every output of QueueEngine.apply."""


@fast_init
@dataclass(frozen=True, slots=True)
class QueueStats:
    """Per-queue statistics (app_queue QueueParams / QueueSummary equivalents).

    service_level_pct = answered within service_level / answered x 100.
    service_level2_pct = (answered within + abandoned within) / (answered + abandoned) x 100.
    asa = mean wait of answered callers. Percentages and means are 0.0 when nothing was counted.
    agents_available counts members whose state is "available" (not paused, in a call, ringing, in
    wrap-up or with a device in use, down or unavailable); agents_busy members in a call, ringing, or
    whose device is in use on a call clusterq did not make (with ringinuse such a member may still be
    offered, and counts as busy). Members in wrap-up, and members whose device is unavailable or
    invalid, are neither (unless in a call or ringing).
    """

    queue: str
    waiting: int
    longest_wait: float
    answered: int
    abandoned: int
    timed_out: int
    service_level_pct: float
    service_level2_pct: float
    asa: float
    avg_talk_time: float
    holdtime_ewma: float
    agents_logged_in: int
    agents_available: int
    agents_paused: int
    agents_busy: int


@fast_init
@dataclass(frozen=True, slots=True)
class AgentView:
    """An agent as the engine sees it.

    state is one of "available", "ringing", "busy" (in a call clusterq made), "wrapup", "paused",
    "inuse" (its device is in use on a call clusterq did not make), "unavailable" (home node lost, or
    device UNAVAILABLE / INVALID); the first that applies in the order unavailable, paused, busy,
    ringing, wrapup, inuse, available.
    """

    agent_id: str
    endpoint: str
    home_node: str
    state: str
    paused: bool
    pause_reason: str
    queues: tuple[str, ...]
    calls_taken: int
    offer_id: str | None
    call_ids: tuple[str, ...]
    memberships: tuple[Membership, ...] = ()
    skills: tuple[tuple[str, str], ...] = ()
    last_call_end: float = float("-inf")
    """Engine time (the `now` of events) when its last call ended; -inf before its first."""
    state_interface: str = ""
    """The device followed (the configured state_interface, else the endpoint's device)."""
    device_state: str = "UNKNOWN"
    """That device's state as its node last reported it."""


@fast_init
@dataclass(frozen=True, slots=True)
class CallerView:
    """A queued or connected caller. position is None once connected."""

    call_id: str
    queue: str
    node_id: str
    arrival_seq: int
    priority: int
    state: str
    joined_at: float
    position: int | None

"""Inputs of the queue engine. Every event is applied together with a `now` (seconds, monotonic-like)."""

from __future__ import annotations

from dataclasses import dataclass

from coordinator.queue.fastinit import fast_init
from coordinator.queue.model import AgentConfig, QueueConfig, Requirement

__all__ = [
    "AgentLoggedIn",
    "AgentLoggedOut",
    "AgentPaused",
    "AgentUnpaused",
    "CallAdopted",
    "CallEnded",
    "CallUnbridged",
    "CallerPriorityChanged",
    "CallerJoined",
    "CallerLeft",
    "DeviceStateChanged",
    "Event",
    "NodeAlive",
    "NodeAttached",
    "NodeDetached",
    "NodeLost",
    "OfferAnswered",
    "OfferFailed",
    "QueueDefined",
    "QueueDeleted",
    "Settling",
    "Tick",
]


@fast_init
@dataclass(frozen=True, slots=True)
class QueueDefined:
    """Create or replace a queue. Waiting callers stay; the new rules apply from now on."""

    config: QueueConfig


@fast_init
@dataclass(frozen=True, slots=True)
class QueueDeleted:
    """Remove a queue: its callers leave with QUEUE_DELETED and ringing offers are cancelled."""

    name: str


@fast_init
@dataclass(frozen=True, slots=True)
class AgentLoggedIn:
    """An agent logs in; a re-login replaces its config but keeps its calls, offer and pause."""

    agent: AgentConfig


@fast_init
@dataclass(frozen=True, slots=True)
class AgentLoggedOut:
    """An agent logs out; a ringing offer is cancelled, a connected call continues untracked."""

    agent_id: str


@fast_init
@dataclass(frozen=True, slots=True)
class AgentPaused:
    """Stop offering calls to an agent (a connected call continues)."""

    agent_id: str
    reason: str = ""


@fast_init
@dataclass(frozen=True, slots=True)
class AgentUnpaused:
    """Resume offering calls to an agent; also resets its autopause counter."""

    agent_id: str


@fast_init
@dataclass(frozen=True, slots=True)
class CallerJoined:
    """A caller enters a queue (or is re-reported to a new leader with its original arrival_seq)."""

    call_id: str
    queue: str
    node_id: str
    priority: int = 0
    position: int = 0
    """0 = none; P >= 1 = rank just before the caller now at position P within the same priority band."""
    requirements: tuple[Requirement, ...] = ()
    caller_number: str = ""
    caller_name: str = ""
    arrival_seq: int | None = None
    """None: the engine assigns one. An int: kept, and the engine counter moves past it (the leader
    allocates sequences itself so that they keep growing across leaders)."""
    joined_at: float | None = None
    """The original join time of a re-report; None = now."""
    re_report: bool | None = None
    """True: a caller re-reported to a new leader (admission checks and position overrides are not
    applied again). None (default): a re-report exactly when arrival_seq is given."""
    original_position: int = 0
    """A re-report's position at its first join (0 = not known), for queue_log's origposition."""


@fast_init
@dataclass(frozen=True, slots=True)
class CallerLeft:
    """A waiting or ringing caller is gone: reason "hangup" (counted as abandoned, like anything not
    below), "timeout" (the Stasis timeout= argument: counted as timed out), "exitkey" (neither)."""

    call_id: str
    reason: str
    key: str = ""
    """The exit key pressed (reason "exitkey"), for queue_log's EXITWITHKEY."""


@fast_init
@dataclass(frozen=True, slots=True)
class OfferAnswered:
    """The agent leg of an offer answered; the first answer for a caller wins."""

    offer_id: str


@fast_init
@dataclass(frozen=True, slots=True)
class OfferFailed:
    """The agent leg of an offer failed: "noanswer", "busy", "unavailable" or "failed"."""

    offer_id: str
    reason: str


@fast_init
@dataclass(frozen=True, slots=True)
class CallAdopted:
    """A call connected under an earlier leader, re-reported by a node: its agent is busy with it
    until its CallEnded (so a new leader never offers an agent who is still talking)."""

    call_id: str
    queue: str
    node_id: str
    agent_id: str
    offer_id: str = ""
    waited: float = 0.0
    """Seconds since the caller joined (0 = not known); this and the next two are for queue_log."""
    connected_for: float = 0.0
    """Seconds since it was bridged with its agent (0 = not known)."""
    original_position: int = 0
    """Its position at its first join (0 = not known)."""


@fast_init
@dataclass(frozen=True, slots=True)
class CallEnded:
    """A connected call ended; the agent enters wrap-up.

    offer_id names the connected offer that ended: a CallEnded of an earlier offer of the same caller
    (its cross-node path failed, the caller was offered again) arrives late and is ignored. Empty:
    whichever call the caller is in (adopted calls may not know their offer)."""

    call_id: str
    agent_hung_up: bool
    offer_id: str = ""


@fast_init
@dataclass(frozen=True, slots=True)
class CallUnbridged:
    """A caller held as connected is reported waiting, with no offer, by its node's Register: its call
    failed there before the bridge (no trunk leg came, the bridge was refused) and the AgentLegFailed
    was lost or, for a call adopted from an earlier leader, not applicable. Its offer is cancelled,
    its agent is free again (no call counted, no wrap-up), and its record goes: the runtime re-joins
    the caller with its sequence."""

    call_id: str


@fast_init
@dataclass(frozen=True, slots=True)
class NodeLost:
    """A node is gone: its callers leave with NODE_LOST, its agents become unavailable."""

    node_id: str


@fast_init
@dataclass(frozen=True, slots=True)
class NodeDetached:
    """A node's stream is down (it may come back within the node TTL, else NodeLost follows): no new
    offer involves it, since it could not receive one; what it already rings goes on."""

    node_id: str


@fast_init
@dataclass(frozen=True, slots=True)
class NodeAttached:
    """A node's stream is (re)attached and its re-report of calls and legs follows, then NodeAlive:
    meanwhile it may re-join its callers (it is no longer lost) but, as while detached, nothing is
    offered to it or for it. Offered at once, an agent it still has in a call (freed by NodeLost, or
    not yet known to a new leader) was rung for a second caller before the re-report said it talks."""

    node_id: str


@fast_init
@dataclass(frozen=True, slots=True)
class NodeAlive:
    """A lost or detached node is back (after its re-report): agents homed there are available again."""

    node_id: str


@fast_init
@dataclass(frozen=True, slots=True)
class DeviceStateChanged:
    """A node reports the state of a device it watches (see decisions.WatchDevices): it applies to the
    agents homed on that node whose state_interface is that device (device names are per node).

    state is Asterisk's name: in use (INUSE, BUSY, RINGING, RINGINUSE, ONHOLD) = offered only with
    ringinuse; UNAVAILABLE or INVALID = never offered; NOT_INUSE or UNKNOWN (or any other) = available."""

    node_id: str
    device: str
    state: str


@fast_init
@dataclass(frozen=True, slots=True)
class CallerPriorityChanged:
    """An operator changes a waiting caller's priority (app_queue's `queue priority caller`, AMI
    QueueChangePriorityCaller): it moves within its queue's line as if it had joined with it, keeping
    its arrival order among callers of that priority. A connected caller is not changed."""

    call_id: str
    priority: int


@fast_init
@dataclass(frozen=True, slots=True)
class Settling:
    """A new leader's settle (active) or its end. While it settles, the nodes re-report their callers
    and legs and their device states, and the leader knows its agents (loaded first) but nothing is
    decided from what it does not know yet: no offer (a lower-ranked caller on a node that re-reports
    first would be offered before a higher-ranked one still to come) and no leavewhenempty exit (an
    agent of a node still to re-attach counts as unavailable). At its end both run at once."""

    active: bool


@fast_init
@dataclass(frozen=True, slots=True)
class Tick:
    """No news; only timers run (ring timeouts, wrap-up ends, max wait, penalty widening, announcements)."""


Event = (
    QueueDefined
    | QueueDeleted
    | AgentLoggedIn
    | AgentLoggedOut
    | AgentPaused
    | AgentUnpaused
    | CallerJoined
    | CallerLeft
    | OfferAnswered
    | OfferFailed
    | CallAdopted
    | CallEnded
    | CallUnbridged
    | NodeLost
    | NodeDetached
    | NodeAttached
    | NodeAlive
    | DeviceStateChanged
    | Settling
    | CallerPriorityChanged
    | Tick
)
"""Every input of QueueEngine.apply."""

"""Pure conversion between node-stream protobuf messages and queue-engine values.

Validation happens here, at the edge: a malformed event becomes a `BadNodeEvent` carrying a
message, never an exception deep in the engine.
"""

from __future__ import annotations

from dataclasses import dataclass

from clusterq_common.dialplan import MAX_PRIORITY
from clusterq_proto.v1 import common_pb2, node_pb2
from coordinator.config import NAME_RE
from coordinator.queue import (
    CallAdopted,
    CallEnded,
    CallerJoined,
    CallerLeft,
    CallerStatus,
    Decision,
    DeviceStateChanged,
    Event,
    OfferAnswered,
    OfferFailed,
    Requirement,
)
from coordinator.queue import decisions as d
from coordinator.queue.model import DEVICE_STATES

MAX_ID_LEN = 128
MAX_TEXT_LEN = 256
MAX_REQUIREMENTS = 16
MAX_WAITED = 86_400.0  # seconds a (re-)reported caller may say it has waited: one day
LEFT_REASONS = frozenset({"hangup", "exitkey", "timeout", "grace"})
FAIL_REASONS = frozenset({"noanswer", "busy", "unavailable", "failed", "cancelled"})


@dataclass(frozen=True)
class BadNodeEvent:
    """A node event that failed validation; `call_id` is set when a caller must be rejected."""

    message: str
    call_id: str = ""


def _check_id(value: str, what: str) -> str | None:
    if not value:
        return f"{what} is empty"
    if len(value) > MAX_ID_LEN:
        return f"{what} longer than {MAX_ID_LEN} characters"
    return None


def joined_event(
    msg: node_pb2.CallJoined, node_id: str, arrival_seq: int, now: float, re_report: bool = False
) -> CallerJoined | BadNodeEvent:
    """Validate a CallJoined and build the engine event (arrival_seq assigned by the caller; the
    caller joined `msg.waited` seconds before `now` on the leader's clock)."""
    # Each protobuf field is read once: every read crosses into the protobuf runtime.
    call_id = msg.call_id
    if err := _check_id(call_id, "call_id"):
        return BadNodeEvent(err)
    queue = msg.queue
    if queue not in _valid_queue_names:
        if not NAME_RE.match(queue):
            return BadNodeEvent(f"invalid queue name {queue[:70]!r}", call_id)
        if len(_valid_queue_names) < 10_000:  # bounded: names come from the network
            _valid_queue_names.add(queue)
    reqs = msg.requirements
    requirements: tuple[Requirement, ...] = ()
    if reqs:
        if len(reqs) > MAX_REQUIREMENTS:
            return BadNodeEvent(f"more than {MAX_REQUIREMENTS} skill requirements", call_id)
        for r in reqs:
            if not NAME_RE.match(r.key) or not r.value or len(r.value) > 64:
                return BadNodeEvent(f"invalid skill requirement {r.key[:64]!r}", call_id)
        requirements = tuple(Requirement(r.key, r.value) for r in reqs)
    number, name = msg.caller_number, msg.caller_name
    if len(number) > MAX_TEXT_LEN or len(name) > MAX_TEXT_LEN:
        return BadNodeEvent("caller id too long", call_id)
    priority = msg.priority
    if not -MAX_PRIORITY <= priority <= MAX_PRIORITY:
        return BadNodeEvent("priority out of range", call_id)
    waited = msg.waited
    # Also false for NaN; an infinite or huge wait would reach the engine's and queue_log's arithmetic.
    if not 0.0 <= waited <= MAX_WAITED:
        return BadNodeEvent(f"waited must be 0..{MAX_WAITED:.0f} s, got {waited!r}", call_id)
    # Read only for re-reports: every read of a protobuf field costs, and a first join has none.
    return CallerJoined(call_id, queue, node_id, priority, msg.position, requirements, number, name, arrival_seq,
                        now - waited, re_report, msg.original_position if re_report else 0)


def adopted_call_error(snap: node_pb2.CallSnapshot) -> str | None:
    """Why a re-reported connected call cannot be adopted (None: it can)."""
    j = snap.joined
    if err := _check_id(j.call_id, "call_id"):
        return err
    if not NAME_RE.match(j.queue):
        return f"call {j.call_id}: invalid queue name {j.queue[:70]!r}"
    if not NAME_RE.match(snap.agent_id):
        return f"call {j.call_id}: invalid agent_id {snap.agent_id[:70]!r}"
    if len(snap.offer_id) > MAX_ID_LEN:
        return f"call {j.call_id}: offer_id longer than {MAX_ID_LEN} characters"
    return None


def adopted_event(snap: node_pb2.CallSnapshot, node_id: str) -> CallAdopted:
    """The engine event of a re-reported connected call (checked with `adopted_call_error` first).
    Its durations only feed queue_log: one out of range (NaN, negative, over MAX_WAITED, a call
    longer than the wait) counts as not known rather than refusing the call."""
    j = snap.joined
    waited, connected_for = j.waited, snap.connected_for
    if not 0.0 <= waited <= MAX_WAITED:
        waited = 0.0
    if not 0.0 <= connected_for <= waited:
        connected_for = 0.0
    return CallAdopted(j.call_id, j.queue, node_id, snap.agent_id, snap.offer_id, waited, connected_for,
                       j.original_position)


def agent_leg_error(leg: node_pb2.AgentLegSnapshot) -> str | None:
    """Why a re-reported agent leg is unusable (None: it is fine)."""
    if err := _check_id(leg.offer_id, "offer_id") or _check_id(leg.call_id, "call_id"):
        return err
    if not NAME_RE.match(leg.agent_id):
        return f"leg {leg.offer_id}: invalid agent_id {leg.agent_id[:70]!r}"
    if leg.caller_node and not NAME_RE.match(leg.caller_node):
        return f"leg {leg.offer_id}: invalid caller_node {leg.caller_node[:70]!r}"
    return None


# Queue names already checked against NAME_RE (a regex match per join is measurable).
_valid_queue_names: set[str] = set()


EXIT_KEYS = "0123456789*#ABCD"
"""DTMF keys a caller can exit with (anything else reported is logged as no key)."""


def device_event(ds: node_pb2.DeviceStateChanged, node_id: str) -> DeviceStateChanged | BadNodeEvent:
    """Validate a node's device state report (an event, or one of its Register's devices); a state
    name Asterisk may add later counts as UNKNOWN (available, as app_queue treats it)."""
    device = ds.device
    if not device or len(device) > MAX_TEXT_LEN:
        return BadNodeEvent(f"device state: device is empty or longer than {MAX_TEXT_LEN} characters")
    if not node_id:
        return BadNodeEvent(f"device state of {device[:70]!r} from no known node")
    state = ds.state
    return DeviceStateChanged(node_id, device, state if state in DEVICE_STATES else "UNKNOWN")


def simple_event(ev: node_pb2.NodeEvent, node_id: str = "") -> Event | BadNodeEvent | None:
    """Convert every node event except call_joined (from the node `node_id`); None for informational events."""
    return convert_event(ev, ev.WhichOneof("event"), node_id)


def convert_event(ev: node_pb2.NodeEvent, kind: str | None, node_id: str = "") -> Event | BadNodeEvent | None:
    """`simple_event` for a caller that already asked the event which `kind` it is.

    A device state names a device of the node whose stream it came on (`node_id`): device names are
    per node. A state name Asterisk may add later (or a node bug) counts as UNKNOWN, as Asterisk's own
    "cannot tell": the agent stays offerable as without device state, and a state reported before is
    not left standing (refusing the report would keep, say, INUSE forever)."""
    if kind == "call_left":
        m = ev.call_left
        call_id = m.call_id
        if not call_id or len(call_id) > MAX_ID_LEN:
            return BadNodeEvent(_check_id(call_id, "call_id") or "")
        reason = m.reason
        key = m.key
        return CallerLeft(call_id, reason if reason in LEFT_REASONS else "hangup",
                          key if len(key) == 1 and key in EXIT_KEYS else "")
    if kind == "agent_leg_answered":
        offer_id = ev.agent_leg_answered.offer_id
        if not offer_id or len(offer_id) > MAX_ID_LEN:
            return BadNodeEvent(_check_id(offer_id, "offer_id") or "")
        return OfferAnswered(offer_id)
    if kind == "call_ended":
        c = ev.call_ended
        call_id = c.call_id
        if not call_id or len(call_id) > MAX_ID_LEN:
            return BadNodeEvent(_check_id(call_id, "call_id") or "")
        offer_id = c.offer_id
        if len(offer_id) > MAX_ID_LEN:
            return BadNodeEvent(f"offer_id longer than {MAX_ID_LEN} characters")
        return CallEnded(call_id, c.agent_hung_up, offer_id)
    if kind == "agent_leg_failed":
        f = ev.agent_leg_failed
        offer_id = f.offer_id
        if not offer_id or len(offer_id) > MAX_ID_LEN:
            return BadNodeEvent(_check_id(offer_id, "offer_id") or "")
        reason = f.reason
        return OfferFailed(offer_id, reason if reason in FAIL_REASONS else "failed")
    if kind == "device_state_changed":
        return device_event(ev.device_state_changed, node_id)
    if kind == "digit_pressed":
        return None
    return BadNodeEvent(f"unknown or empty node event {kind!r}")


_STATUS_PB: dict[CallerStatus, common_pb2.CallerStatus.ValueType] = {
    s: common_pb2.CallerStatus.Value(f"CALLER_STATUS_{s.name}") for s in CallerStatus
}


def status_pb(status: CallerStatus) -> common_pb2.CallerStatus.ValueType:
    """Map the engine's CallerStatus to the proto enum (same names, CALLER_STATUS_ prefix)."""
    return _STATUS_PB[status]


def fill_decision(out: node_pb2.Decision, dec: Decision) -> bool:
    """Write one engine decision into a (stamped) node-facing message; False: not for nodes.

    Fields are assigned in place (no intermediate messages): this runs once per decision.
    """
    if type(dec) is d.JoinAccepted:
        m = out.join_ack
        m.call_id, m.arrival_seq, m.position, m.estimated_wait = (
            dec.call_id, dec.arrival_seq, dec.position, dec.estimated_wait)
    elif type(dec) is d.Offer:
        o = out.offer
        o.offer_id, o.call_id, o.queue, o.agent_id, o.endpoint = (
            dec.offer_id, dec.call_id, dec.queue, dec.agent_id, dec.endpoint)
        o.agent_node, o.caller_node, o.ring_timeout, o.caller_number, o.caller_name = (
            dec.agent_node, dec.caller_node, dec.ring_timeout, dec.caller_number, dec.caller_name)
    elif type(dec) is d.Connect:
        c = out.connect
        c.offer_id, c.call_id, c.agent_id, c.caller_node, c.agent_node = (
            dec.offer_id, dec.call_id, dec.agent_id, dec.caller_node, dec.agent_node)
    elif type(dec) is d.CancelOffer:
        x = out.cancel_offer
        x.offer_id, x.call_id, x.reason = dec.offer_id, dec.call_id, dec.reason
    elif type(dec) is d.JoinRejected:
        r = out.join_reject
        r.call_id, r.status, r.message = dec.call_id, _STATUS_PB[dec.status], dec.message
    elif type(dec) is d.CallerExit:
        e = out.continue_in_dialplan
        e.call_id, e.status, e.wait_time, e.position = dec.call_id, _STATUS_PB[dec.status], dec.wait_time, dec.position
    elif type(dec) is d.Announce:
        a = out.announce
        a.call_id, a.position, a.estimated_wait, a.say_position, a.say_holdtime, a.more_than = (
            dec.call_id, dec.position, dec.estimated_wait, dec.say_position, dec.say_holdtime, dec.more_than)
    elif type(dec) is d.PeriodicAnnounce:
        out.periodic_announce.call_id, out.periodic_announce.prompt = dec.call_id, dec.prompt
    elif type(dec) is d.WatchDevices:
        w = out.watch_devices
        w.SetInParent()  # an empty replacing list is a decision too (watch nothing)
        w.watch.extend(dec.watch)
        w.unwatch.extend(dec.unwatch)
        w.replace = dec.replace
    elif type(dec) is d.PriorityChanged:
        out.caller_priority.call_id, out.caller_priority.priority = dec.call_id, dec.priority
    else:
        return False
    return True


def decision_pb(dec: Decision, epoch: int, seq: int) -> node_pb2.Decision | None:
    """One engine decision as a new stamped node-facing message (None: not for nodes)."""
    out = node_pb2.Decision()
    out.stamp.epoch = epoch
    out.stamp.seq = seq
    return out if fill_decision(out, dec) else None

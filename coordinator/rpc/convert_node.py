"""Pure conversion between node-stream protobuf messages and queue-engine values.

Validation happens here, at the edge: a malformed event becomes a `BadNodeEvent` carrying a
message, never an exception deep in the engine.
"""

from __future__ import annotations

from dataclasses import dataclass

from clusterq_proto.v1 import common_pb2, node_pb2
from coordinator.config import NAME_RE
from coordinator.queue import (
    CallEnded,
    CallerJoined,
    CallerLeft,
    CallerStatus,
    Decision,
    Event,
    OfferAnswered,
    OfferFailed,
    Requirement,
)
from coordinator.queue import decisions as d

MAX_ID_LEN = 128
MAX_TEXT_LEN = 256
MAX_REQUIREMENTS = 16
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
    msg: node_pb2.CallJoined, node_id: str, arrival_seq: int, joined_at: float, re_report: bool = False
) -> CallerJoined | BadNodeEvent:
    """Validate a CallJoined and build the engine event (arrival_seq assigned by the caller)."""
    if err := _check_id(msg.call_id, "call_id"):
        return BadNodeEvent(err)
    if not NAME_RE.match(msg.queue):
        return BadNodeEvent(f"invalid queue name {msg.queue[:70]!r}", msg.call_id)
    if len(msg.requirements) > MAX_REQUIREMENTS:
        return BadNodeEvent(f"more than {MAX_REQUIREMENTS} skill requirements", msg.call_id)
    for r in msg.requirements:
        if not NAME_RE.match(r.key) or not r.value or len(r.value) > 64:
            return BadNodeEvent(f"invalid skill requirement {r.key[:64]!r}", msg.call_id)
    if len(msg.caller_number) > MAX_TEXT_LEN or len(msg.caller_name) > MAX_TEXT_LEN:
        return BadNodeEvent("caller id too long", msg.call_id)
    if not -1_000_000 <= msg.priority <= 1_000_000:
        return BadNodeEvent("priority out of range", msg.call_id)
    return CallerJoined(
        call_id=msg.call_id,
        queue=msg.queue,
        node_id=node_id,
        priority=msg.priority,
        position=msg.position,
        requirements=tuple(Requirement(r.key, r.value) for r in msg.requirements),
        caller_number=msg.caller_number,
        caller_name=msg.caller_name,
        arrival_seq=arrival_seq,
        joined_at=joined_at,
        re_report=re_report,
    )


def simple_event(ev: node_pb2.NodeEvent) -> Event | BadNodeEvent | None:
    """Convert every node event except call_joined; None for informational events."""
    kind = ev.WhichOneof("event")
    if kind == "call_left":
        if err := _check_id(ev.call_left.call_id, "call_id"):
            return BadNodeEvent(err)
        reason = ev.call_left.reason if ev.call_left.reason in LEFT_REASONS else "hangup"
        return CallerLeft(call_id=ev.call_left.call_id, reason=reason)
    if kind == "agent_leg_answered":
        if err := _check_id(ev.agent_leg_answered.offer_id, "offer_id"):
            return BadNodeEvent(err)
        return OfferAnswered(offer_id=ev.agent_leg_answered.offer_id)
    if kind == "agent_leg_failed":
        if err := _check_id(ev.agent_leg_failed.offer_id, "offer_id"):
            return BadNodeEvent(err)
        reason = ev.agent_leg_failed.reason if ev.agent_leg_failed.reason in FAIL_REASONS else "failed"
        return OfferFailed(offer_id=ev.agent_leg_failed.offer_id, reason=reason)
    if kind == "call_ended":
        if err := _check_id(ev.call_ended.call_id, "call_id"):
            return BadNodeEvent(err)
        return CallEnded(call_id=ev.call_ended.call_id, agent_hung_up=ev.call_ended.agent_hung_up)
    if kind == "digit_pressed":
        return None
    return BadNodeEvent(f"unknown or empty node event {kind!r}")


def status_pb(status: CallerStatus) -> common_pb2.CallerStatus.ValueType:
    """Map the engine's CallerStatus to the proto enum (same names, CALLER_STATUS_ prefix)."""
    return common_pb2.CallerStatus.Value(f"CALLER_STATUS_{status.name}")


def decision_pb(dec: Decision, epoch: int, seq: int) -> node_pb2.Decision | None:
    """Convert one engine decision into the node-facing message (None: not for nodes).

    Fields are assigned in place (no intermediate messages): this runs once per decision.
    """
    out = node_pb2.Decision()
    out.stamp.epoch = epoch
    out.stamp.seq = seq
    if isinstance(dec, d.JoinAccepted):
        m = out.join_ack
        m.call_id, m.arrival_seq, m.position, m.estimated_wait = (
            dec.call_id, dec.arrival_seq, dec.position, dec.estimated_wait)
    elif isinstance(dec, d.Offer):
        o = out.offer
        o.offer_id, o.call_id, o.queue, o.agent_id, o.endpoint = (
            dec.offer_id, dec.call_id, dec.queue, dec.agent_id, dec.endpoint)
        o.agent_node, o.caller_node, o.ring_timeout, o.caller_number, o.caller_name = (
            dec.agent_node, dec.caller_node, dec.ring_timeout, dec.caller_number, dec.caller_name)
    elif isinstance(dec, d.Connect):
        c = out.connect
        c.offer_id, c.call_id, c.agent_id, c.caller_node, c.agent_node = (
            dec.offer_id, dec.call_id, dec.agent_id, dec.caller_node, dec.agent_node)
    elif isinstance(dec, d.CancelOffer):
        x = out.cancel_offer
        x.offer_id, x.call_id, x.reason = dec.offer_id, dec.call_id, dec.reason
    elif isinstance(dec, d.JoinRejected):
        r = out.join_reject
        r.call_id, r.status, r.message = dec.call_id, status_pb(dec.status), dec.message
    elif isinstance(dec, d.CallerExit):
        e = out.continue_in_dialplan
        e.call_id, e.status, e.wait_time, e.position = dec.call_id, status_pb(dec.status), dec.wait_time, dec.position
    elif isinstance(dec, d.Announce):
        a = out.announce
        a.call_id, a.position, a.estimated_wait, a.say_position, a.say_holdtime = (
            dec.call_id, dec.position, dec.estimated_wait, dec.say_position, dec.say_holdtime)
    elif isinstance(dec, d.PeriodicAnnounce):
        out.periodic_announce.call_id, out.periodic_announce.prompt = dec.call_id, dec.prompt
    else:
        return None
    return out

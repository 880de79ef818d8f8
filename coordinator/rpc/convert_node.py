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


def decision_pb(dec: Decision, stamp: common_pb2.Stamp) -> node_pb2.Decision | None:
    """Convert one engine decision into the node-facing message (None: not for nodes)."""
    out = node_pb2.Decision(stamp=stamp)
    if isinstance(dec, d.JoinAccepted):
        out.join_ack.CopyFrom(node_pb2.JoinAck(
            call_id=dec.call_id, arrival_seq=dec.arrival_seq, position=dec.position,
            estimated_wait=dec.estimated_wait))
    elif isinstance(dec, d.JoinRejected):
        out.join_reject.CopyFrom(node_pb2.JoinReject(
            call_id=dec.call_id, status=status_pb(dec.status), message=dec.message))
    elif isinstance(dec, d.Offer):
        out.offer.CopyFrom(node_pb2.Offer(
            offer_id=dec.offer_id, call_id=dec.call_id, queue=dec.queue, agent_id=dec.agent_id,
            endpoint=dec.endpoint, agent_node=dec.agent_node, caller_node=dec.caller_node,
            ring_timeout=dec.ring_timeout, caller_number=dec.caller_number, caller_name=dec.caller_name))
    elif isinstance(dec, d.Connect):
        out.connect.CopyFrom(node_pb2.Connect(
            offer_id=dec.offer_id, call_id=dec.call_id, agent_id=dec.agent_id,
            caller_node=dec.caller_node, agent_node=dec.agent_node))
    elif isinstance(dec, d.CancelOffer):
        out.cancel_offer.CopyFrom(node_pb2.CancelOffer(
            offer_id=dec.offer_id, call_id=dec.call_id, reason=dec.reason))
    elif isinstance(dec, d.CallerExit):
        out.continue_in_dialplan.CopyFrom(node_pb2.ContinueInDialplan(
            call_id=dec.call_id, status=status_pb(dec.status), wait_time=dec.wait_time,
            position=dec.position))
    elif isinstance(dec, d.Announce):
        out.announce.CopyFrom(node_pb2.Announce(
            call_id=dec.call_id, position=dec.position, estimated_wait=dec.estimated_wait,
            say_position=dec.say_position, say_holdtime=dec.say_holdtime))
    elif isinstance(dec, d.PeriodicAnnounce):
        out.periodic_announce.CopyFrom(node_pb2.PeriodicAnnounce(call_id=dec.call_id, prompt=dec.prompt))
    else:
        return None
    return out

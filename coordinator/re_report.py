"""A node's Register applied to the leader's runtime: the node's whole truth after it (re)connects.

Callers with a sequence come back in sequence order, those that joined while no leader was reachable
in their node join order; calls held for the node but absent from the snapshot ended meanwhile;
calls connected under an earlier leader are adopted (their agents stay busy), and the node's device
states applied (its agents on direct calls stay busy); what went with the old
stream is repaired: a lost JoinAck or Connect is sent again, a lost answer applied, a lost cancel
re-sent, a call that failed on the node (connected here, waiting there) ends and its caller queues
again. LeaderRuntime.attach runs this between NodeAttached and NodeAlive.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from clusterq_proto.v1 import node_pb2
from coordinator.node_link import NodeLink
from coordinator.queue import CallAdopted, CallEnded, CallerLeft, CallUnbridged, OfferAnswered
from coordinator.queue import decisions as d
from coordinator.queue.devices import MAX_WATCH_LIST
from coordinator.rpc.convert_node import BadNodeEvent, adopted_call_error, adopted_event, agent_leg_error, device_event

if TYPE_CHECKING:
    from coordinator.runtime import LeaderRuntime

__all__ = ["MAX_RESYNC_LEGS", "apply_register"]

log = logging.getLogger(__name__)

MAX_RESYNC_LEGS = 100_000  # agent legs of one Register looked at (like node_service's MAX_RESYNC_CALLS)


def apply_register(rt: LeaderRuntime, link: NodeLink, reg: node_pb2.Register) -> None:
    """Apply a node's Register (its re-report after (re)connecting): original arrival order is kept."""
    # Callers that already had a sequence go first in sequence order; callers that joined
    # while no leader was reachable follow in the order they joined their node.
    # The snapshot is the node's whole truth: a call held for it but absent ended while its stream
    # was down (its CallLeft / CallEnded went with the old stream). Left in place it would count in
    # every position told until an agent was offered it.
    bad: list[str] = []
    # Device states first: the node's agents become offerable at NodeAlive, right after this, and an
    # agent on a direct call must be known busy by then (the fresh reports come later).
    for ds in reg.devices[:MAX_WATCH_LIST]:
        event = device_event(ds, link.node_id)
        if isinstance(event, BadNodeEvent):
            bad.append(event.message)
        else:
            rt.apply(event)
    if len(reg.devices) > MAX_WATCH_LIST:
        bad.append(f"{len(reg.devices)} device states: only the first {MAX_WATCH_LIST} are used")
    present = {c.joined.call_id for c in reg.calls}
    for call_id, connected in rt.engine.calls_on_node(link.node_id):
        if call_id not in present:
            rt.apply(CallEnded(call_id, agent_hung_up=False) if connected else CallerLeft(call_id, "gone"))
    # A sequence no leader can have handed out (a node bug, or 2**64-1) would push every later
    # sequence, and the mark in etcd, past what JoinAck can carry: such a caller counts as fresh.
    plausible = rt.seqs.plausible
    known = sorted((c for c in reg.calls if plausible(c.arrival_seq)), key=lambda c: c.arrival_seq)
    fresh = sorted((c for c in reg.calls if not plausible(c.arrival_seq)), key=lambda c: c.joined.node_join_order)
    bogus = [c.arrival_seq for c in fresh if c.arrival_seq]
    if bogus:
        log.warning("node %s: %d re-reported arrival sequences at or above the reserved %d (e.g. %d) are "
                    "ignored", link.node_id, len(bogus), rt.seqs.reserved_until, bogus[0])
    for snap in known:
        rt.seqs.bump_above(snap.arrival_seq)
    for snap in reg.calls:
        if snap.state == "connected" and snap.agent_id:
            if err := adopted_call_error(snap):
                bad.append(err)
                continue
            held = rt.engine.caller(snap.joined.call_id)
            if held is not None and held.position is not None and snap.offer_id:
                # Waiting or ringing here, connecting there: the leader re-queued the caller after its
                # call failed (the agent's node reported it) and the CancelOffer went with the old
                # stream. Sent again: until it arrives the node ignores every new offer for it.
                rt.send(link.node_id, d.CancelOffer(snap.offer_id, held.call_id, snap.agent_id,
                                                    rt.engine.agent_home(snap.agent_id), link.node_id, "failed"))
                continue
            # A call connected under an earlier leader: its agent stays busy until it ends.
            rt.apply(adopted_event(snap, link.node_id))
    legs = []
    for leg in reg.agent_legs[:MAX_RESYNC_LEGS]:
        if err := agent_leg_error(leg):
            bad.append(err)
        else:
            legs.append(leg)
    if len(reg.agent_legs) > MAX_RESYNC_LEGS:
        bad.append(f"{len(reg.agent_legs)} agent legs: only the first {MAX_RESYNC_LEGS} are used")
    if bad:
        log.warning("node %s: %d unusable snapshot entries skipped, e.g. %s", link.node_id, len(bad), bad[0])
    for leg in legs:
        if leg.state == "connected" and rt.engine.caller(leg.call_id) is None:
            # The agent's node knows its agent is talking even when the caller's node re-reports
            # later (the queue is filled in then); with the caller's node known, losing that node
            # ends the call and frees the agent.
            rt.apply(CallAdopted(leg.call_id, "", leg.caller_node, leg.agent_id, leg.offer_id))
    # Offers whose agent leg this node reports answered or bridged: their calls did not fail.
    live_legs = {leg.offer_id for leg in legs if leg.state in ("answered", "connected")}
    for snaps, keep_seq in ((known, True), (fresh, False)):
        for snap in snaps:
            if snap.state == "connected":
                continue
            held = rt.engine.caller(snap.joined.call_id)
            if held is None:
                rt.join(link, snap.joined, snap.arrival_seq if keep_seq else None)
            elif held.node_id != link.node_id:
                continue
            elif held.position is None and not snap.offer_id and not _leg_alive(rt, held.call_id, live_legs):
                # Connected here, plainly waiting there: the call failed on the node (no trunk leg
                # came, the bridge failed) and its AgentLegFailed was lost or, for a call adopted
                # from an earlier leader, not applicable. The node is right: the offer is cancelled,
                # the agent is free, and the caller queues again with its sequence (left alone it
                # waited with music and was never offered again). A caller the node still sees
                # ringing (snap.offer_id) missed its Connect instead: sent again below.
                seq = snap.arrival_seq or held.arrival_seq
                rt.apply(CallUnbridged(held.call_id))
                rt.join(link, snap.joined, seq or None)
            if held is not None and held.position is not None and held.priority != snap.joined.priority:
                # An operator's priority change the node never got (its stream was down, or the
                # decision went with it): sent again, or the next leader ranks the caller by the old one.
                rt.send(link.node_id, d.PriorityChanged(held.call_id, link.node_id, held.priority))
            if held is not None and held.position is not None and held.arrival_seq != snap.arrival_seq:
                # Held here, but the node has not its sequence: the JoinAck went with the old
                # stream. Sent again (the engine answers a repeated join with it), or the caller
                # waits without music and, at the next leader change, loses its place.
                rt.repeat_join_ack(link, snap.joined, held.arrival_seq)
    _resend_lost(rt, link, reg, legs)


def _leg_alive(rt: LeaderRuntime, call_id: str, live_legs: set[str]) -> bool:
    """Whether the offer a caller is connected through has its agent leg alive on the reporting node
    (a reconnect reset the caller's ringing state: its Connect was lost, its call did not fail)."""
    connected = rt.engine.connected_offer(call_id)
    return connected is not None and connected[0] in live_legs


def _resend_lost(rt: LeaderRuntime, link: NodeLink, reg: node_pb2.Register,
                 legs: list[node_pb2.AgentLegSnapshot]) -> None:
    """What went with a node's old stream, seen in its snapshot: an agent's answer the leader
    never got is applied now; a Connect the node never got is sent again; a leg still ringing
    for an offer the leader no longer has (its CancelOffer was lost) is cancelled."""
    engine = rt.engine
    resent: set[str] = set()  # offers whose Connect went to this node again (once is enough)
    for leg in legs:
        status = engine.offer_status(leg.offer_id, leg.call_id)
        if leg.state in ("ringing", "answered") and not status:
            rt.send(link.node_id, d.CancelOffer(leg.offer_id, leg.call_id, leg.agent_id, link.node_id,
                                                 leg.caller_node, "gone"))
        elif leg.state == "answered" and status == "ringing":
            rt.apply(OfferAnswered(leg.offer_id))  # its Connect goes to the node with this step
            if engine.offer_status(leg.offer_id, leg.call_id) == "connected":
                resent.add(leg.offer_id)
        elif leg.state == "answered" and status == "connected":
            caller = engine.caller(leg.call_id)
            if caller is not None:
                rt.send(link.node_id, d.Connect(leg.offer_id, leg.call_id, leg.agent_id, caller.node_id,
                                                 link.node_id))
                resent.add(leg.offer_id)
    for snap in reg.calls:
        if snap.state == "connected" or not snap.offer_id:
            continue
        connected = engine.connected_offer(snap.joined.call_id)
        if connected is not None and connected[0] and connected[0] not in resent:
            # The caller's node missed the Connect (it still sees the caller ringing; with ringall,
            # maybe for another of its offers than the one answered): its agent's leg, or the trunk
            # leg from the agent's node, would wait for it in vain.
            offer_id, agent_id = connected
            rt.send(link.node_id, d.Connect(offer_id, snap.joined.call_id, agent_id, link.node_id,
                                             engine.agent_home(agent_id)))

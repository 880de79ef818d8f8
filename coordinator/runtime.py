"""The leader's runtime: node streams in, queue engine in the middle, decisions out.

Everything here runs on one asyncio loop and never awaits between applying an event to the
engine and routing its decisions, so the engine sees a strict order of events. Nothing on the
per-event path waits on etcd: durable writes (node registry, arrival-sequence reservations) are
fired off as background tasks.

Invariants:
- arrival sequences only grow, across leaders too: they are allocated from a block reserved in
  etcd by a fenced write before use (`SeqAllocator`);
- callers re-reported after a leader change keep the arrival sequence they were given;
- a node not attached for node_ttl is lost: its callers leave (NODE_LOST), offers involving it are
  cancelled, its agents become unavailable.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable

from clusterq_common.text import clip
from clusterq_proto.v1 import node_pb2
from coordinator.node_link import NodeLink
from coordinator.queue import (
    AgentLoggedIn,
    CallEnded,
    CallerJoined,
    CallerLeft,
    CallerStatus,
    Decision,
    Event,
    NodeAlive,
    NodeAttached,
    NodeDetached,
    NodeLost,
    OfferAnswered,
    OfferFailed,
    QueueConfig,
    QueueDefined,
    QueueDeleted,
    QueueEngine,
    Tick,
)
from coordinator.queue import decisions as d
from coordinator.queue_log import QueueLogBook
from coordinator.re_report import apply_register
from coordinator.rpc.convert_node import (
    BadNodeEvent,
    convert_event,
    joined_event,
)

log = logging.getLogger(__name__)

MAX_EVENTS_PER_BATCH = 1024


class NodeAlreadyConnected(Exception):
    """A second live stream for a node id that is already attached with another instance."""


class SeqAllocator:
    """Hands out arrival sequences from blocks reserved durably before they are used.

    Never past the reserved block: a sequence above the mark in etcd could be handed out again by
    the next leader. The refill starts at half the block, so running dry needs half a block of
    joins (50,000) while a reservation write is failing or pending; `take` then gives None and that
    join is refused (the caller goes back to the dialplan) until a refill succeeds.
    """

    def __init__(self, start: int, reserved_until: int, block: int,
                 reserve: Callable[[int], Awaitable[None]]) -> None:
        self.next = start
        self.reserved_until = reserved_until
        self._block = block
        self._reserve = reserve
        self._refilling: asyncio.Task[None] | None = None

    def take(self) -> int | None:
        """The next arrival sequence, None when the reserved block is used up; triggers a background
        refill at half the block (a failed refill is retried by the next take)."""
        seq = self.next
        if self.reserved_until - seq <= self._block // 2 and self._refilling is None:
            self._refilling = asyncio.ensure_future(self._refill())
        if seq >= self.reserved_until:
            return None
        self.next = seq + 1
        return seq

    def plausible(self, seq: int) -> bool:
        """Whether a re-reported sequence can have been handed out: every one was below a mark
        reserved in etcd before use, and this leader's block starts at or above the last mark."""
        return 0 < seq < self.reserved_until

    def bump_above(self, seq: int) -> None:
        """Never hand out a sequence at or below one seen in a re-report."""
        self.next = max(self.next, seq + 1)

    async def _refill(self) -> None:
        target = max(self.reserved_until, self.next) + self._block
        try:
            await self._reserve(target)
            self.reserved_until = target
        except Exception as exc:  # etcd down or fence lost: the next take() tries again
            log.error("reserving arrival sequences up to %d failed: %r", target, exc)
        finally:
            self._refilling = None


class LeaderRuntime:
    """Owns the engine while this replica leads; one instance per leadership term."""

    def __init__(self, engine: QueueEngine, epoch: int, clock: Callable[[], float],
                 seqs: SeqAllocator, node_ttl: float) -> None:
        self.engine = engine
        self.epoch = epoch
        self.clock = clock
        self.seqs = seqs
        self.node_ttl = node_ttl
        self.links: dict[str, NodeLink] = {}
        self.queues: dict[str, QueueConfig] = {}
        self._call_node: dict[str, str] = {}
        self._node_lost_at: dict[str, float] = {}
        self._wake = asyncio.Event()
        # When run_timers will wake next (inf: no deadline; -inf: it is running right now).
        self._planned_wake = -math.inf
        self.closed = False
        self.queue_log: QueueLogBook | None = None  # set by the replica when CLUSTERQ_QUEUE_LOG is given
        self.decisions_sent = 0
        self.events_applied = 0

    # ---- engine access -------------------------------------------------------------------
    def apply(self, event: Event) -> list[Decision]:
        """Apply one event now and route its decisions (the links wake their writers)."""
        if type(event) is AgentLoggedIn:
            self._expect_home(event.agent.home_node)
        decs = self._apply(event, self.clock())
        self._check_deadline()
        return decs

    def _apply(self, event: Event, now: float) -> list[Decision]:
        book = self.queue_log
        # queue_log's ABANDON carries the caller's position as it left: read before the engine drops it.
        left_at = self.engine.position(event.call_id) if book is not None and type(event) is CallerLeft else None
        decs = self.engine.apply(event, now)
        self.events_applied += 1
        if book is not None:
            book.record(event, decs, now, time.time(), left_at)
        if type(event) is QueueDefined:
            self.queues[event.config.name] = event.config
        elif type(event) is QueueDeleted:
            self.queues.pop(event.name, None)
        if decs:
            self._route(decs)
        return decs

    def _check_deadline(self) -> None:
        # Wake the timer task only when the engine now has an earlier deadline than it sleeps to.
        nd = self.engine.next_deadline()
        if nd is not None and nd < self._planned_wake:
            self._wake.set()

    def _route(self, decs: list[Decision]) -> None:
        links = self.links
        for dec in decs:
            if isinstance(dec, d.JoinAccepted):
                link = links.get(self._call_node.get(dec.call_id, ""))
                if link is not None:
                    link.push_join_accepted(dec, self.queues.get(dec.queue))
                    self.decisions_sent += 1
            elif isinstance(dec, (d.Offer, d.Connect, d.CancelOffer)):
                self.send(dec.agent_node, dec)
                if dec.caller_node != dec.agent_node:
                    self.send(dec.caller_node, dec)
            elif isinstance(dec, d.JoinRejected):
                self.send(self._call_node.get(dec.call_id, ""), dec)
            elif isinstance(dec, d.CallerExit):
                self.send(dec.node_id, dec)
            elif isinstance(dec, (d.Announce, d.PeriodicAnnounce, d.PriorityChanged)):
                self.send(dec.node_id, dec)
            elif isinstance(dec, d.WatchDevices):
                # Not attached: nothing to send; the whole list goes out when it attaches (NodeAlive).
                self.send(dec.node_id, dec)

    def send(self, node: str, dec: Decision) -> None:
        """Route one decision to a node's link (dropped when the node is not attached)."""
        link = self.links.get(node)
        if link is not None:
            link.push(dec)
            self.decisions_sent += 1

    # ---- node streams ----------------------------------------------------------------------
    def attach(self, node_id: str, instance_id: str, reg: node_pb2.Register | None = None) -> NodeLink:
        """Attach a node stream with the node's Register (None: one re-reporting nothing); a reconnect
        of the same instance replaces the old stream. The node's calls and legs are re-reported before
        its agents and callers can be offered again (NodeAttached ... NodeAlive, all in this one step):
        an agent still talking on it must be known busy before any offer is made. Raises what the
        re-report raises (ValueError, KeyError: the engine refused it), with the link detached."""
        old = self.links.get(node_id)
        if old is not None and not old.closed:
            if old.instance_id != instance_id:
                raise NodeAlreadyConnected(f"node {node_id!r} is already connected (instance {old.instance_id})")
            old.close()
        link = NodeLink(node_id, instance_id, self.epoch)
        self.links[node_id] = link
        self._node_lost_at.pop(node_id, None)
        try:
            self.apply(NodeAttached(node_id))
            apply_register(self, link, reg if reg is not None else node_pb2.Register(node_id=node_id,
                                                                                      instance_id=instance_id))
        except BaseException:
            self.detach(link)
            raise
        self.apply(NodeAlive(node_id))
        self._check_deadline()  # the re-reported callers' timers (max wait, announcements)
        return link

    def detach(self, link: NodeLink) -> None:
        """The stream ended: the node is lost unless it re-attaches within node_ttl."""
        link.close()
        if self.links.get(link.node_id) is link:
            del self.links[link.node_id]
            self._node_lost_at[link.node_id] = self.clock() + self.node_ttl
            # Nothing new is offered to it meanwhile: the decision could not reach it (an Offer
            # would ring nobody until its ring timeout, a Connect would strand the call).
            self.apply(NodeDetached(link.node_id))
            self._wake.set()

    def _expect_home(self, node_id: str) -> None:
        """An agent logs in on a node no stream of which is attached: its agents are not offered until
        the node attaches, and the node is lost if it never does within node_ttl (a mistyped node id
        was rung for ever, counted available, and kept joinempty / leavewhenempty from firing)."""
        if node_id not in self.links and not self.engine.node_lost(node_id):
            self.expect_node(node_id)

    def expect_node(self, node_id: str) -> None:
        """A node known from the registry: lost unless it attaches within node_ttl."""
        if node_id not in self.links:
            self._node_lost_at.setdefault(node_id, self.clock() + self.node_ttl)
            self.apply(NodeDetached(node_id))

    def handle_batch(self, link: NodeLink, batch: node_pb2.EventBatch) -> list[str]:
        """Apply a node's event batch in order; returns validation errors (logged by caller)."""
        errors: list[str] = []
        events = batch.events
        clock = self.clock
        # node_service refuses a longer batch whole; the cut bounds a loop step for in-process callers too.
        for ev in events[:MAX_EVENTS_PER_BATCH] if len(events) > MAX_EVENTS_PER_BATCH else events:
            kind = ev.WhichOneof("event")
            if kind == "call_joined":
                err = self.join(link, ev.call_joined, None)
                if err:
                    errors.append(err)
                continue
            conv = convert_event(ev, kind, link.node_id)
            if isinstance(conv, BadNodeEvent):
                errors.append(conv.message)
            elif conv is not None:
                if (foreign := self._foreign(conv, link.node_id)) is not None:
                    errors.append(foreign)
                    continue
                self._apply(conv, clock())
        # Once per batch: nothing else runs on the loop while a batch is applied.
        self._check_deadline()
        if len(events) > MAX_EVENTS_PER_BATCH:
            errors.append(f"batch truncated to {MAX_EVENTS_PER_BATCH} events")
        return errors

    def _foreign(self, event: Event, node_id: str) -> str | None:
        """Why a node may not report `event` (None: it may): a caller leaves on its own node, a call
        ends on the caller's or the agent's node, an offer is answered or fails on one of its two
        nodes. Applied, another node's report ended a caller its own node still held, in silence."""
        if isinstance(event, (CallerLeft, CallEnded)):
            nodes = self.engine.reporters(event.call_id)
            if nodes is None or nodes[0] in ("", node_id) or (isinstance(event, CallEnded) and nodes[1] == node_id):
                return None
            return f"{type(event).__name__} for call {clip(event.call_id)} of node {nodes[0]!r}: ignored"
        if isinstance(event, (OfferAnswered, OfferFailed)):
            nodes = self.engine.reporters("", event.offer_id)
            if nodes is None or node_id in nodes:
                return None
            return f"{type(event).__name__} for offer {clip(event.offer_id)} between nodes {nodes}: ignored"
        return None

    def join(self, link: NodeLink, msg: node_pb2.CallJoined, seq: int | None) -> str | None:
        """Sequence (`seq`: a re-reported one) and apply one CallJoined of `link`'s node; the error
        message when it is unusable."""
        now = self.clock()
        arrival = seq if seq is not None else self.seqs.take()
        if arrival is None:
            return self._refuse_unsequenced(link, msg, now)
        ev = joined_event(msg, link.node_id, arrival, now, re_report=seq is not None)
        if type(ev) is BadNodeEvent:
            if ev.call_id:
                self._reject_invalid(link, ev.call_id, ev.message)
            return ev.message
        assert type(ev) is CallerJoined
        if self.engine.holds(ev.call_id):
            nodes = self.engine.reporters(ev.call_id)
            holder = nodes[0] if nodes is not None else ""
            if holder not in ("", link.node_id):
                # Two nodes with one channel id (a shared Asterisk systemname?): this caller is refused
                # rather than left waiting unsequenced; the one already held stays.
                message = f"call id {clip(ev.call_id)} is already held by node {holder!r} (same systemname?)"
                self._reject_invalid(link, ev.call_id, message)
                return message
            return None  # duplicate report of a caller we already hold
        self._apply_join(ev, now, link.node_id)
        return None

    def repeat_join_ack(self, link: NodeLink, msg: node_pb2.CallJoined, seq: int) -> None:
        """The engine's JoinAccepted (sequence, position, media) for a caller it already holds."""
        now = self.clock()
        ev = joined_event(msg, link.node_id, seq, now, re_report=True)
        if type(ev) is CallerJoined:
            self._apply_join(ev, now, link.node_id)

    def _apply_join(self, ev: CallerJoined, now: float, node_id: str) -> None:
        # Where the join's answer goes: JoinAccepted/JoinRejected only come out of this very apply.
        self._call_node[ev.call_id] = node_id
        try:
            self._apply(ev, now)
        finally:
            self._call_node.pop(ev.call_id, None)

    def _reject_invalid(self, link: NodeLink, call_id: str, message: str,
                        status: CallerStatus = CallerStatus.INVALID_ARGS) -> None:
        link.push(d.JoinRejected(call_id=call_id, status=status, message=message))

    def _refuse_unsequenced(self, link: NodeLink, msg: node_pb2.CallJoined, now: float) -> str:
        """No reserved arrival sequence is left (see SeqAllocator): the caller goes back UNAVAILABLE."""
        message = "no arrival sequence reserved (etcd writes failing?)"
        ev = joined_event(msg, link.node_id, 0, now)  # only to validate the call id it is sent to
        if type(ev) is CallerJoined and not self.engine.holds(ev.call_id):
            self._reject_invalid(link, ev.call_id, message, CallerStatus.UNAVAILABLE)
        return message

    # ---- timers ----------------------------------------------------------------------------
    async def run_timers(self) -> None:
        """Tick the engine at its deadlines and expire lost nodes; runs until cancelled."""
        while True:
            now = self.clock()
            for node, lost_at in list(self._node_lost_at.items()):
                if lost_at <= now:
                    del self._node_lost_at[node]
                    log.warning("node %s lost (no stream for %.1f s)", node, self.node_ttl)
                    self.apply(NodeLost(node))
            tick_at = self.engine.next_deadline()
            if tick_at is not None and tick_at <= now:
                self.apply(Tick())
                # Yield: timers due again at once (a burst of them) must not starve the node streams.
                await asyncio.sleep(0)
                continue
            waits: list[float] = [x for x in [tick_at, *self._node_lost_at.values()] if x is not None]
            timeout = max(0.0, min(waits) - now) if waits else None
            self._wake.clear()
            self._planned_wake = min(waits) if waits else math.inf
            # asyncio.timeout, not wait_for: on Python 3.11, wait_for returns normally when it is
            # cancelled just as its wait completes, and this loop would then outlive the leadership
            # term it belongs to (seen: a step-down that never finished).
            try:
                async with asyncio.timeout(timeout):
                    await self._wake.wait()
            except TimeoutError:
                pass
            self._planned_wake = -math.inf

    def close(self) -> None:
        """Leadership ended: close every node stream (nodes reconnect to the next leader)."""
        self.closed = True
        for link in list(self.links.values()):
            link.close()
        self.links.clear()


__all__ = ["LeaderRuntime", "NodeAlreadyConnected", "SeqAllocator"]

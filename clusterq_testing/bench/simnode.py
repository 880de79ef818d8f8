"""A simulated Asterisk node: the stasis app's real CoordinatorClient, with callers and agents faked.

The stream is driven exactly as `stasis_app` drives it (the same `CoordinatorClient` class:
Register first with a snapshot of held calls, then EventBatch messages of up to 256 events (`MAX_BATCH`), leader
following through the `clusterq-leader` trailer, stale epochs refused, reconnect with backoff).
Only Asterisk is simulated:
- `join()` reports a CallJoined and stamps its send time; the matching JoinAck gives one latency
  sample (send -> JoinAck received, both read from this process's perf_counter);
- an Offer whose agent is homed here is answered (AgentLegAnswered) after `answer_delay`;
- a Connect for a caller held here ends (CallEnded, caller hung up) after `talk_time`;
- `abandon()` makes a waiting caller hang up (CallLeft): a random one, or the longest-waiting one
  (`clusterq_testing.bench.waiting` says why random is the default).

Accounting: `sent` counts events handed to the client; a JoinAck/JoinReject for a join proves the
leader applied every event this node sent up to and including that join (one ordered stream), so
`confirmed` is a lower bound of the events the leader has applied from this node.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Callable
from dataclasses import dataclass

from clusterq_proto.v1 import node_pb2
from clusterq_testing.bench.waiting import Abandon, WaitingCallers
from stasis_app.coordinator_client import CoordinatorClient

__all__ = ["SimCaller", "SimNode"]

JOINING, WAITING, RINGING, CONNECTED = "joining", "waiting", "ringing", "connected"

OfferHook = Callable[[int, int], None]
"""Called with (stamp epoch, perf_counter_ns at receipt) for every Offer this node receives."""


@dataclass(slots=True, eq=False)
class SimCaller:
    """One simulated caller held by this node (mutable runtime record)."""

    call_id: str
    join_order: int
    state: str = JOINING
    arrival_seq: int = 0
    offer_id: str = ""
    agent_id: str = ""


@dataclass(slots=True, eq=False)
class _Leg:
    """An agent leg ringing on this node for an offer (mutable runtime record)."""

    agent_id: str
    call_id: str
    timer: asyncio.TimerHandle | None


class SimNode:
    """One simulated node; `start()` runs its coordinator stream in the background."""

    def __init__(self, node_id: str, addresses: list[str], queue: str, *,
                 answer_delay: float | None = 0.01, talk_time: float = 0.1, abandon: Abandon = "random",
                 seed: int = 0) -> None:
        self.node_id = node_id
        self.queue = queue
        self.answer_delay = answer_delay
        self.talk_time = talk_time
        self.client = CoordinatorClient(node_id, tuple(addresses), self._snapshot, self._on_decision,
                                        self._on_connected)
        self.callers: dict[str, SimCaller] = {}
        # Acknowledged callers waiting unoffered (the ones `abandon` may hang up); seeded per node.
        self.waiting = WaitingCallers(abandon, random.Random(f"{seed}-{node_id}"))
        self._legs: dict[str, _Leg] = {}
        self._join_sent_ns: dict[str, int] = {}
        self._join_mark: dict[str, int] = {}
        self.latencies: list[tuple[int, int]] = []
        """(send perf_counter_ns, send -> JoinAck ns) of every acknowledged join."""
        self.sent = 0
        self.last_join_sent = 0
        self.confirmed = 0
        self.decisions = 0
        self.rejected = 0
        self.offers = 0
        self.seq_gaps = 0
        self.registered_ns: list[int] = []
        self.on_offer: OfferHook | None = None
        self.acked = asyncio.Event()
        self._expect_seq = 0
        self._order = 0
        self._task: asyncio.Task[None] | None = None
        self._connected = asyncio.Event()

    # ------------------------------------------------------------------ lifecycle
    async def start(self, timeout: float = 15.0) -> None:
        """Run the stream and wait until the leader answered Registered."""
        self._task = asyncio.ensure_future(self.client.run())
        await asyncio.wait_for(self._connected.wait(), timeout)

    async def wait_connected(self, timeout: float) -> None:
        """Wait until a stream to a leader is up."""
        await asyncio.wait_for(self._connected.wait(), timeout)

    async def stop(self) -> None:
        """Close the stream for good."""
        self.client.close()
        for leg in self._legs.values():
            if leg.timer is not None:
                leg.timer.cancel()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task

    @property
    def unconfirmed(self) -> int:
        """Events sent whose application by the leader is not proven yet."""
        return self.sent - self.confirmed

    @property
    def pending_joins(self) -> int:
        """Joins sent and not yet answered."""
        return len(self._join_sent_ns)

    # ------------------------------------------------------------------ callers
    def _send(self, event: node_pb2.NodeEvent) -> None:
        self.client.send(event)
        self.sent += 1

    def join(self) -> bool:
        """A new caller enters the queue on this node; False while no leader stream is up."""
        if not self.client.connected:
            return False
        self._order += 1
        call_id = f"{self.node_id}-q-{self._order}"
        self.callers[call_id] = SimCaller(call_id, self._order)
        self._join_sent_ns[call_id] = time.perf_counter_ns()
        self._send(node_pb2.NodeEvent(call_joined=node_pb2.CallJoined(
            call_id=call_id, queue=self.queue, caller_number="5550100", node_join_order=self._order)))
        self._join_mark[call_id] = self.last_join_sent = self.sent
        return True

    def abandon(self) -> bool:
        """A waiting caller hangs up (which one: the node's abandonment model); False if none waits
        (or no stream)."""
        if not self.client.connected:
            return False
        call_id = self.waiting.pick()
        if call_id is None:
            return False
        del self.callers[call_id]
        self._send(node_pb2.NodeEvent(call_left=node_pb2.CallLeft(call_id=call_id, reason="hangup")))
        return True

    # ------------------------------------------------------------------ decisions
    def _on_connected(self, up: bool) -> None:
        if up:
            self._expect_seq = 0
            self.registered_ns.append(time.perf_counter_ns())
            self._connected.set()
        else:
            self._connected.clear()

    def _on_decision(self, dec: node_pb2.Decision) -> None:
        self.decisions += 1
        # Decision stamps must grow by exactly one per stream (the link's invariant).
        if dec.stamp.seq != self._expect_seq + 1:
            self.seq_gaps += 1
        self._expect_seq = dec.stamp.seq
        kind = dec.WhichOneof("decision")
        if kind == "join_ack":
            self._acked(dec.join_ack.call_id, dec.join_ack.arrival_seq)
        elif kind == "join_reject":
            self.rejected += 1
            self._acked(dec.join_reject.call_id, None)
        elif kind == "offer":
            self._offer(dec.offer, dec.stamp.epoch)
        elif kind == "connect":
            self._connect(dec.connect)
        elif kind == "cancel_offer":
            self._cancel(dec.cancel_offer)
        elif kind == "continue_in_dialplan":
            self._gone(dec.continue_in_dialplan.call_id)

    def _acked(self, call_id: str, arrival_seq: int | None) -> None:
        now = time.perf_counter_ns()
        sent = self._join_sent_ns.pop(call_id, None)
        if sent is not None:
            if arrival_seq is not None:
                self.latencies.append((sent, now - sent))
            self.confirmed = max(self.confirmed, self._join_mark.pop(call_id, 0))
            self.acked.set()
        caller = self.callers.get(call_id)
        if caller is None:
            return
        if arrival_seq is None:
            self._gone(call_id)
            return
        caller.arrival_seq = arrival_seq  # a re-report after failover is acknowledged again
        if caller.state == JOINING:
            caller.state = WAITING
            self.waiting.add(call_id)

    def _offer(self, offer: node_pb2.Offer, epoch: int) -> None:
        self.offers += 1
        if self.on_offer is not None:
            self.on_offer(epoch, time.perf_counter_ns())
        if offer.agent_node == self.node_id:
            timer = None
            if self.answer_delay is not None:
                timer = asyncio.get_running_loop().call_later(self.answer_delay, self._answer, offer.offer_id)
            self._legs[offer.offer_id] = _Leg(offer.agent_id, offer.call_id, timer)
        if offer.caller_node == self.node_id:
            caller = self.callers.get(offer.call_id)
            if caller is not None and caller.state in (JOINING, WAITING):
                caller.state, caller.offer_id = RINGING, offer.offer_id
                self.waiting.discard(offer.call_id)

    def _answer(self, offer_id: str) -> None:
        leg = self._legs.get(offer_id)
        if leg is not None and leg.timer is not None and self.client.connected:
            leg.timer = None
            self._send(node_pb2.NodeEvent(agent_leg_answered=node_pb2.AgentLegAnswered(offer_id=offer_id)))

    def _connect(self, conn: node_pb2.Connect) -> None:
        # The agent's leg is bridged; its end is reported by the caller's node (CallEnded).
        self._legs.pop(conn.offer_id, None)
        caller = self.callers.get(conn.call_id) if conn.caller_node == self.node_id else None
        if caller is not None:
            caller.state, caller.agent_id, caller.offer_id = CONNECTED, conn.agent_id, conn.offer_id
            asyncio.get_running_loop().call_later(self.talk_time, self._end, conn.call_id)

    def _end(self, call_id: str) -> None:
        caller = self.callers.get(call_id)
        if caller is None or caller.state != CONNECTED:
            return
        del self.callers[call_id]
        if self.client.connected:
            self._send(node_pb2.NodeEvent(call_ended=node_pb2.CallEnded(
                call_id=call_id, offer_id=caller.offer_id, agent_hung_up=False)))

    def _cancel(self, cancel: node_pb2.CancelOffer) -> None:
        leg = self._legs.pop(cancel.offer_id, None)
        if leg is not None and leg.timer is not None:
            leg.timer.cancel()
        caller = self.callers.get(cancel.call_id)
        if caller is not None and caller.state == RINGING and caller.offer_id == cancel.offer_id:
            caller.state, caller.offer_id = WAITING, ""
            self.waiting.add(cancel.call_id)

    def _gone(self, call_id: str) -> None:
        self.callers.pop(call_id, None)
        self.waiting.discard(call_id)

    # ------------------------------------------------------------------ resync
    def _snapshot(self) -> node_pb2.Register:
        """Every held caller and ringing leg, re-reported on each (re)connect like the stasis app."""
        reg = node_pb2.Register()
        for c in self.callers.values():
            reg.calls.append(node_pb2.CallSnapshot(
                joined=node_pb2.CallJoined(call_id=c.call_id, queue=self.queue, caller_number="5550100",
                                           node_join_order=c.join_order),
                arrival_seq=c.arrival_seq, state=c.state if c.state != JOINING else WAITING,
                offer_id=c.offer_id, agent_id=c.agent_id))
        for offer_id, leg in self._legs.items():
            reg.agent_legs.append(node_pb2.AgentLegSnapshot(
                offer_id=offer_id, agent_id=leg.agent_id, call_id=leg.call_id, state="ringing"))
        return reg

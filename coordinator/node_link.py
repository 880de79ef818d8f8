"""One attached node stream on the leader: decision stamping and batching.

Invariant: every decision a link sends carries the leader's epoch and a sequence number that
increases by one per decision on this stream, so a node can detect gaps and refuse stale epochs.
They travel as one stamp per message (DecisionBatch.stamp: epoch, seq of its first decision).

Decisions are written straight into the protobuf message that the stream will send next (no
intermediate messages, no copies): everything decided while the writer was busy leaves in one
write. The first decision after a write wakes the writer; it runs after the callback that is
applying events, so a whole node batch (and other nodes' batches read in the same loop iteration)
goes out in one message per node.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque

from clusterq_proto.v1 import node_pb2
from coordinator.queue import Decision, QueueConfig
from coordinator.queue import decisions as d
from coordinator.rpc.convert_node import fill_decision

# Bound on decisions per stream message (keeps messages far below gRPC's 4 MB limit).
MAX_BATCH = 1024
# Bound on full messages waiting for a node's writer (about 262,000 decisions). A Register of
# MAX_RESYNC_CALLS (100,000) callers yields up to two decisions each in one synchronous step, so
# the bound stays above that burst; beyond it the node is not reading, and the link is closed.
MAX_PENDING_MESSAGES = 256

log = logging.getLogger(__name__)


class NodeLink:
    """The leader's handle on one node's Connect stream."""

    def __init__(self, node_id: str, instance_id: str, epoch: int) -> None:
        self.node_id = node_id
        self.instance_id = instance_id
        self.epoch = epoch
        self._seq = 0
        self._msg = node_pb2.CoordinatorMessage()
        self._decs = self._msg.decisions.decisions
        self._count = 0
        self._full: deque[node_pb2.CoordinatorMessage] = deque()
        self._ready = asyncio.Event()
        self._peer_gone = False
        self.closed = False
        self.close_reason = ""  # why the leader closed the link itself ("" otherwise)

    def _add(self) -> node_pb2.Decision:
        """A new decision at the end of the next message (stamped through the message's stamp)."""
        if self._count >= MAX_BATCH:
            if len(self._full) >= MAX_PENDING_MESSAGES:
                self._overflow()
                return node_pb2.Decision()  # filled and dropped: the link is closed
            self._full.append(self._msg)
            self._msg = node_pb2.CoordinatorMessage()
            self._decs = self._msg.decisions.decisions
            self._count = 0
        if not self._count:
            if not self._full:
                self._ready.set()  # the first decision since the last write wakes the writer
            # One stamp per message: the epoch of all its decisions and the seq of the first.
            stamp = self._msg.decisions.stamp
            stamp.epoch, stamp.seq = self.epoch, self._seq + 1
        self._count += 1
        self._seq += 1
        return self._decs.add()

    def _overflow(self) -> None:
        """The node reads slower than decisions are made: drop the backlog and close the link.

        The writer then ends after the write in progress and the servicer detaches the node, which
        reconnects and re-registers: its snapshot is the designed recovery of whatever was dropped
        (lost answers applied, Connects and CancelOffers sent again, callers re-reported). Only
        flags are set here: this runs inside the runtime's routing of an engine step."""
        dropped = self.pending
        self._full.clear()
        self._take_open()
        self.close_reason = f"{dropped} decisions pending: the node reads too slowly"
        log.warning("node %s: closing its stream, %s", self.node_id, self.close_reason)
        self.close()

    def push(self, dec: Decision) -> None:
        """Stamp and queue one engine decision (ignored once the link is closed, and when not for nodes)."""
        if self.closed or isinstance(dec, d.AgentStateChanged):  # the only decision not meant for nodes
            return
        fill_decision(self._add(), dec)

    def push_join_accepted(self, dec: d.JoinAccepted, cfg: QueueConfig | None) -> None:
        """JoinAck, carrying the queue's media settings when the queue is known (one decision per
        join: a decision costs the leader about as much as the fields it carries)."""
        if self.closed:
            return
        j = self._add().join_ack
        j.call_id, j.arrival_seq, j.position, j.estimated_wait = (
            dec.call_id, dec.arrival_seq, dec.position, dec.estimated_wait)
        if cfg is not None:
            m = j.media
            m.music_class, m.exit_context = cfg.music_class, cfg.exit_context

    @property
    def pending(self) -> int:
        """Decisions queued and not yet handed to the writer."""
        return self._count + sum(len(m.decisions.decisions) for m in self._full)

    def take_ready(self) -> list[node_pb2.CoordinatorMessage]:
        """Every queued message, oldest first (what the writer would send next); empties the link."""
        out = list(self._full)
        self._full.clear()
        if self._count:
            out.append(self._take_open())
        return out

    def _take_open(self) -> node_pb2.CoordinatorMessage:
        msg = self._msg
        self._msg = node_pb2.CoordinatorMessage()
        self._decs = self._msg.decisions.decisions
        self._count = 0
        return msg

    async def next_message(self) -> node_pb2.CoordinatorMessage | None:
        """The next message to write; None once the link is closed (or the node hung up) and
        everything decided before that was handed out."""
        while True:
            if self._full:
                return self._full.popleft()
            if self._count:
                return self._take_open()
            if self.closed or self._peer_gone:
                return None
            self._ready.clear()
            await self._ready.wait()

    def peer_gone(self) -> None:
        """The node closed its side: the writer ends after what is already queued."""
        self._peer_gone = True
        self._ready.set()

    def close(self) -> None:
        """End the stream: the writer sends what was decided before, then finishes the RPC."""
        if not self.closed:
            self.closed = True
            self._ready.set()

"""One attached node stream on the leader: decision stamping and batching.

Invariant: every decision a link sends carries the leader's epoch and a sequence number that
increases by one per decision on this stream, so a node can detect gaps and refuse stale epochs.
"""

from __future__ import annotations

import asyncio

from clusterq_proto.v1 import node_pb2
from coordinator.queue import Decision
from coordinator.rpc.convert_node import decision_pb

# Bound on decisions per stream message (keeps messages far below gRPC's 4 MB limit).
MAX_BATCH = 256


class NodeLink:
    """The leader's handle on one node's Connect stream."""

    def __init__(self, node_id: str, instance_id: str, epoch: int) -> None:
        self.node_id = node_id
        self.instance_id = instance_id
        self.epoch = epoch
        self._seq = 0
        self._pending: list[node_pb2.Decision] = []
        # None is the end-of-stream sentinel (leadership lost or link replaced).
        self.outbox: asyncio.Queue[node_pb2.CoordinatorMessage | None] = asyncio.Queue()
        self.closed = False

    def push(self, dec: Decision) -> None:
        """Stamp and queue one engine decision; sent at the next flush()."""
        self._seq += 1
        msg = decision_pb(dec, self.epoch, self._seq)
        if msg is None:
            self._seq -= 1
            return
        self._pending.append(msg)

    def push_raw(self, msg: node_pb2.Decision) -> None:
        """Queue a ready-made decision (e.g. QueueMedia), stamping it."""
        self._seq += 1
        msg.stamp.epoch = self.epoch
        msg.stamp.seq = self._seq
        self._pending.append(msg)

    def flush(self) -> None:
        """Move pending decisions to the outbox in batches of at most MAX_BATCH."""
        if self.closed:
            self._pending.clear()
            return
        while self._pending:
            chunk, self._pending = self._pending[:MAX_BATCH], self._pending[MAX_BATCH:]
            self.outbox.put_nowait(
                node_pb2.CoordinatorMessage(decisions=node_pb2.DecisionBatch(decisions=chunk)))

    def close(self) -> None:
        """End the stream: the servicer sees the sentinel and finishes the RPC."""
        if not self.closed:
            self.closed = True
            self.outbox.put_nowait(None)

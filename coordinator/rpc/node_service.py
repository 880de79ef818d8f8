"""NodeService: the per-node event/decision stream (thin: validation, then the runtime)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any, TypeAlias

import grpc
from google.protobuf.message import DecodeError

from clusterq_common.text import cut
from clusterq_proto.v1 import node_pb2, node_pb2_grpc
from coordinator.config import NAME_RE
from coordinator.node_link import NodeLink
from coordinator.re_report import MAX_RESYNC_LEGS
from coordinator.replica import ReplicaState
from coordinator.rpc.errors import abort, abort_not_leader
from coordinator.runtime import MAX_EVENTS_PER_BATCH, LeaderRuntime, NodeAlreadyConnected

log = logging.getLogger(__name__)

# grpc ships no type information: servicer contexts are untyped here.
Ctx: TypeAlias = Any
MAX_RESYNC_CALLS = 100_000


def _attach(rt: LeaderRuntime, reg: node_pb2.Register) -> NodeLink | tuple[grpc.StatusCode, str]:
    """Attach the node with its Register; the status to end the stream with when refused."""
    try:
        return rt.attach(reg.node_id, reg.instance_id, reg)
    except NodeAlreadyConnected as exc:
        return grpc.StatusCode.ALREADY_EXISTS, str(exc)
    except (ValueError, KeyError) as exc:  # the engine's refusal of what the node reported
        log.warning("node %s: Register refused: %s", reg.node_id, exc)
        return grpc.StatusCode.INVALID_ARGUMENT, f"Register refused: {exc}"
    except Exception as exc:
        log.exception("node %s: Register failed", reg.node_id)
        return grpc.StatusCode.INTERNAL, f"Register failed on the coordinator: {type(exc).__name__}: {exc}"


class OversizedBatch(Exception):
    """A node sent more events in one batch than the leader applies at once (MAX_EVENTS_PER_BATCH)."""


def _read_failure(reader: asyncio.Future[None] | None) -> tuple[grpc.StatusCode, str] | None:
    """The status for a stream whose reading failed (None: it did not): a message that does not parse
    (e.g. a string field that is not UTF-8) is the node's INVALID_ARGUMENT, anything else INTERNAL."""
    if reader is None or not reader.done() or reader.cancelled() or (exc := reader.exception()) is None:
        return None
    if isinstance(exc, DecodeError):
        return grpc.StatusCode.INVALID_ARGUMENT, f"a message from the node does not parse: {cut(str(exc))}"
    if isinstance(exc, OversizedBatch):
        return grpc.StatusCode.INVALID_ARGUMENT, str(exc)
    log.error("reading a node stream failed", exc_info=exc)
    return grpc.StatusCode.INTERNAL, f"reading the stream failed on the coordinator: {type(exc).__name__}"


class NodeServicer(node_pb2_grpc.NodeServiceServicer):
    """Serves Connect on the leader; followers refuse with the leader's address."""

    def __init__(self, state: ReplicaState) -> None:
        self.state = state
        self._bg: set[asyncio.Task[None]] = set()

    async def Connect(self, request_iterator: object, context: Ctx) -> None:  # type: ignore[override]
        """Register, then stream decisions out while events stream in."""
        rt = self.state.runtime
        if rt is None:
            await abort_not_leader(context, self.state.leader_address)
        try:
            first = await context.read()
        except DecodeError as exc:
            await abort(context, grpc.StatusCode.INVALID_ARGUMENT, f"the first message does not parse: {cut(str(exc))}")
        # Leadership may have ended (or ended and started again) while the node was awaited:
        # attaching to a closed runtime would answer Registered(old epoch) and leave the node on
        # a replica that no longer leads while the real leader counts it as lost.
        await self._check_leading(rt, context)
        if first is grpc.aio.EOF or first.WhichOneof("body") != "register":
            await abort(context, grpc.StatusCode.INVALID_ARGUMENT, "the first message must be a Register")
        reg = first.register
        if not NAME_RE.match(reg.node_id):
            await abort(context, grpc.StatusCode.INVALID_ARGUMENT, f"node_id must match {NAME_RE.pattern}")
        if not reg.instance_id or len(reg.instance_id) > 128:
            await abort(context, grpc.StatusCode.INVALID_ARGUMENT, "instance_id must be 1..128 characters")
        if len(reg.calls) > MAX_RESYNC_CALLS:
            await abort(context, grpc.StatusCode.INVALID_ARGUMENT, f"more than {MAX_RESYNC_CALLS} calls in Register")
        if len(reg.agent_legs) > MAX_RESYNC_LEGS:
            await abort(context, grpc.StatusCode.INVALID_ARGUMENT,
                        f"more than {MAX_RESYNC_LEGS} agent legs in Register")
        if reg.highest_epoch > rt.epoch:
            await abort_not_leader(context, self.state.leader_address)
        # The node's calls are re-reported in the attach itself (no await in between): the settle loop
        # treats an attached node as re-reported, and its agents must not be offered before its
        # connected calls and waiting callers are known. A refused Register leaves no link behind (the
        # node's next instance would be refused as ALREADY_EXISTS for the rest of the term).
        attached = _attach(rt, reg)
        if not isinstance(attached, NodeLink):
            await abort(context, *attached)
        link = attached
        reader: asyncio.Future[None] | None = None
        replaced = False
        try:
            log.info("node %s attached (instance %s, %d calls re-reported)", reg.node_id, reg.instance_id,
                     len(reg.calls))
            self._remember_node(reg.node_id, reg.instance_id)
            reader = asyncio.ensure_future(self._read(rt, link, context))
            # The node closing its side ends the writer too (after what is already decided).
            reader.add_done_callback(lambda _: link.peer_gone())
            await context.write(node_pb2.CoordinatorMessage(
                registered=node_pb2.Registered(epoch=rt.epoch, leader=self.state.settings.advertise_address)))
            # One write per wake-up carries every decision made since the previous write.
            while (msg := await link.next_message()) is not None:
                await context.write(msg)
        finally:
            if reader is not None:
                reader.cancel()
            # Read before detach, which closes the link and drops it from rt.links: only a newer
            # stream of the node (attach) put another link in its place.
            replaced = rt.links.get(reg.node_id) is not link
            rt.detach(link)
            log.info("node %s detached", reg.node_id)
        if rt.closed:
            await abort(context, grpc.StatusCode.UNAVAILABLE, "leadership lost; reconnect to the new leader")
        if link.close_reason:  # the leader gave up on this stream (e.g. a node reading too slowly)
            await abort(context, grpc.StatusCode.RESOURCE_EXHAUSTED, link.close_reason)
        if (failure := _read_failure(reader)) is not None:
            await abort(context, *failure)
        if replaced:
            await abort(context, grpc.StatusCode.ABORTED, "replaced by a newer stream of the same node instance")
        # Otherwise the node closed its side (a clean half-close): the stream ends OK.

    async def _check_leading(self, rt: LeaderRuntime, context: Ctx) -> None:
        """Refuse (with the leader trailer) unless `rt` is still this replica's open runtime."""
        if rt.closed or self.state.runtime is not rt:
            await abort_not_leader(context, self.state.leader_address)

    async def _read(self, rt: LeaderRuntime, link: NodeLink, context: Ctx) -> None:
        while True:
            msg = await context.read()
            if msg is grpc.aio.EOF:
                return
            if msg.WhichOneof("body") != "events":
                log.warning("node %s sent %s after Register; ignored", link.node_id, msg.WhichOneof("body"))
                continue
            if rt.closed or link.closed:
                return
            if len(msg.events.events) > MAX_EVENTS_PER_BATCH:
                # Refused whole, the stream with it: the node registers again and its snapshot carries
                # what the batch said (a truncated batch left the rest of its callers unanswered).
                raise OversizedBatch(f"a batch of {len(msg.events.events)} events; at most {MAX_EVENTS_PER_BATCH}")
            for err in rt.handle_batch(link, msg.events):
                log.warning("node %s: bad event: %s", link.node_id, err)

    def _remember_node(self, node_id: str, instance_id: str) -> None:
        state = self.state
        fence = state.fence
        if fence is None:
            return

        async def write() -> None:
            try:
                await state.store.put_node(fence, node_id, instance_id)
            except Exception:  # a lost fence or etcd hiccup must not break the stream
                log.exception("could not record node %s", node_id)

        task = asyncio.ensure_future(write())
        self._bg.add(task)
        task.add_done_callback(self._bg.discard)

"""Agent login / logout / pause / unpause from the dialplan (app_queue's AddQueueMember & co.).

A channel entering `Stasis(clusterq,agent-login,<agent>,...)` (agent_args.py has the syntax) is not
answered: the app performs the call on the coordinator's Agents service, following the leader like
the `clusterq` CLI (clusterq_common.leader_client.AdminClient, with the node's coordinator TLS), and
sends the channel back to the dialplan at its next priority with

    CLUSTERQ_AGENT_STATUS   LOGGEDIN | LOGGEDOUT | PAUSED | UNPAUSED       (done)
                            NOTFOUND      the agent is not logged in (logout, pause, unpause)
                            NOSUCHQUEUE   a queue= names no queue (login)
                            INVALID       bad arguments, here or by the coordinator (INVALID_ARGUMENT)
                            UNAVAILABLE   no leader answered within OP_TIMEOUT seconds
                            ERROR         any other refusal, or a failure of this app
    CLUSTERQ_MESSAGE        the reason, or what the leader now shows for the agent (<= 200 chars)

Guarantee: every such channel goes back to the dialplan (or is hung up if Asterisk never takes it
back, like a caller, callers.CallerActions.continue_channel) within OP_TIMEOUT plus the continue's
retries: the coordinator call is bounded as a whole, whatever the leader search does. An UNAVAILABLE
after a write the coordinator could not confirm may still have taken effect (its message says so).
A restarted app finds such a channel in Stasis and performs its operation again (resync.py).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import grpc

from clusterq_common.leader_client import LAST_ERROR, AdminClient
from clusterq_proto.v1 import admin_pb2, common_pb2
from stasis_app.ari.events import ChannelInfo
from stasis_app.call.agent_args import (
    AgentLogin,
    AgentLogout,
    AgentOp,
    AgentPause,
    AgentUnpause,
    channel_device,
    parse_agent_op,
)
from stasis_app.call.args import BadArgs
from stasis_app.coordinator_client import CHANNEL_OPTIONS

if TYPE_CHECKING:
    from stasis_app.node import NodeApp

log = logging.getLogger(__name__)

VAR_STATUS = "CLUSTERQ_AGENT_STATUS"
VAR_MESSAGE = "CLUSTERQ_MESSAGE"
# Seconds to find a leader and get its answer: the agent's phone waits this long at most.
OP_TIMEOUT = 5.0
ENDED_KEEP = 60.0
"""Seconds an operation's channel is remembered after its StasisEnd (see AgentOps._sent_back)."""
_clock = time.monotonic  # replaced by tests
_DONE = {AgentLogin: "LOGGEDIN", AgentLogout: "LOGGEDOUT", AgentPause: "PAUSED", AgentUnpause: "UNPAUSED"}
AGENT_STATUSES = (*_DONE.values(), "NOTFOUND", "NOSUCHQUEUE", "INVALID", "UNAVAILABLE", "ERROR")
"""Every CLUSTERQ_AGENT_STATUS an operation ends with (exported by /metrics, each from the start)."""
_UNREACHABLE = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.DEADLINE_EXCEEDED)


class AgentAdmin(Protocol):
    """What this module needs of the coordinator's Agents service (AdminClient; a fake in tests).
    Refusals are raised as grpc.aio.AioRpcError."""

    last_error: str

    async def login_request(self, req: admin_pb2.LoginRequest) -> admin_pb2.AgentState:
        """Agents.Login."""

    async def logout(self, agent_id: str) -> admin_pb2.AgentState:
        """Agents.Logout."""

    async def pause(self, agent_id: str, reason: str = "") -> admin_pb2.AgentState:
        """Agents.Pause."""

    async def unpause(self, agent_id: str) -> admin_pb2.AgentState:
        """Agents.Unpause."""

    async def close(self) -> None:
        """Close its connections."""


@dataclass(frozen=True)
class Outcome:
    """What the channel takes back to the dialplan."""

    status: str
    message: str


def refused(op: AgentOp, exc: grpc.aio.AioRpcError) -> Outcome:
    """The outcome of a coordinator refusal (pure)."""
    code, details = exc.code(), exc.details() or ""
    if code == grpc.StatusCode.NOT_FOUND:
        return Outcome("NOSUCHQUEUE" if isinstance(op, AgentLogin) else "NOTFOUND", details)
    if code == grpc.StatusCode.INVALID_ARGUMENT:
        return Outcome("INVALID", details)
    if code in _UNREACHABLE:
        return Outcome("UNAVAILABLE", f"{code.name}: {details}")
    return Outcome("ERROR", f"{code.name}: {details}")


def done(op: AgentOp, state: admin_pb2.AgentState) -> Outcome:
    """The outcome of a call the leader made (pure): the status, and the agent's state as it shows it."""
    shown = (state.state or "unknown").replace("_", " ")
    if state.pause_reason and state.state == "paused":
        shown += f" ({state.pause_reason})"
    return Outcome(_DONE[type(op)], f"agent {op.agent_id} is {shown}")


def login_request(op: AgentLogin, channel: ChannelInfo, home_node: str) -> admin_pb2.LoginRequest | Outcome:
    """The Login request of `op` from `channel` of this node (pure): endpoint= or the channel's own
    device; an Outcome (INVALID) when there is none (a Local channel must say endpoint=)."""
    endpoint = op.endpoint or channel_device(channel.name)
    if endpoint is None:
        return Outcome("INVALID", f"channel {channel.name[:60]} has no device of its own: give endpoint=TECH/resource")
    return admin_pb2.LoginRequest(
        agent_id=op.agent_id, endpoint=endpoint, home_node=home_node,
        queues=[admin_pb2.QueueMembership(queue=m.queue, penalty=m.penalty, weight=m.weight) for m in op.memberships],
        skills=[common_pb2.Skill(key=k, value=v) for k, v in op.skills], paused=op.paused,
        state_interface=op.state_interface)


class AgentOps:
    """The agent operations of one NodeApp (see the module docstring)."""

    def __init__(self, app: NodeApp, admin: AgentAdmin | None = None, timeout: float = OP_TIMEOUT) -> None:
        self.app = app
        self.timeout = timeout
        self._admin = admin
        # Channel -> token of the operation running for it: a second trigger (its StasisStart queued
        # behind an ARI reconnect and the resync's listing both) must not perform it twice.
        self._runs: dict[str, int] = {}
        self._tokens = itertools.count(1)
        # Channel -> whether its StasisEnd was seen since it was sent back. Until then a StasisStart or a
        # resync listing of it is older than the sending back (performing it again would, e.g., undo a
        # pause made since with a second login); once ended, a StasisStart is the dialplan running an
        # operation again on the same channel, but a listing may still be older than the StasisEnd (HTTP
        # answers and websocket events are not ordered), so it is left alone. Ended entries are
        # forgotten ENDED_KEEP seconds after the StasisEnd: a channel back in the dialplan gets no
        # ChannelDestroyed, and waiting for that kept every operation's channel id for ever.
        self._sent_back: dict[str, bool] = {}
        self._ended: deque[tuple[float, str]] = deque()  # (StasisEnd time, channel), oldest first
        # Channels whose StasisEnd came while their operation ran (the caller hung up): not to be
        # remembered as sent back when it finishes.
        self._left: set[str] = set()

    @property
    def admin(self) -> AgentAdmin:
        """The coordinator client, made on first use (it opens its channels lazily too)."""
        if self._admin is None:
            settings = self.app.settings
            # One silent address (a hung replica still accepting connections) must not use up the whole
            # budget: each gets a share of it, then the next is tried. The node stream's channel options
            # (keepalive, reconnect backoff of at most 1 s) so a coordinator back is found at once.
            self._admin = AdminClient(settings.coordinators, settings.coordinator_tls,
                                      attempt_timeout=max(0.5, self.timeout / (len(settings.coordinators) + 1)),
                                      channel_options=CHANNEL_OPTIONS)
        return self._admin

    def owns(self, channel_id: str) -> bool:
        """Whether an operation of this channel is in progress."""
        return channel_id in self._runs

    def handled(self, channel_id: str) -> bool:
        """In progress, or performed and the channel sent back: a resync listing it leaves it alone."""
        return channel_id in self._runs or channel_id in self._sent_back

    def gone(self, channel_id: str) -> None:
        """The channel left Stasis (StasisEnd) or was destroyed."""
        now = _clock()
        while self._ended and self._ended[0][0] < now - ENDED_KEEP:
            _, old = self._ended.popleft()
            if self._sent_back.get(old) is True:
                del self._sent_back[old]
        if self._sent_back.get(channel_id) is False:
            self._sent_back[channel_id] = True
            self._ended.append((now, channel_id))
        if channel_id in self._runs:
            self._left.add(channel_id)

    def start(self, channel: ChannelInfo, args: tuple[str, ...]) -> None:
        """A channel entered Stasis with an agent operation: perform it, then send the channel back."""
        cid = channel.id
        ended = self._sent_back.get(cid)
        if ended is False or (ended is None and cid in self._runs):
            log.debug("agent operation of channel %s: already performed or running", cid)
            return
        self._sent_back.pop(cid, None)  # ended: the dialplan runs an operation again on this channel
        self._left.discard(cid)
        token = self._runs[cid] = next(self._tokens)

        async def run() -> None:
            try:
                outcome = await self._outcome(channel, args)
            except Exception:  # a bug here must not leave the channel in Stasis
                log.exception("agent operation %r of channel %s failed", args[:2], channel.id)
                outcome = Outcome("ERROR", "clusterq failed to perform the operation (see the stasis app's log)")
            log.info("agent operation %s of channel %s: %s (%s)", ",".join(args[:2])[:80], channel.id,
                     outcome.status, outcome.message)
            self.app.counters.agent_operation(outcome.status)
            if cid not in self._left:
                self._sent_back[cid] = False  # before the continue: its StasisEnd may come before the answer
            try:
                await self.app.actions.continue_channel(
                    channel.id, {VAR_STATUS: outcome.status, VAR_MESSAGE: outcome.message[:200]})
            finally:
                if self._runs.get(cid) == token:
                    del self._runs[cid]
                    self._left.discard(cid)

        self.app.serial.run(channel.id, run, "agent-op")

    async def _outcome(self, channel: ChannelInfo, args: tuple[str, ...]) -> Outcome:
        op = parse_agent_op(args)
        if isinstance(op, BadArgs):
            return Outcome("INVALID", op.message)
        admin = self.admin
        try:
            async with asyncio.timeout(self.timeout):
                if isinstance(op, AgentLogin):
                    req = login_request(op, channel, self.app.node_id)
                    if isinstance(req, Outcome):
                        return req
                    state = await admin.login_request(req)
                elif isinstance(op, AgentLogout):
                    state = await admin.logout(op.agent_id)
                elif isinstance(op, AgentPause):
                    state = await admin.pause(op.agent_id, op.reason)
                else:
                    state = await admin.unpause(op.agent_id)
        except TimeoutError:
            # This operation's own last error (the client's attribute is shared by concurrent operations).
            error = LAST_ERROR.get() if isinstance(admin, AdminClient) else admin.last_error
            last = f" (last error: {error})" if error else ""
            return Outcome("UNAVAILABLE", f"no coordinator leader answered within {self.timeout:g} s{last}; "
                                          "the change may still have been made")
        except grpc.aio.AioRpcError as exc:
            return refused(op, exc)
        return done(op, state)

    async def close(self) -> None:
        """Close the coordinator client (shutdown)."""
        if self._admin is not None:
            await self._admin.close()

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
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import grpc

from clusterq_common.leader_client import AdminClient
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

if TYPE_CHECKING:
    from stasis_app.node import NodeApp

log = logging.getLogger(__name__)

VAR_STATUS = "CLUSTERQ_AGENT_STATUS"
VAR_MESSAGE = "CLUSTERQ_MESSAGE"
# Seconds to find a leader and get its answer: the agent's phone waits this long at most.
OP_TIMEOUT = 5.0
_DONE = {AgentLogin: "LOGGEDIN", AgentLogout: "LOGGEDOUT", AgentPause: "PAUSED", AgentUnpause: "UNPAUSED"}
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
        self._active: set[str] = set()  # channels whose operation runs (a resync must not start it again)

    @property
    def admin(self) -> AgentAdmin:
        """The coordinator client, made on first use (it opens its channels lazily too)."""
        if self._admin is None:
            settings = self.app.settings
            self._admin = AdminClient(settings.coordinators, settings.coordinator_tls)
        return self._admin

    def owns(self, channel_id: str) -> bool:
        """Whether an operation of this channel is in progress."""
        return channel_id in self._active

    def start(self, channel: ChannelInfo, args: tuple[str, ...]) -> None:
        """A channel entered Stasis with an agent operation: perform it, then send the channel back."""
        self._active.add(channel.id)

        async def run() -> None:
            try:
                outcome = await self._outcome(channel, args)
            except Exception:  # a bug here must not leave the channel in Stasis
                log.exception("agent operation %r of channel %s failed", args[:2], channel.id)
                outcome = Outcome("ERROR", "clusterq failed to perform the operation (see the stasis app's log)")
            log.info("agent operation %s of channel %s: %s (%s)", ",".join(args[:2])[:80], channel.id,
                     outcome.status, outcome.message)
            try:
                await self.app.actions.continue_channel(
                    channel.id, {VAR_STATUS: outcome.status, VAR_MESSAGE: outcome.message[:200]})
            finally:
                self._active.discard(channel.id)

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
            last = f" (last error: {admin.last_error})" if admin.last_error else ""
            return Outcome("UNAVAILABLE", f"no coordinator leader answered within {self.timeout:g} s{last}")
        except grpc.aio.AioRpcError as exc:
            return refused(op, exc)
        return done(op, state)

    async def close(self) -> None:
        """Close the coordinator client (shutdown)."""
        if self._admin is not None:
            await self._admin.close()

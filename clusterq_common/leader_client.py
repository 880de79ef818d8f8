"""A small client for the coordinator's client-facing services that follows the leader.

Any replica answers a call it cannot serve with FAILED_PRECONDITION and the leader's address in the
`clusterq-leader` trailer; the client follows it, and retries while an election is under way.
With `tls` every address, the leader's too, is dialled over TLS with the same credentials.
Used by the `clusterq` CLI, the stasis app's agent operations from the dialplan
(stasis_app/call/agent_ops.py) and the tests."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from contextvars import ContextVar
from typing import Any, TypeVar

import grpc

from clusterq_common.tls import ClientTls, open_channel
from clusterq_proto.v1 import LEADER_TRAILER, admin_pb2, admin_pb2_grpc

T = TypeVar("T")

LAST_ERROR: ContextVar[str] = ContextVar("LAST_ERROR", default="")
"""The last refusal the current task's latest `call` met: `AdminClient.last_error` is the client's
(shared by concurrent calls), this one is the caller's own."""


class Unreachable(Exception):
    """Every address refused the connection for `AdminClient.give_up_refused` seconds."""


def _connection_refused(exc: grpc.aio.AioRpcError) -> bool:
    """grpc's UNAVAILABLE for a connection the address refused (nothing listens there)."""
    return "Connection refused" in (exc.details() or "")


class AdminClient:
    """Calls QueueAdmin / Agents / Stats on whichever replica leads (retries while none does)."""

    def __init__(self, addresses: Sequence[str], tls: ClientTls | None = None, *,
                 attempt_timeout: float | None = None, channel_options: Sequence[tuple[str, Any]] = (),
                 give_up_refused: float | None = None) -> None:
        """`attempt_timeout`: how long one address may take before the next is tried (None: each
        call's own gRPC deadline); a caller with a short overall budget sets it, so that one silent
        address (a hung replica that still accepts connections) cannot use up the budget alone.
        `give_up_refused`: a call raises `Unreachable` once every address has refused the connection
        for this long (None: it retries until its timeout, as a long-running client should)."""
        if not addresses:
            raise ValueError("no coordinator address")
        self.addresses = list(addresses)
        self.give_up_refused = give_up_refused
        self.tls = tls  # None: plaintext
        self.attempt_timeout = attempt_timeout
        self._options = list(channel_options)
        if give_up_refused is not None:
            # grpc waits about 1 s (then longer) before connecting again to an address that refused: a
            # replica back on it within give_up_refused would go unseen. Short, for a short-lived client.
            self._options += [("grpc.initial_reconnect_backoff_ms", 100), ("grpc.max_reconnect_backoff_ms", 250)]
        self._channels: dict[str, grpc.aio.Channel] = {}
        self._leader: str | None = None
        self._start = 0  # where the next search for a leader begins (moves on past silent addresses)
        # The last refusal seen ("UNAVAILABLE: ..."): says why no leader answered, e.g. a TLS handshake.
        self.last_error = ""

    def _channel(self, addr: str) -> grpc.aio.Channel:
        if addr not in self._channels:
            self._channels[addr] = open_channel(addr, self.tls, self._options)
        return self._channels[addr]

    def _refused(self, error: str) -> None:
        self.last_error = error
        LAST_ERROR.set(error)

    def _forget(self, addr: str) -> None:
        """`addr` did not serve a call: stop taking it for the leader and begin the next search past
        it, unless a concurrent call has learned better meanwhile (found the leader elsewhere, or moved
        the search on already): calls in flight share these two values."""
        if self._leader == addr:
            self._leader = None
        if self.addresses[self._start % len(self.addresses)] == addr:
            self._start += 1

    async def call(self, fn: Callable[[grpc.aio.Channel], Awaitable[T]], timeout: float = 15.0,
                   settled: Callable[[grpc.aio.AioRpcError], T | None] | None = None) -> T:
        """Run fn on the leader's channel, following FAILED_PRECONDITION hints and retrying UNAVAILABLE
        and silent addresses (see attempt_timeout).

        `settled`: after an attempt that got no answer in time (its change may have been made all the
        same), a refusal of a later attempt that `settled` maps to a result is that result, e.g. a
        logout retried after a silent first attempt that did log the agent out finds it NOT_FOUND."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        LAST_ERROR.set("")
        unanswered = False
        refused: set[str] = set()  # addresses whose connection was refused since anything else happened
        first_refusal = 0.0
        while True:
            addr = self._leader or self.addresses[self._start % len(self.addresses)]
            try:
                async with asyncio.timeout(self.attempt_timeout):
                    result = await fn(self._channel(addr))
                self._leader = addr
                return result
            except TimeoutError:
                # Silent: not the leader to remember, and not where the next search begins.
                self._refused(f"no answer from {addr} within {self.attempt_timeout:g} s")
                self._forget(addr)
                unanswered = True
                refused.clear()
                if loop.time() > deadline:
                    raise
                continue
            except asyncio.CancelledError:
                if self._leader == addr:
                    self._leader = None  # the caller gave up on it: the next call searches afresh
                raise
            except grpc.aio.AioRpcError as exc:
                if unanswered and settled is not None and (outcome := settled(exc)) is not None:
                    return outcome
                hint = dict(exc.trailing_metadata() or ()).get(LEADER_TRAILER)
                if not (isinstance(hint, str) and hint):
                    # A follower's redirect is no refusal: keeping it would hide the error of the hop after it
                    # (e.g. the leader's failed TLS handshake) from the operator.
                    self._refused(f"{exc.code().name}: {exc.details()}")
                retryable = exc.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.FAILED_PRECONDITION,
                                           grpc.StatusCode.DEADLINE_EXCEEDED)
                if exc.code() == grpc.StatusCode.DEADLINE_EXCEEDED:
                    unanswered = True
                if not retryable or loop.time() > deadline:
                    raise
                # A leader change makes the old leader's address refuse for a moment, and an election
                # answers UNAVAILABLE from running replicas: only every address refusing, for a short
                # round of retries, says that no coordinator runs there.
                if exc.code() == grpc.StatusCode.UNAVAILABLE and _connection_refused(exc):
                    if not refused:
                        first_refusal = loop.time()
                    refused.add(addr)
                else:
                    refused.clear()
                if (self.give_up_refused is not None and refused.issuperset(self.addresses)
                        and loop.time() - first_refusal >= self.give_up_refused):
                    raise Unreachable(f"no coordinator at {', '.join(self.addresses)}: connection refused") from exc
                if isinstance(hint, str) and hint:
                    self._leader = hint
                else:
                    self._forget(addr)
                await asyncio.sleep(0.05 if self._leader else 0.2)

    async def create_queue(self, q: admin_pb2.QueueDefinition) -> admin_pb2.QueueDefinition:
        """QueueAdmin.CreateQueue."""
        return await self.call(lambda ch: admin_pb2_grpc.QueueAdminStub(ch).CreateQueue(
            admin_pb2.CreateQueueRequest(queue=q), timeout=5))

    async def update_queue(self, q: admin_pb2.QueueDefinition) -> admin_pb2.QueueDefinition:
        """QueueAdmin.UpdateQueue."""
        return await self.call(lambda ch: admin_pb2_grpc.QueueAdminStub(ch).UpdateQueue(
            admin_pb2.UpdateQueueRequest(queue=q), timeout=5))

    async def login(self, agent_id: str, endpoint: str, home_node: str, queues: Sequence[str],
                    skills: dict[str, str] | None = None, paused: bool = False) -> admin_pb2.AgentState:
        """Agents.Login."""
        from clusterq_proto.v1 import common_pb2

        req = admin_pb2.LoginRequest(agent_id=agent_id, endpoint=endpoint, home_node=home_node,
                                     queues=[admin_pb2.QueueMembership(queue=q) for q in queues],
                                     skills=[common_pb2.Skill(key=k, value=v) for k, v in (skills or {}).items()],
                                     paused=paused)
        return await self.login_request(req)

    async def login_request(self, req: admin_pb2.LoginRequest) -> admin_pb2.AgentState:
        """Agents.Login with a request built by the caller (penalties, weights)."""
        return await self.call(lambda ch: admin_pb2_grpc.AgentsStub(ch).Login(req, timeout=5))

    async def logout(self, agent_id: str) -> admin_pb2.AgentState:
        """Agents.Logout. NOT_FOUND after an attempt that got no answer in time means that attempt
        logged the agent out: the result is the logged-out state, not the refusal."""

        def settled(exc: grpc.aio.AioRpcError) -> admin_pb2.AgentState | None:
            if exc.code() == grpc.StatusCode.NOT_FOUND:
                return admin_pb2.AgentState(agent_id=agent_id, state="logged_out")
            return None

        return await self.call(lambda ch: admin_pb2_grpc.AgentsStub(ch).Logout(
            admin_pb2.LogoutRequest(agent_id=agent_id), timeout=5), settled=settled)

    async def pause(self, agent_id: str, reason: str = "") -> admin_pb2.AgentState:
        """Agents.Pause."""
        return await self.call(lambda ch: admin_pb2_grpc.AgentsStub(ch).Pause(
            admin_pb2.PauseRequest(agent_id=agent_id, reason=reason), timeout=5))

    async def unpause(self, agent_id: str) -> admin_pb2.AgentState:
        """Agents.Unpause."""
        return await self.call(lambda ch: admin_pb2_grpc.AgentsStub(ch).Unpause(
            admin_pb2.UnpauseRequest(agent_id=agent_id), timeout=5))

    async def list_queues(self) -> list[admin_pb2.QueueDefinition]:
        """QueueAdmin.ListQueues."""
        resp = await self.call(lambda ch: admin_pb2_grpc.QueueAdminStub(ch).ListQueues(
            admin_pb2.ListQueuesRequest(), timeout=5))
        return list(resp.queues)

    async def delete_queue(self, name: str) -> None:
        """QueueAdmin.DeleteQueue (its waiting callers go back to the dialplan)."""
        await self.call(lambda ch: admin_pb2_grpc.QueueAdminStub(ch).DeleteQueue(
            admin_pb2.DeleteQueueRequest(name=name), timeout=5))

    async def set_caller_priority(self, call_id: str, priority: int) -> admin_pb2.SetCallerPriorityResponse:
        """QueueAdmin.SetCallerPriority (a waiting caller's new priority; its new position comes back)."""
        return await self.call(lambda ch: admin_pb2_grpc.QueueAdminStub(ch).SetCallerPriority(
            admin_pb2.SetCallerPriorityRequest(call_id=call_id, priority=priority), timeout=5))

    async def agent_state(self, agent_id: str) -> admin_pb2.AgentState:
        """Agents.GetState."""
        return await self.call(lambda ch: admin_pb2_grpc.AgentsStub(ch).GetState(
            admin_pb2.AgentStateRequest(agent_id=agent_id), timeout=5))

    async def snapshot(self, queue: str = "", include_callers: bool = False) -> admin_pb2.StatsSnapshot:
        """Stats.Snapshot."""
        return await self.call(lambda ch: admin_pb2_grpc.StatsStub(ch).Snapshot(
            admin_pb2.StatsRequest(queue=queue, include_callers=include_callers), timeout=5))

    async def close(self) -> None:
        """Close every channel."""
        for ch in self._channels.values():
            await ch.close()
        self._channels.clear()

"""Client-facing services: QueueAdmin, Agents, Stats (thin: validate, fenced write, apply)."""

from __future__ import annotations

import asyncio
import itertools
import logging
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeAlias, TypeVar

import grpc

from clusterq_common.dialplan import MAX_PRIORITY
from clusterq_common.text import clip, plain_text_error
from clusterq_proto.v1 import admin_pb2, admin_pb2_grpc
from coordinator.config import NAME_RE
from coordinator.definitions import DefinitionError, agent_from_pb, queue_from_pb, queue_to_pb
from coordinator.election.election import Fence, FenceLost
from coordinator.queue import (
    AgentLoggedIn,
    AgentLoggedOut,
    AgentPaused,
    AgentUnpaused,
    AgentView,
    CallerPriorityChanged,
    Event,
    QueueDefined,
    QueueDeleted,
)
from coordinator.replica import ReplicaState
from coordinator.rpc.errors import abort, abort_not_leader
from coordinator.rpc.stats_view import MAX_CALLERS_LISTED, add_callers, agent_state_pb, snapshot_pb
from coordinator.runtime import LeaderRuntime
from coordinator.store.kv import KvAmbiguous, KvError
from coordinator.store.queue_store import StoredAgent

# grpc ships no type information: servicer contexts are untyped here.
Ctx: TypeAlias = Any
T = TypeVar("T")
log = logging.getLogger(__name__)
# Waiting callers converted per loop step by Stats.Snapshot (about 1-4 ms of work each).
CALLERS_PER_STEP = 500
# Stats.Watch: 0 means the default; bounds keep a loop that re-checks leadership at a sane pace.
WATCH_DEFAULT, WATCH_MIN, WATCH_MAX = 1.0, 0.2, 3600.0


async def _leader(state: ReplicaState, context: Ctx) -> tuple[LeaderRuntime, Fence]:
    """The runtime and the fence of this replica's current term, read together (no await between)."""
    rt, fence = state.runtime, state.fence
    if rt is None or fence is None:
        await abort_not_leader(context, state.leader_address)
    return rt, fence


async def _still_leader(state: ReplicaState, rt: LeaderRuntime, context: Ctx) -> None:
    """After an await: refuse unless `rt`'s term is still this replica's current one. The fence read
    with `rt` then still holds too, and nothing is applied to a closed runtime."""
    if state.runtime is not rt or rt.closed:
        await abort_not_leader(context, state.leader_address)


async def _read(state: ReplicaState, rt: LeaderRuntime, context: Ctx, read: Awaitable[T]) -> T:
    """An etcd read made on behalf of `rt`'s term: store errors are UNAVAILABLE; leadership must
    still be this term's afterwards."""
    try:
        result = await read
    except KvError as exc:
        await abort(context, grpc.StatusCode.UNAVAILABLE, f"etcd read failed: {exc}; retry")
    await _still_leader(state, rt, context)
    return result


async def _fenced(state: ReplicaState, rt: LeaderRuntime, context: Ctx, write: Awaitable[T], *events: Event,
                  when: Callable[[T], bool] | None = None) -> T:
    """A fenced etcd write of `rt`'s term, then `events` applied to the engine (if `when(result)`, when
    given); every store error is UNAVAILABLE with a message that says whether the change was made.

    The write and the apply run in one task that the RPC's cancellation (a client's deadline; the
    client then retries) does not split: a change stored in etcd is also applied while the term
    lasts. Cancelled between the two, a logout was stored but never applied: the agent kept being
    offered calls, and every retry found no stored agent (NOT_FOUND)."""

    async def commit() -> T:
        result = await write
        if state.runtime is rt and not rt.closed and (when is None or when(result)):
            for event in events:
                rt.apply(event)
        return result

    task = asyncio.ensure_future(commit())
    task.add_done_callback(_outcome_seen)
    try:
        result = await asyncio.shield(task)
    except FenceLost:
        log.warning("fenced write refused by etcd: this replica no longer holds the leader key")
        await abort(context, grpc.StatusCode.UNAVAILABLE, "leadership lost during the write; retry on the new leader")
    except KvAmbiguous as exc:
        log.warning("etcd write outcome unknown: %s", exc)
        await abort(context, grpc.StatusCode.UNAVAILABLE,
                    f"etcd did not confirm the write; its outcome is unknown (read back before retrying): {exc}")
    except KvError as exc:
        await abort(context, grpc.StatusCode.UNAVAILABLE, f"etcd write failed, nothing changed: {exc}; retry")
    if state.runtime is not rt or rt.closed:
        # The change is stored (under the fence of rt's term), but that term is over: the next
        # leader loads it from etcd; this reply cannot describe the new leader's state.
        await abort(context, grpc.StatusCode.UNAVAILABLE,
                    "leadership moved right after the change was stored; the new leader applies it "
                    "(read it back there before retrying)")
    return result


def _outcome_seen(task: asyncio.Future[Any]) -> None:
    """Retrieve a commit's error when its RPC was cancelled before it ended (else asyncio logs
    "exception was never retrieved"); the client's retry learns the outcome from etcd."""
    if not task.cancelled() and (exc := task.exception()) is not None:
        log.info("a cancelled request's etcd write ended with %s: %s", type(exc).__name__, exc)


class QueueAdminServicer(admin_pb2_grpc.QueueAdminServicer):
    """Create / update / delete / list queue definitions (stored in etcd, applied to the engine)."""

    def __init__(self, state: ReplicaState) -> None:
        self.state = state

    async def _convert(self, q: admin_pb2.QueueDefinition, context: Ctx) -> object:
        try:
            return queue_from_pb(q)
        except DefinitionError as exc:
            await abort(context, grpc.StatusCode.INVALID_ARGUMENT, str(exc))

    async def CreateQueue(self, request: admin_pb2.CreateQueueRequest, context: Ctx) -> admin_pb2.QueueDefinition:
        """Create a queue; ALREADY_EXISTS if the name is taken."""
        rt, fence = await _leader(self.state, context)
        cfg = await self._convert(request.queue, context)
        from coordinator.queue import QueueConfig

        assert isinstance(cfg, QueueConfig)
        if cfg.name in rt.queues:
            await abort(context, grpc.StatusCode.ALREADY_EXISTS, f"queue {cfg.name} already exists")
        # etcd has the last word: a concurrent create of the same name passed the check above too.
        if not await _fenced(self.state, rt, context, self.state.store.create_queue(fence, cfg), QueueDefined(cfg),
                             when=bool):
            await abort(context, grpc.StatusCode.ALREADY_EXISTS, f"queue {cfg.name} already exists")
        return queue_to_pb(cfg)

    async def UpdateQueue(self, request: admin_pb2.UpdateQueueRequest, context: Ctx) -> admin_pb2.QueueDefinition:
        """Replace a queue's definition; waiting callers stay and the new rules apply."""
        rt, fence = await _leader(self.state, context)
        cfg = await self._convert(request.queue, context)
        from coordinator.queue import QueueConfig

        assert isinstance(cfg, QueueConfig)
        if cfg.name not in rt.queues:
            await abort(context, grpc.StatusCode.NOT_FOUND, f"queue {cfg.name} does not exist")
        await _fenced(self.state, rt, context, self.state.store.put_queue(fence, cfg), QueueDefined(cfg))
        return queue_to_pb(cfg)

    async def DeleteQueue(self, request: admin_pb2.DeleteQueueRequest, context: Ctx) -> admin_pb2.DeleteQueueResponse:
        """Delete a queue; its waiting callers continue in the dialplan with QUEUE_DELETED."""
        rt, fence = await _leader(self.state, context)
        if request.name not in rt.queues:
            await abort(context, grpc.StatusCode.NOT_FOUND, f"queue {request.name[:70]!r} does not exist")
        await _fenced(self.state, rt, context, self.state.store.delete_queue(fence, request.name),
                      QueueDeleted(request.name))
        return admin_pb2.DeleteQueueResponse()

    async def ListQueues(self, request: admin_pb2.ListQueuesRequest, context: Ctx) -> admin_pb2.ListQueuesResponse:
        """Every queue definition, by name."""
        rt, _ = await _leader(self.state, context)
        return admin_pb2.ListQueuesResponse(queues=[queue_to_pb(rt.queues[n]) for n in sorted(rt.queues)])

    async def SetCallerPriority(self, request: admin_pb2.SetCallerPriorityRequest,
                                context: Ctx) -> admin_pb2.SetCallerPriorityResponse:
        """Move a waiting caller to a new priority (runtime state only: its node keeps it)."""
        rt, _ = await _leader(self.state, context)
        call_id, priority = request.call_id, request.priority
        if not -MAX_PRIORITY <= priority <= MAX_PRIORITY:
            await abort(context, grpc.StatusCode.INVALID_ARGUMENT,
                        f"priority must be in -{MAX_PRIORITY}..{MAX_PRIORITY}")
        caller = rt.engine.caller(call_id) if call_id else None
        if caller is None:
            await abort(context, grpc.StatusCode.NOT_FOUND, f"no caller {clip(call_id)} is queued")
        assert caller is not None
        if caller.position is None:
            await abort(context, grpc.StatusCode.FAILED_PRECONDITION, f"caller {clip(call_id)} is talking to an agent")
        rt.apply(CallerPriorityChanged(call_id, priority))
        return admin_pb2.SetCallerPriorityResponse(queue=caller.queue, position=rt.engine.position(call_id) or 0,
                                                   priority=priority)


def _find_agent(rt: LeaderRuntime, agent_id: str) -> AgentView | None:
    return rt.engine.agent_state(agent_id)


class AgentsServicer(admin_pb2_grpc.AgentsServicer):
    """Agent login / logout / pause / unpause / state; login and pause persist in etcd."""

    def __init__(self, state: ReplicaState) -> None:
        self.state = state
        self._stored: dict[str, StoredAgent] = {}

    async def _known(self, rt: LeaderRuntime, agent_id: str, context: Ctx) -> StoredAgent:
        if not NAME_RE.match(agent_id):
            await abort(context, grpc.StatusCode.INVALID_ARGUMENT, f"agent_id must match {NAME_RE.pattern}")
        stored = (await _read(self.state, rt, context, self.state.store.load_agents())).get(agent_id)
        if stored is None:
            await abort(context, grpc.StatusCode.NOT_FOUND, f"agent {agent_id} is not logged in")
        return stored

    def _state(self, rt: LeaderRuntime, agent_id: str) -> admin_pb2.AgentState:
        view = _find_agent(rt, agent_id)
        return agent_state_pb(view, rt, agent_id)

    async def Login(self, request: admin_pb2.LoginRequest, context: Ctx) -> admin_pb2.AgentState:
        """Log an agent in (or replace its memberships/skills); unknown queues are NOT_FOUND."""
        rt, fence = await _leader(self.state, context)
        try:
            agent = agent_from_pb(request)
        except DefinitionError as exc:
            await abort(context, grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        missing = [m.queue for m in agent.memberships if m.queue not in rt.queues]
        if missing:
            await abort(context, grpc.StatusCode.NOT_FOUND, f"unknown queue(s): {', '.join(missing)}")
        # A login of an agent already logged in changes its memberships and skills; a pause it is in
        # stays (with its reason, as app_queue keeps a member's pause), in etcd as in the engine.
        current = _find_agent(rt, agent.agent_id)
        if current is not None and current.paused:
            paused, reason = True, current.pause_reason
        else:
            paused, reason = request.paused, "login" if request.paused else ""
        events: list[Event] = [AgentLoggedIn(agent)]
        if paused and (current is None or not current.paused):
            events.append(AgentPaused(agent.agent_id, reason))
        await _fenced(self.state, rt, context, self.state.store.put_agent(fence, StoredAgent(agent, paused, reason)),
                      *events)
        return self._state(rt, agent.agent_id)

    async def Logout(self, request: admin_pb2.LogoutRequest, context: Ctx) -> admin_pb2.AgentState:
        """Log an agent out (a call in progress continues; no new offers)."""
        rt, fence = await _leader(self.state, context)
        await self._known(rt, request.agent_id, context)
        await _fenced(self.state, rt, context, self.state.store.delete_agent(fence, request.agent_id),
                      AgentLoggedOut(request.agent_id))
        return admin_pb2.AgentState(agent_id=request.agent_id, state="logged_out")

    async def Pause(self, request: admin_pb2.PauseRequest, context: Ctx) -> admin_pb2.AgentState:
        """Pause an agent with a reason (at most 128 characters of one-line text without "|")."""
        rt, fence = await _leader(self.state, context)
        if len(request.reason) > 128:
            await abort(context, grpc.StatusCode.INVALID_ARGUMENT, "reason longer than 128 characters")
        # The reason goes into queue_log's PAUSE lines as typed: refused here, where the operator sees it.
        if error := plain_text_error("reason", request.reason):
            await abort(context, grpc.StatusCode.INVALID_ARGUMENT, error)
        stored = await self._known(rt, request.agent_id, context)
        await _fenced(self.state, rt, context, self.state.store.put_agent(
            fence, StoredAgent(stored.config, True, request.reason)), AgentPaused(request.agent_id, request.reason))
        return self._state(rt, request.agent_id)

    async def Unpause(self, request: admin_pb2.UnpauseRequest, context: Ctx) -> admin_pb2.AgentState:
        """Make a paused agent available again."""
        rt, fence = await _leader(self.state, context)
        stored = await self._known(rt, request.agent_id, context)
        await _fenced(self.state, rt, context, self.state.store.put_agent(fence, StoredAgent(stored.config, False, "")),
                      AgentUnpaused(request.agent_id))
        return self._state(rt, request.agent_id)

    async def GetState(self, request: admin_pb2.AgentStateRequest, context: Ctx) -> admin_pb2.AgentState:
        """The agent's current state as the leader sees it."""
        rt, _ = await _leader(self.state, context)
        if _find_agent(rt, request.agent_id) is None:
            await abort(context, grpc.StatusCode.NOT_FOUND, f"agent {request.agent_id[:70]!r} is not logged in")
        return self._state(rt, request.agent_id)


class StatsServicer(admin_pb2_grpc.StatsServicer):
    """Snapshots and a server-streaming watch of queue statistics."""

    def __init__(self, state: ReplicaState) -> None:
        self.state = state

    async def Snapshot(self, request: admin_pb2.StatsRequest, context: Ctx) -> admin_pb2.StatsSnapshot:
        """Statistics now (optionally for one queue, optionally with its waiting callers)."""
        rt, _ = await _leader(self.state, context)
        if request.queue and request.queue not in rt.queues:
            await abort(context, grpc.StatusCode.NOT_FOUND, f"queue {request.queue[:70]!r} does not exist")
        now = time.monotonic()
        snap = snapshot_pb(rt, request.queue, now)
        if request.include_callers:
            for stats in snap.queues:
                views = rt.engine.iter_waiting_callers(stats.queue, limit=MAX_CALLERS_LISTED)
                while chunk := list(itertools.islice(views, CALLERS_PER_STEP)):
                    add_callers(snap, chunk, now)
                    # Node streams go on between chunks: 10,000 callers listed at once held the
                    # leader's loop for 35-90 ms. The order and positions are those of the request.
                    await asyncio.sleep(0)
            # Not a snapshot of a term that ended while it was being listed.
            await _still_leader(self.state, rt, context)
        return snap

    async def Watch(self, request: admin_pb2.WatchRequest,
                    context: Ctx) -> AsyncIterator[admin_pb2.StatsSnapshot]:
        """A snapshot every interval (0.2 to 3600 s; 0 = 1 s) until the client cancels or leadership moves."""
        interval = request.interval or WATCH_DEFAULT
        # NaN passes no comparison (a sleep(nan) returns at once: a busy loop) and inf would never
        # wake up to re-check leadership: only finite intervals within the bounds are taken.
        if not (math.isfinite(interval) and WATCH_MIN <= interval <= WATCH_MAX):
            await abort(context, grpc.StatusCode.INVALID_ARGUMENT,
                        f"interval must be between {WATCH_MIN} and {WATCH_MAX:.0f} s (0 = {WATCH_DEFAULT} s)")
        while True:
            rt, _ = await _leader(self.state, context)
            if request.queue and request.queue not in rt.queues:
                await abort(context, grpc.StatusCode.NOT_FOUND, f"queue {request.queue[:70]!r} does not exist")
            yield snapshot_pb(rt, request.queue, time.monotonic())
            await asyncio.sleep(interval)

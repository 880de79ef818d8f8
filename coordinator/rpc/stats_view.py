"""Pure conversion of engine views into Stats / Agents protobuf messages."""

from __future__ import annotations

import math
from collections.abc import Iterable

from clusterq_proto.v1 import admin_pb2, common_pb2
from coordinator.queue import AgentView, CallerView
from coordinator.runtime import LeaderRuntime

# Engine agent states mapped onto the API's documented vocabulary: the engine's "busy" is a call
# clusterq made; its "inuse" (the device in use on a call clusterq did not make) is the API's "busy".
_STATE = {"busy": "in_call", "inuse": "busy"}
MAX_CALLERS_LISTED = 10_000  # per queue


def agent_state_pb(view: AgentView | None, rt: LeaderRuntime, agent_id: str) -> admin_pb2.AgentState:
    """An AgentState message (logged_out when the engine does not know the agent)."""
    if view is None:
        return admin_pb2.AgentState(agent_id=agent_id, state="logged_out")
    # The engine's times are the runtime clock's (monotonic), so idle time is measured on it too.
    idle = rt.clock() - view.last_call_end if math.isfinite(view.last_call_end) else 0.0
    return admin_pb2.AgentState(
        agent_id=view.agent_id, endpoint=view.endpoint, home_node=view.home_node,
        queues=[admin_pb2.QueueMembership(queue=m.queue, penalty=m.penalty, weight=m.weight)
                for m in view.memberships],
        skills=[common_pb2.Skill(key=k, value=v) for k, v in view.skills],
        state=_STATE.get(view.state, view.state), pause_reason=view.pause_reason,
        calls_taken=view.calls_taken, idle_for=max(0.0, idle), state_interface=view.state_interface,
        device_state=view.device_state)


def snapshot_pb(rt: LeaderRuntime, queue: str, now: float) -> admin_pb2.StatsSnapshot:
    """Statistics and agents of one queue (or all); waiting callers are added by `add_callers`."""
    snap = admin_pb2.StatsSnapshot(epoch=rt.epoch)
    for s in rt.engine.snapshot(now):
        if queue and s.queue != queue:
            continue
        snap.queues.append(admin_pb2.QueueStats(
            queue=s.queue, waiting=s.waiting, longest_wait=s.longest_wait, answered=s.answered,
            abandoned=s.abandoned, timed_out=s.timed_out, service_level_pct=s.service_level_pct,
            service_level2_pct=s.service_level2_pct, asa=s.asa, avg_talk_time=s.avg_talk_time,
            holdtime=s.holdtime_ewma, agents_logged_in=s.agents_logged_in, agents_available=s.agents_available,
            agents_paused=s.agents_paused, agents_busy=s.agents_busy))
    for a in rt.engine.agent_states():
        if not queue or queue in a.queues:
            snap.agents.append(agent_state_pb(a, rt, a.agent_id))
    return snap


def add_callers(snap: admin_pb2.StatsSnapshot, views: Iterable[CallerView], now: float) -> None:
    """Append waiting callers (engine views, in queue order) to a snapshot."""
    add = snap.callers.add
    for c in views:
        w = add()
        w.call_id, w.node_id, w.position, w.arrival_seq = c.call_id, c.node_id, c.position or 0, c.arrival_seq
        w.priority, w.waited, w.state = c.priority, max(0.0, now - c.joined_at), c.state

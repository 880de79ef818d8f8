"""Read-only views of the engine state: QueueStats, AgentView and CallerView builders, caller EWT."""

from __future__ import annotations

from coordinator.queue.decisions import AgentView, CallerView, QueueStats
from coordinator.queue.ewt import erlang_c_wait, ewma_wait
from coordinator.queue.state import AgentRec, CallerRec, EngineState, QueueRec

__all__ = ["agent_state", "agent_view", "caller_ewt", "caller_view", "queue_stats"]


def caller_view(c: CallerRec, position: int | None) -> CallerView:
    """What the engine tells about one caller (position None: connected)."""
    return CallerView(c.call_id, c.queue, c.node_id, c.arrival_seq, c.priority, c.state, c.joined_at, position)


def caller_ewt(st: EngineState, q: QueueRec, caller: CallerRec, now: float) -> float:
    """Estimated remaining wait of a caller queued in `q`, by the queue's method (Erlang C needs an
    average handle time and a logged-in, unpaused member on a live node whose device is not unavailable or
    invalid; otherwise the ewma estimate)."""
    counters = q.counters
    if q.config.ewt_method == "erlang_c":
        agents = sum(
            1 for m in q.members.values()
            if (a := st.agents.get(m.agent_id)) is not None and not a.paused and a.node_up and not a.device_down
        )
        aht = counters.aht
        if agents > 0 and aht is not None:
            return erlang_c_wait(q.line.position(caller.key), agents, aht, counters.arrival_rate)
    return ewma_wait(counters.holdtime_ewma, now - caller.joined_at)


def agent_state(a: AgentRec, now: float) -> str:
    """The AgentView state (see its docstring for the order)."""
    if not a.node_up or a.device_down:
        return "unavailable"
    if a.paused:
        return "paused"
    if a.calls:
        return "busy"
    if a.offer_id is not None:
        return "ringing"
    if a.wrapup_until > now:
        return "wrapup"
    if a.device_in_use:
        return "inuse"
    return "available"


def agent_view(a: AgentRec, now: float) -> AgentView:
    return AgentView(
        agent_id=a.config.agent_id,
        endpoint=a.config.endpoint,
        home_node=a.config.home_node,
        state=agent_state(a, now),
        paused=a.paused,
        pause_reason=a.pause_reason,
        queues=tuple(m.queue for m in a.config.memberships),
        calls_taken=a.calls_taken,
        offer_id=a.offer_id,
        call_ids=tuple(a.calls),
        memberships=a.config.memberships,
        skills=a.config.skills,
        last_call_end=a.last_call_end,
        state_interface=a.config.device,
        device_state=a.device_state or "UNKNOWN",
    )


def queue_stats(st: EngineState, q: QueueRec, now: float) -> QueueStats:
    c = q.counters
    oldest = q.line.oldest_joined_at()
    available = paused = busy = 0
    for m in q.members.values():
        a = st.agents.get(m.agent_id)
        if a is None:
            continue
        paused += a.paused
        busy += bool(a.calls) or a.offer_id is not None or a.device_in_use
        available += agent_state(a, now) == "available"
    return QueueStats(
        queue=q.config.name,
        waiting=len(q.line),
        longest_wait=max(0.0, now - oldest) if oldest is not None else 0.0,
        answered=c.answered,
        abandoned=c.abandoned,
        timed_out=c.timed_out,
        service_level_pct=c.sl_pct(),
        service_level2_pct=c.sl2_pct(),
        asa=c.asa(),
        avg_talk_time=c.avg_talk(),
        holdtime_ewma=c.holdtime_ewma,
        agents_logged_in=len(q.members),
        agents_available=available,
        agents_paused=paused,
        agents_busy=busy,
    )

"""Calls whose agent is known but whose offer is not: connected under an earlier leader (adopted from a
node's re-report) or connected and then failed before the node could bridge them."""

from __future__ import annotations

from coordinator.queue.decisions import CancelOffer, Decision
from coordinator.queue.events import CallAdopted, CallUnbridged
from coordinator.queue.ranking import rank_key
from coordinator.queue.state import CONNECTED, WAITING, CallerRec, EngineState
from coordinator.queue.timers import schedule_caller_timers

__all__ = ["adopt_call", "fail_connected_offer", "restore_agent_calls", "unbridge_call"]


def adopt_call(st: EngineState, ev: CallAdopted, now: float) -> None:
    """Record a call a node reports as connected: its agent stays busy with it until its CallEnded.

    Both the caller's node and the agent's node may report the same call, in either order; the agent's
    node does not know the caller's queue (and not always its node), so the caller's report fills them in."""
    existing = st.callers.get(ev.call_id)
    if existing is not None:
        if existing.adopted and not existing.queue and ev.queue:
            existing.node_id, existing.queue = ev.node_id, ev.queue
        return
    st.uid_counter += 1
    caller = CallerRec(uid=st.uid_counter, call_id=ev.call_id, queue=ev.queue, node_id=ev.node_id, priority=0,
                       arrival_seq=0, key=rank_key(0, 0, st.uid_counter), requirements=(), caller_number="",
                       caller_name="", joined_at=now, state=CONNECTED, agent_id=ev.agent_id,
                       offer_id=ev.offer_id, connected_at=now, adopted=True)
    st.callers[ev.call_id] = caller
    st.by_uid[caller.uid] = caller
    agent = st.agents.get(ev.agent_id)
    if agent is not None:
        agent.calls[ev.call_id] = None
        st.refresh_idle(ev.agent_id, now)


def restore_agent_calls(st: EngineState, agent_id: str) -> None:
    """An agent (re)logging in is busy with every call still connected to it (adopted before its login,
    or connected before a logout): it must not be offered while it talks, unless ringinuse allows."""
    agent = st.agents.get(agent_id)
    if agent is None:
        return
    for c in st.callers.values():
        if c.state == CONNECTED and c.agent_id == agent_id:
            agent.calls[c.call_id] = None


def fail_connected_offer(st: EngineState, offer_id: str, now: float, out: list[Decision]) -> None:
    """The agent leg of an offer already answered failed before its node bridged it (the agent hung up
    between answering and its node receiving Connect; a node reports a leg it has bridged as CallEnded,
    never as failed). The call never started: the caller waits again in its place and the agent is free."""
    caller = _connected_by_offer(st, offer_id)
    q = st.queues.get(caller.queue) if caller is not None else None
    if caller is None or q is None:
        return
    _release_failed_call(st, caller, now, out)
    caller.state = WAITING
    caller.tried.add(caller.agent_id)
    q.line.add(caller.key, caller.joined_at)
    st.dispatch_dirty = True
    caller.agent_id, caller.offer_id, caller.agent_node = "", "", ""
    schedule_caller_timers(st, caller, now)


def unbridge_call(st: EngineState, ev: CallUnbridged, now: float, out: list[Decision]) -> None:
    """See events.CallUnbridged: cancel the offer (the agent's node hangs its leg up), free the agent,
    drop the record."""
    caller = st.callers.get(ev.call_id)
    if caller is None or caller.state != CONNECTED:
        return
    _release_failed_call(st, caller, now, out)
    st.callers.pop(caller.call_id, None)
    st.by_uid.pop(caller.uid, None)


def _release_failed_call(st: EngineState, caller: CallerRec, now: float, out: list[Decision]) -> None:
    """A connected call that never started: its offer is cancelled "failed" (the agent's node hangs
    its leg up) and its agent is free again, with no call counted and no wrap-up."""
    agent = st.agents.get(caller.agent_id)
    if caller.offer_id:
        agent_node = agent.config.home_node if agent is not None else caller.node_id
        out.append(CancelOffer(caller.offer_id, caller.call_id, caller.agent_id, agent_node, caller.node_id,
                               "failed"))
    if caller.answered_wait is not None:
        # What answer_offer counted is taken back: no call happened (answered, ASA, service level,
        # the agent's calls for fewestcalls). The hold-time average keeps it: it cannot be unwound.
        q = st.queues.get(caller.queue)
        if q is not None:
            q.counters.on_answer_undone(caller.answered_wait, q.config.service_level)
            member = q.members.get(caller.agent_id)
            if member is not None and member.calls_taken:
                member.calls_taken -= 1
        if agent is not None and agent.calls_taken:
            agent.calls_taken -= 1
        caller.answered_wait = None
    if agent is not None:
        agent.calls.pop(caller.call_id, None)
        st.refresh_idle(caller.agent_id, now)


def _connected_by_offer(st: EngineState, offer_id: str) -> CallerRec | None:
    # Through the agents' calls (a handful each), not every caller: stale OfferFailed reports are common.
    for agent in st.agents.values():
        for call_id in agent.calls:
            c = st.callers.get(call_id)
            if c is not None and c.offer_id == offer_id and c.state == CONNECTED and not c.adopted:
                return c
    return None

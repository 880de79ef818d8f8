"""State transitions shared by the event handlers: offers ending, callers leaving, calls ending."""

from __future__ import annotations

from coordinator.queue.decisions import (
    AgentStateChanged,
    CallerExit,
    CancelOffer,
    Connect,
    Decision,
)
from coordinator.queue.model import CallerStatus
from coordinator.queue.state import CONNECTED, RINGING, WAITING, CallerRec, EngineState, OfferRec

__all__ = [
    "answer_offer",
    "cancel_offer",
    "drop_offer",
    "end_call",
    "exit_caller",
    "fail_offer",
    "remove_waiting_caller",
]

# Offer failures that count towards autopause (app_queue counts RINGNOANSWER; busy/unavailable only with
# autopausebusy/autopauseunavail, which default to off).
_AUTOPAUSE_REASONS = frozenset({"noanswer", "timeout"})
# Failures after which app_queue rings the next member at once (busy, congestion, no such device); the
# retry pause is for a member that rang out, or a round in which everyone failed.
_NEXT_AT_ONCE = frozenset({"busy", "unavailable", "failed"})


def drop_offer(st: EngineState, offer: OfferRec, now: float) -> CallerRec | None:
    """Forget a pending offer: free the agent; the caller goes back to waiting if nothing else rings."""
    st.offers.pop(offer.offer_id, None)
    agent = st.agents.get(offer.agent_id)
    if agent is not None and agent.offer_id == offer.offer_id:
        agent.offer_id = None
        st.refresh_idle(offer.agent_id, now)
    caller = st.by_uid.get(offer.caller_uid)
    if caller is not None:
        caller.offers.pop(offer.offer_id, None)
        if caller.state == RINGING and not caller.offers:
            caller.state = WAITING
            st.dispatch_dirty = True
    return caller


def cancel_offer(st: EngineState, offer: OfferRec, reason: str, now: float, out: list[Decision]) -> None:
    """Stop ringing an agent leg for a reason that is not the agent's fault (no autopause count)."""
    drop_offer(st, offer, now)
    out.append(CancelOffer(offer.offer_id, offer.call_id, offer.agent_id, offer.agent_node, offer.caller_node, reason))


def fail_offer(st: EngineState, offer: OfferRec, reason: str, now: float, out: list[Decision]) -> None:
    """The agent did not take the call: count for autopause, apply the queue's retry to the caller
    (at once after a ring timeout; after a busy-like failure only once the round is over)."""
    caller = drop_offer(st, offer, now)
    agent = st.agents.get(offer.agent_id)
    q = st.queues.get(offer.queue)
    if agent is not None and reason in _AUTOPAUSE_REASONS:
        agent.unanswered += 1
        limit = q.config.autopause_after if q is not None else 0
        if limit and agent.unanswered >= limit and not agent.paused:
            agent.paused, agent.pause_reason = True, "autopause"
            st.refresh_idle(offer.agent_id, now)
            out.append(AgentStateChanged(offer.agent_id, "paused", "autopause"))
    if caller is not None:
        if reason in _NEXT_AT_ONCE:
            caller.busy.add(offer.agent_id)  # out of the round until everyone free failed busy
        caller.tried.add(offer.agent_id)
        if caller.state == WAITING and q is not None and q.config.retry > 0:
            if reason in _NEXT_AT_ONCE:
                caller.retry_owed = True
            else:
                caller.retry_owed = False  # waited now
                caller.retry_until = now + q.config.retry
                st.add_timer(caller.retry_until, "wake", caller.call_id, caller.uid)


def remove_waiting_caller(st: EngineState, caller: CallerRec, reason: str, now: float, out: list[Decision],
                          want_position: bool = True) -> int:
    """Take a waiting/ringing caller out of its queue, cancelling its offers; returns its last position
    (0 when `want_position` is False: a caller that hung up is told nothing)."""
    q = st.queues.get(caller.queue)
    position = 0
    if q is not None:
        if want_position:
            position = q.line.position(caller.key)
        q.line.remove(caller.key, caller.joined_at)
    if caller.offers:
        for offer_id in list(caller.offers):
            offer = st.offers.get(offer_id)
            if offer is not None:
                cancel_offer(st, offer, reason, now, out)
    st.callers.pop(caller.call_id, None)
    st.by_uid.pop(caller.uid, None)
    return position


def exit_caller(st: EngineState, caller: CallerRec, status: CallerStatus, now: float, out: list[Decision]) -> None:
    """The engine sends a waiting caller back to its dialplan with `status`."""
    position = remove_waiting_caller(st, caller, status.value.lower(), now, out)
    q = st.queues.get(caller.queue)
    if q is not None and status is CallerStatus.TIMEOUT:
        q.counters.timed_out += 1
    elif q is not None and status is CallerStatus.NODE_LOST:
        q.counters.on_abandon(now - caller.joined_at, q.config.service_level)  # queue_log's ABANDON
    out.append(CallerExit(caller.call_id, caller.node_id, status, now - caller.joined_at, position))


def answer_offer(st: EngineState, offer: OfferRec, now: float, out: list[Decision]) -> None:
    """First answer wins: connect, cancel the caller's other legs, count the answer."""
    caller = st.by_uid.get(offer.caller_uid)
    agent = st.agents.get(offer.agent_id)
    if caller is None or caller.state != RINGING or agent is None:
        cancel_offer(st, offer, "stale", now, out)
        return
    q = st.queues[caller.queue]
    st.offers.pop(offer.offer_id, None)
    caller.offers.pop(offer.offer_id, None)
    q.line.remove(caller.key, caller.joined_at)
    # CONNECTED before cancelling the other legs, so dropping them does not put the caller back to waiting.
    caller.state = CONNECTED
    caller.agent_id, caller.offer_id, caller.connected_at = agent.config.agent_id, offer.offer_id, now
    caller.agent_node = offer.agent_node
    agent.offer_id = None
    agent.calls[caller.call_id] = None
    agent.unanswered = 0
    agent.calls_taken += 1
    member = q.members.get(agent.config.agent_id)
    if member is not None:
        member.calls_taken += 1
    caller.answered_wait = wait = now - caller.joined_at
    q.counters.on_answer(wait, q.config.service_level)
    st.refresh_idle(agent.config.agent_id, now)
    out.append(Connect(offer.offer_id, caller.call_id, agent.config.agent_id, caller.node_id, offer.agent_node))
    for other_id in list(caller.offers):
        other = st.offers.get(other_id)
        if other is not None:
            cancel_offer(st, other, "answered_elsewhere", now, out)


def end_call(st: EngineState, caller: CallerRec, agent_hung_up: bool, now: float, out: list[Decision]) -> None:
    """A connected call ended: talk time, agent wrap-up, and CONTINUE when the agent hung up first."""
    st.callers.pop(caller.call_id, None)
    st.by_uid.pop(caller.uid, None)
    q = st.queues.get(caller.queue)
    if q is not None:
        q.counters.on_talk(now - caller.connected_at)
    agent = st.agents.get(caller.agent_id)
    if agent is not None and caller.call_id in agent.calls:
        del agent.calls[caller.call_id]
        agent.last_call_end = now
        wrapup = st.wrapup_for(agent, q.config if q is not None else None)
        if wrapup > 0:
            agent.wrapup_until = max(agent.wrapup_until, now + wrapup)
            st.add_timer(agent.wrapup_until, "wrapup", caller.agent_id)
        st.refresh_idle(caller.agent_id, now)
    if agent_hung_up:
        out.append(
            CallerExit(
                caller.call_id,
                caller.node_id,
                CallerStatus.CONTINUE,
                caller.connected_at - caller.joined_at,
                0,
            )
        )

"""Agents in the engine: login (also a re-login that changes an agent), logout, pause."""

from __future__ import annotations

from coordinator.queue.decisions import AgentStateChanged, Decision
from coordinator.queue.devices import follow_device, forget_device
from coordinator.queue.handover import restore_agent_calls
from coordinator.queue.lifecycle import cancel_offer
from coordinator.queue.model import AgentConfig
from coordinator.queue.state import AgentRec, EngineState

__all__ = ["agent_logged_in", "agent_logged_out", "agent_paused"]


def agent_logged_in(st: EngineState, cfg: AgentConfig, now: float, out: list[Decision]) -> None:
    """A login, or a re-login changing the agent's settings: memberships, device, idle state."""
    agent = st.agents.get(cfg.agent_id)
    new_queues = {m.queue for m in cfg.memberships}
    old_device: tuple[str, str] | None = None
    if agent is None:
        agent = st.agents[cfg.agent_id] = AgentRec(cfg, available_since=now)
    else:
        old_device = (agent.config.home_node, agent.config.device)
        for m in agent.config.memberships:
            q = st.queues.get(m.queue)
            if m.queue not in new_queues and q is not None:
                q.members.pop(cfg.agent_id, None)
        offer = st.offers.get(agent.offer_id) if agent.offer_id else None
        if offer is not None and offer.queue not in new_queues:
            cancel_offer(st, offer, "membership_removed", now, out)
        agent.config = cfg
    agent.node_up = cfg.home_node not in st.lost_nodes and cfg.home_node not in st.detached_nodes
    follow_device(st, agent, old_device, out)
    restore_agent_calls(st, cfg.agent_id)
    for m in cfg.memberships:
        q = st.queues.get(m.queue)
        if q is not None:
            q.add_member(cfg.agent_id, m.penalty, m.weight)
    st.refresh_idle(cfg.agent_id, now)
    out.append(AgentStateChanged(cfg.agent_id, "logged_in", ""))


def agent_logged_out(st: EngineState, agent_id: str, now: float, out: list[Decision]) -> None:
    """A logout: its pending offer is cancelled, it leaves its queues and stops following its device."""
    agent = st.agents.get(agent_id)
    if agent is None:
        return
    offer = st.offers.get(agent.offer_id) if agent.offer_id else None
    if offer is not None:
        cancel_offer(st, offer, "agent_logged_out", now, out)
    for m in agent.config.memberships:
        q = st.queues.get(m.queue)
        if q is not None:
            q.members.pop(agent_id, None)
    forget_device(st, agent, out)
    del st.agents[agent_id]
    st.idle.pop(agent_id, None)
    out.append(AgentStateChanged(agent_id, "logged_out", ""))


def agent_paused(st: EngineState, agent_id: str, paused: bool, reason: str, now: float, out: list[Decision]) -> None:
    """Pause (with a reason) or unpause; unpausing also resets autopause's count of unanswered offers."""
    agent = st.agents.get(agent_id)
    if agent is None:
        return
    agent.paused, agent.pause_reason = paused, reason if paused else ""
    if not paused:
        agent.unanswered = 0
    st.refresh_idle(agent_id, now)
    out.append(AgentStateChanged(agent_id, "paused" if paused else "unpaused", reason))

"""Node liveness in the engine: a lost node's callers, offers and agents; its return."""

from __future__ import annotations

from coordinator.queue.decisions import AgentStateChanged, Decision
from coordinator.queue.devices import watch_list
from coordinator.queue.lifecycle import cancel_offer, end_call, exit_caller
from coordinator.queue.model import CallerStatus
from coordinator.queue.state import CONNECTED, EngineState

__all__ = ["node_alive", "node_attached", "node_detached", "node_lost"]


def node_lost(st: EngineState, node_id: str, now: float, out: list[Decision]) -> None:
    """A node is gone: its callers leave or their calls end, its offers are cancelled, its agents
    become unavailable."""
    st.lost_nodes.add(node_id)
    st.detached_nodes.discard(node_id)
    _attach_over(st, node_id)
    for caller in list(st.callers.values()):
        if caller.state != CONNECTED:
            if caller.node_id == node_id:
                exit_caller(st, caller, CallerStatus.NODE_LOST, now, out)
            continue
        agent = st.agents.get(caller.agent_id)
        if caller.node_id == node_id:
            end_call(st, caller, False, now, out)
        elif agent is not None and agent.config.home_node == node_id:
            # The caller's node is alive: send it back to its dialplan as if the agent hung up.
            end_call(st, caller, True, now, out)
    for offer in list(st.offers.values()):
        if offer.agent_node == node_id:
            cancel_offer(st, offer, "node_lost", now, out)
    for agent in st.agents.values():
        if agent.config.home_node == node_id and agent.node_up:
            agent.node_up = False
            st.refresh_idle(agent.config.agent_id, now)
            out.append(AgentStateChanged(agent.config.agent_id, "unavailable", "node_lost"))


def _attach_over(st: EngineState, node_id: str) -> None:
    """The node's attach ended (NodeAlive; NodeDetached or NodeLost when it failed): dispatch is no
    longer held for it, and the passes held meanwhile are owed as one."""
    if node_id in st.attaching:
        st.attaching.discard(node_id)
        st.dispatch_dirty = True


def node_detached(st: EngineState, node_id: str, now: float, out: list[Decision]) -> None:
    """A node's stream is down: neither its agents nor its callers are offered until it is back
    (NodeAlive) or lost (NodeLost). Offers already ringing there are left alone."""
    _attach_over(st, node_id)  # a failed attach: back to plain detached
    if node_id in st.lost_nodes or node_id in st.detached_nodes:
        return
    st.detached_nodes.add(node_id)
    for agent in st.agents.values():
        if agent.config.home_node == node_id and agent.node_up:
            agent.node_up = False
            st.refresh_idle(agent.config.agent_id, now)
            out.append(AgentStateChanged(agent.config.agent_id, "unavailable", "node_detached"))


def node_attached(st: EngineState, node_id: str, now: float, out: list[Decision]) -> None:
    """A node's stream is back and its re-report follows (see events.NodeAttached): no longer lost,
    still detached until NodeAlive."""
    st.lost_nodes.discard(node_id)
    node_detached(st, node_id, now, out)
    st.attaching.add(node_id)


def node_alive(st: EngineState, node_id: str, now: float, out: list[Decision]) -> None:
    """A lost or detached node is back: the agents homed there are available again, its callers
    can be offered again. It is told the whole list of devices to watch (its agents' devices keep
    their last reported state until it reports them again)."""
    out.append(watch_list(st, node_id))
    st.lost_nodes.discard(node_id)
    _attach_over(st, node_id)
    if node_id in st.detached_nodes:
        st.detached_nodes.discard(node_id)
        st.dispatch_dirty = True
    for agent in st.agents.values():
        if agent.config.home_node == node_id and not agent.node_up:
            agent.node_up = True
            st.refresh_idle(agent.config.agent_id, now)
            out.append(AgentStateChanged(agent.config.agent_id, "available", "node_alive"))

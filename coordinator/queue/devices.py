"""Agents' device state, like app_queue's state_interface: which devices each node watches, and what a
node's report of one means for the agents homed there.

Device names are per node ("PJSIP/alice" on node a is not "PJSIP/alice" on node b): the index is
node -> device -> DeviceRec, so a report costs O(agents using that device on that node) and a node's
watch list O(devices on that node). The engine tells each node what to watch (WatchDevices): the whole
list when the node (re)attaches (NodeAlive), then each change as agents log in, move or log out. A
device's state is kept while some agent there uses it, so an agent logging in on a device already
watched takes its known state; a device no longer used is forgotten (UNKNOWN if it is used again).
"""

from __future__ import annotations

from coordinator.queue.decisions import Decision, WatchDevices
from coordinator.queue.events import DeviceStateChanged
from coordinator.queue.state import NOT_REPORTED, AgentRec, DeviceRec, EngineState

__all__ = ["device_state_changed", "follow_device", "forget_device", "watch_list"]


def _release(st: EngineState, agent_id: str, node: str, device: str) -> bool:
    """Take an agent off a device's list; True when no agent on that node uses the device any more."""
    node_devices = st.devices.get(node)
    rec = node_devices.get(device) if node_devices is not None else None
    if node_devices is None or rec is None:
        return False
    rec.agents.pop(agent_id, None)
    if rec.agents:
        return False
    del node_devices[device]
    if not node_devices:
        del st.devices[node]
    return True


def follow_device(st: EngineState, agent: AgentRec, old: tuple[str, str] | None, out: list[Decision]) -> None:
    """After a login: the agent follows its configured (home node, device); `old` is the pair it
    followed before a re-login (None for a first login). A device nobody uses any more is unwatched,
    one nobody used before is watched; the agent takes the device's known state."""
    cfg = agent.config
    agent_id, node, device = cfg.agent_id, cfg.home_node, cfg.device
    if old == (node, device):
        return
    unwatch = old is not None and _release(st, agent_id, old[0], old[1])
    if not device:
        # No device to follow (see model.device_of): offered as if it were always free.
        agent.set_device_state(NOT_REPORTED)
        if unwatch and old is not None:
            out.append(WatchDevices(old[0], (), (old[1],), False))
        return
    node_devices = st.devices.get(node)
    if node_devices is None:
        node_devices = st.devices[node] = {}
    rec = node_devices.get(device)
    watch = rec is None
    if rec is None:
        rec = node_devices[device] = DeviceRec()
    rec.agents[agent_id] = None
    agent.set_device_state(rec.state)
    if unwatch and old is not None and old[0] == node and watch:
        out.append(WatchDevices(node, (device,), (old[1],), False))
        return
    if unwatch and old is not None:
        out.append(WatchDevices(old[0], (), (old[1],), False))
    if watch:
        out.append(WatchDevices(node, (device,), (), False))


def forget_device(st: EngineState, agent: AgentRec, out: list[Decision]) -> None:
    """At logout: the agent no longer follows its device; unwatched when nobody else there uses it."""
    cfg = agent.config
    if _release(st, cfg.agent_id, cfg.home_node, cfg.device):
        out.append(WatchDevices(cfg.home_node, (), (cfg.device,), False))


MAX_WATCH_LIST = 10_000
"""Devices in one replacing list, as many as a node watches (stasis_app/call/devices.py): 10,000
names of up to 256 characters stay within gRPC's default 4 MB message. Agents on devices past it are
offered as if their device were free (not reported)."""


def watch_list(st: EngineState, node: str) -> WatchDevices:
    """Everything `node` must watch, as a replacing list (sent when it (re)attaches)."""
    return WatchDevices(node, tuple(sorted(st.devices.get(node, ())))[:MAX_WATCH_LIST], (), True)


def device_state_changed(st: EngineState, ev: DeviceStateChanged, now: float) -> None:
    """A node's report: every agent homed there on that device takes the state. A report about a device
    nobody there uses (an unwatch still on its way) is ignored."""
    node_devices = st.devices.get(ev.node_id)
    rec = node_devices.get(ev.device) if node_devices is not None else None
    if rec is None or rec.state == ev.state:
        return
    rec.state = ev.state
    agents = st.agents
    for agent_id in rec.agents:
        agent = agents[agent_id]
        before = agent.device_in_use, agent.device_down
        agent.set_device_state(ev.state)
        # Only a change of what the state means for offers can pair the agent now (refresh_idle marks
        # dispatch dirty). Not the first reports after a takeover (not reported -> NOT_INUSE): with
        # callers nobody can take, one pass over every idle agent per report was O(N^2).
        if (agent.device_in_use, agent.device_down) != before:
            st.refresh_idle(agent_id, now)

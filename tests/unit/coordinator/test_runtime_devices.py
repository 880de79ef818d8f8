"""LeaderRuntime and agents' device state: a node's DeviceStateChanged reaches the engine as a report
about that node's device, and each WatchDevices decision reaches the link of the node it is for."""

from __future__ import annotations

import time

from clusterq_proto.v1 import node_pb2
from coordinator.node_link import NodeLink
from coordinator.queue import (
    AgentConfig,
    AgentLoggedIn,
    AgentLoggedOut,
    Membership,
    QueueConfig,
    QueueDefined,
    QueueEngine,
)
from coordinator.runtime import LeaderRuntime, SeqAllocator


async def _reserve(upto: int) -> None:
    return None


def _runtime() -> LeaderRuntime:
    rt = LeaderRuntime(QueueEngine(), 7, time.monotonic, SeqAllocator(1, 10**6, 10**5, _reserve), node_ttl=6.0)
    rt.apply(QueueDefined(QueueConfig("q")))
    return rt


def _login(agent_id: str, node: str, iface: str = "") -> AgentLoggedIn:
    return AgentLoggedIn(AgentConfig(agent_id, f"PJSIP/{agent_id}", node, (Membership("q"),), state_interface=iface))


def _watches(link: NodeLink) -> list[tuple[list[str], list[str], bool]]:
    out = []
    for msg in link.take_ready():
        for dec in msg.decisions.decisions:
            if dec.WhichOneof("decision") == "watch_devices":
                w = dec.watch_devices
                out.append((list(w.watch), list(w.unwatch), w.replace))
    return out


def _device_batch(*reports: tuple[str, str]) -> node_pb2.EventBatch:
    return node_pb2.EventBatch(events=[node_pb2.NodeEvent(
        device_state_changed=node_pb2.DeviceStateChanged(device=dev, state=state)) for dev, state in reports])


def _device_states(rt: LeaderRuntime) -> dict[str, str]:
    return {v.agent_id: v.device_state for v in rt.engine.agent_states()}


async def test_a_device_report_applies_to_the_agents_of_the_node_whose_stream_it_came_on() -> None:
    rt = _runtime()
    a, b = rt.attach("a", "ia"), rt.attach("b", "ib")
    rt.apply(_login("x", "a", "PJSIP/desk"))
    rt.apply(_login("y", "b", "PJSIP/desk"))
    assert rt.handle_batch(b, _device_batch(("PJSIP/desk", "INUSE"))) == []
    assert _device_states(rt) == {"x": "UNKNOWN", "y": "INUSE"}
    assert rt.handle_batch(a, _device_batch(("PJSIP/desk", "UNAVAILABLE"), ("", "INUSE"))) == [
        "device state: device is empty or longer than 256 characters"]
    assert _device_states(rt) == {"x": "UNAVAILABLE", "y": "INUSE"}
    # A node's report frees its agent at once: the waiting caller is offered in the same step.
    rt.handle_batch(a, node_pb2.EventBatch(events=[node_pb2.NodeEvent(
        call_joined=node_pb2.CallJoined(call_id="c1", queue="q"))]))
    a.take_ready()
    rt.handle_batch(b, _device_batch(("PJSIP/desk", "NOT_INUSE")))
    offers = [d.offer for m in b.take_ready() for d in m.decisions.decisions if d.WhichOneof("decision") == "offer"]
    assert [(o.call_id, o.agent_id) for o in offers] == [("c1", "y")]


async def test_watch_lists_reach_the_link_of_their_node_and_only_attached_nodes() -> None:
    rt = _runtime()
    a, b = rt.attach("a", "ia"), rt.attach("b", "ib")
    assert _watches(a) == [([], [], True)] and _watches(b) == [([], [], True)]
    rt.apply(_login("x", "b"))
    rt.apply(_login("late", "c"))  # node c is not attached: nothing to send it yet
    assert _watches(a) == [] and _watches(b) == [(["PJSIP/x"], [], False)]
    c = rt.attach("c", "ic")
    assert _watches(c) == [(["PJSIP/late"], [], True)]
    rt.apply(_login("x", "a"))  # moves to node a
    assert _watches(b) == [([], ["PJSIP/x"], False)] and _watches(a) == [(["PJSIP/x"], [], False)]
    rt.apply(AgentLoggedOut("x"))
    assert _watches(a) == [([], ["PJSIP/x"], False)]
    rt.detach(c)
    c = rt.attach("c", "ic2")
    assert _watches(c) == [(["PJSIP/late"], [], True)]


def _offers(link: NodeLink) -> list[tuple[str, str]]:
    return [(d.offer.call_id, d.offer.agent_id) for m in link.take_ready() for d in m.decisions.decisions
            if d.WhichOneof("decision") == "offer"]


async def test_a_new_leader_takes_the_device_states_a_node_registers_before_offering_its_agents() -> None:
    # A new leader knows no device state. The Register carries the node's last reports, so an agent on
    # a direct call (INUSE) is not offered in the moment before the node's fresh reports arrive.
    rt = _runtime()
    rt.expect_node("a")  # known from the registry, not attached yet: its agents wait for it
    rt.apply(_login("x", "a", "PJSIP/desk"))
    rt.apply(_login("y", "a", "PJSIP/phone"))
    b = rt.attach("b", "ib", node_pb2.Register(node_id="b", instance_id="ib", calls=[node_pb2.CallSnapshot(
        joined=node_pb2.CallJoined(call_id="c1", queue="q"), arrival_seq=0, state="waiting")]))
    assert _offers(b) == []
    a = rt.attach("a", "ia", node_pb2.Register(node_id="a", instance_id="ia", devices=[
        node_pb2.DeviceStateChanged(device="PJSIP/desk", state="INUSE"),
        node_pb2.DeviceStateChanged(device="PJSIP/phone", state="UNAVAILABLE"),
        node_pb2.DeviceStateChanged(device="", state="INUSE"),  # skipped with a warning, the rest applied
        node_pb2.DeviceStateChanged(device="PJSIP/nobody", state="INUSE")]))  # not an agent's: ignored
    assert _offers(b) == [] and _device_states(rt) == {"x": "INUSE", "y": "UNAVAILABLE"}
    rt.handle_batch(a, _device_batch(("PJSIP/desk", "NOT_INUSE")))  # the call on x's desk ended
    assert _offers(b) == [("c1", "x")]


async def test_without_registered_device_states_an_agent_is_offered_at_once() -> None:
    # The same attach from a node that reports no device state (an older stasis app, or devices it has
    # not read yet): the agent counts as free, as app_queue treats an UNKNOWN device.
    rt = _runtime()
    rt.expect_node("a")  # known from the registry, not attached yet: its agents wait for it
    rt.apply(_login("x", "a", "PJSIP/desk"))
    b = rt.attach("b", "ib", node_pb2.Register(node_id="b", instance_id="ib", calls=[node_pb2.CallSnapshot(
        joined=node_pb2.CallJoined(call_id="c1", queue="q"), arrival_seq=0, state="waiting")]))
    assert _offers(b) == []
    rt.attach("a", "ia", node_pb2.Register(node_id="a", instance_id="ia"))
    assert _offers(b) == [("c1", "x")]

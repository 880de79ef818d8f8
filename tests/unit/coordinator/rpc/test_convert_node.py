"""Validation at the node edge: what a node may say about a caller's wait and its snapshot."""

from __future__ import annotations

import math

import pytest

from clusterq_proto.v1 import node_pb2
from coordinator.queue import CallerJoined, CallerLeft
from coordinator.rpc.convert_node import (
    BadNodeEvent,
    adopted_call_error,
    adopted_event,
    agent_leg_error,
    joined_event,
    simple_event,
)


@pytest.mark.parametrize("waited", [math.inf, -math.inf, math.nan, -1.0, 86_401.0])
def test_an_impossible_wait_rejects_the_caller(waited: float) -> None:
    ev = joined_event(node_pb2.CallJoined(call_id="c1", queue="q", waited=waited), "n1", 1, 100.0)
    assert isinstance(ev, BadNodeEvent) and ev.call_id == "c1" and "waited" in ev.message


def test_the_wait_dates_the_join_back_on_the_leaders_clock() -> None:
    ev = joined_event(node_pb2.CallJoined(call_id="c1", queue="q", waited=30.0), "n1", 1, 100.0, re_report=True)
    assert isinstance(ev, CallerJoined) and ev.joined_at == 70.0 and ev.re_report


def _connected(call_id: str = "c1", queue: str = "q", agent_id: str = "ag", offer_id: str = "e1-1"
               ) -> node_pb2.CallSnapshot:
    return node_pb2.CallSnapshot(joined=node_pb2.CallJoined(call_id=call_id, queue=queue), state="connected",
                                 agent_id=agent_id, offer_id=offer_id)


@pytest.mark.parametrize(("snap", "fragment"), [
    (_connected(call_id=""), "call_id is empty"),
    (_connected(call_id="c" * 5_000_000), "call_id longer"),
    (_connected(queue="bad queue"), "invalid queue"),
    (_connected(agent_id="a" * 65), "invalid agent_id"),
    (_connected(offer_id="o" * 129), "offer_id longer"),
])
def test_an_unusable_connected_call_in_a_snapshot_is_named(snap: node_pb2.CallSnapshot, fragment: str) -> None:
    err = adopted_call_error(snap)
    assert err is not None and fragment in err and len(err) < 200
    assert adopted_call_error(_connected()) is None


@pytest.mark.parametrize(("leg", "fragment"), [
    (node_pb2.AgentLegSnapshot(offer_id="", agent_id="ag", call_id="c1"), "offer_id is empty"),
    (node_pb2.AgentLegSnapshot(offer_id="o1", agent_id="ag", call_id="c" * 129), "call_id longer"),
    (node_pb2.AgentLegSnapshot(offer_id="o1", agent_id="", call_id="c1"), "invalid agent_id"),
    (node_pb2.AgentLegSnapshot(offer_id="o1", agent_id="ag", call_id="c1", caller_node="n" * 65), "caller_node"),
])
def test_an_unusable_agent_leg_in_a_snapshot_is_named(leg: node_pb2.AgentLegSnapshot, fragment: str) -> None:
    err = agent_leg_error(leg)
    assert err is not None and fragment in err
    assert agent_leg_error(node_pb2.AgentLegSnapshot(offer_id="o1", agent_id="ag", call_id="c1")) is None


def test_a_call_end_names_its_offer_and_an_oversized_offer_id_is_refused() -> None:
    from coordinator.queue import CallEnded
    from coordinator.rpc.convert_node import simple_event

    ev = node_pb2.NodeEvent(call_ended=node_pb2.CallEnded(call_id="c1", offer_id="o7", agent_hung_up=True))
    assert simple_event(ev) == CallEnded("c1", True, "o7")
    long = node_pb2.NodeEvent(call_ended=node_pb2.CallEnded(call_id="c1", offer_id="o" * 129))
    bad = simple_event(long)
    assert isinstance(bad, BadNodeEvent) and "offer_id" in bad.message


def _device(device: str, state: str) -> node_pb2.NodeEvent:
    return node_pb2.NodeEvent(device_state_changed=node_pb2.DeviceStateChanged(device=device, state=state))


@pytest.mark.parametrize(("device", "state", "expected"), [
    ("PJSIP/alice", "INUSE", "INUSE"),
    ("Local/alice@agents", "NOT_INUSE", "NOT_INUSE"),
    ("PJSIP/alice", "UNAVAILABLE", "UNAVAILABLE"),
    # A state name this leader does not know (a newer Asterisk, a node bug) counts as UNKNOWN.
    ("PJSIP/alice", "SOMETHING_NEW", "UNKNOWN"),
    ("PJSIP/alice", "", "UNKNOWN"),
    ("PJSIP/alice", "inuse", "UNKNOWN"),
])
def test_a_device_state_is_about_the_device_of_the_node_that_sent_it(device: str, state: str, expected: str) -> None:
    from coordinator.queue import DeviceStateChanged
    from coordinator.rpc.convert_node import simple_event

    assert simple_event(_device(device, state), "n7") == DeviceStateChanged("n7", device, expected)


@pytest.mark.parametrize(("ev", "node", "fragment"), [
    (_device("", "INUSE"), "n1", "device is empty"),
    (_device("P" * 257, "INUSE"), "n1", "longer than 256"),
    (_device("PJSIP/alice", "INUSE"), "", "no known node"),
])
def test_an_unusable_device_state_is_refused(ev: node_pb2.NodeEvent, node: str, fragment: str) -> None:
    from coordinator.rpc.convert_node import simple_event

    bad = simple_event(ev, node)
    assert isinstance(bad, BadNodeEvent) and fragment in bad.message and len(bad.message) < 200


@pytest.mark.parametrize("dec", [
    ("n1", ("PJSIP/a", "Local/b@agents"), (), True),
    ("n1", (), (), True),  # watch nothing: still a decision the node must get
    ("n1", ("PJSIP/c",), ("PJSIP/a",), False),
])
def test_watch_devices_is_filled_into_the_node_message(dec: tuple[str, tuple[str, ...], tuple[str, ...], bool]) -> None:
    from coordinator.queue import WatchDevices
    from coordinator.rpc.convert_node import fill_decision

    out = node_pb2.Decision()
    assert fill_decision(out, WatchDevices(*dec))
    assert out.WhichOneof("decision") == "watch_devices"
    w = node_pb2.Decision.FromString(out.SerializeToString()).watch_devices
    assert (tuple(w.watch), tuple(w.unwatch), w.replace) == dec[1:]


@pytest.mark.parametrize(("reason", "key", "expected"), [
    ("exitkey", "5", ("exitkey", "5")),
    ("exitkey", "#", ("exitkey", "#")),
    ("exitkey", "55", ("exitkey", "")),  # one key, or none: queue_log logs what a node says
    ("exitkey", "x|y", ("exitkey", "")),  # never a separator into a queue_log line
    ("nonsense", "", ("hangup", "")),
])
def test_an_exit_key_rides_with_the_call_left(reason: str, key: str, expected: tuple[str, str]) -> None:
    ev = simple_event(node_pb2.NodeEvent(call_left=node_pb2.CallLeft(call_id="a-1", reason=reason, key=key)))
    assert isinstance(ev, CallerLeft) and (ev.reason, ev.key) == expected


@pytest.mark.parametrize(("waited", "connected_for", "expected"), [
    (95.0, 60.0, (95.0, 60.0)),
    (95.0, 96.0, (95.0, 0.0)),  # a call longer than the wait: not known
    (math.nan, 10.0, (0.0, 0.0)),
    (-1.0, 0.0, (0.0, 0.0)),
    (95.0, math.inf, (95.0, 0.0)),
])
def test_an_adopted_calls_durations_out_of_range_count_as_not_known(
        waited: float, connected_for: float, expected: tuple[float, float]) -> None:
    snap = node_pb2.CallSnapshot(joined=node_pb2.CallJoined(call_id="a-1", queue="q", waited=waited,
                                                            original_position=3),
                                 state="connected", agent_id="x", offer_id="e1-2", connected_for=connected_for)
    ev = adopted_event(snap, "a")
    assert (ev.waited, ev.connected_for, ev.original_position, ev.node_id) == (*expected, 3, "a")

"""`queue show` text: app_queue's layout from the coordinator's messages."""

from __future__ import annotations

import pytest

from clusterq_cli.show import agent_line, device_line, queue_show
from clusterq_proto.v1 import admin_pb2


def _agent(agent_id: str, state: str = "available", queue: str = "support", penalty: int = 0, calls: int = 0,
           idle: float = 0.0, reason: str = "") -> admin_pb2.AgentState:
    return admin_pb2.AgentState(agent_id=agent_id, endpoint=f"PJSIP/{agent_id}", home_node="a", state=state,
                                pause_reason=reason, calls_taken=calls, idle_for=idle,
                                queues=[admin_pb2.QueueMembership(queue=queue, penalty=penalty)])


@pytest.mark.parametrize(("agent", "line"), [
    (_agent("alice"), "alice (PJSIP/alice on a) (available) has taken no calls yet"),
    (_agent("bob", calls=1, idle=30.7), "bob (PJSIP/bob on a) (available) has taken 1 call (idle 30 secs)"),
    (_agent("carol", state="in_call", calls=5, penalty=2),
     "carol (PJSIP/carol on a) (penalty 2) (in_call) has taken 5 calls"),
    (_agent("dave", state="paused", reason="lunch"), "dave (PJSIP/dave on a) (paused:lunch) has taken no calls yet"),
    (_agent("erin", state="paused"), "erin (PJSIP/erin on a) (paused) has taken no calls yet"),
])
def test_member_lines(agent: admin_pb2.AgentState, line: str) -> None:
    assert agent_line(agent, "support") == line


def _device(agent_id: str, endpoint: str, iface: str, device_state: str, state: str = "available"
            ) -> admin_pb2.AgentState:
    return admin_pb2.AgentState(agent_id=agent_id, endpoint=endpoint, home_node="b", state=state,
                                state_interface=iface, device_state=device_state,
                                queues=[admin_pb2.QueueMembership(queue="support")])


@pytest.mark.parametrize(("agent", "line"), [
    (_device("alice", "PJSIP/alice", "PJSIP/alice", "NOT_INUSE"),
     "alice (PJSIP/alice on b) (available) (Not in use) has taken no calls yet"),
    (_device("bob", "PJSIP/bob", "PJSIP/bob", "INUSE", "busy"), "bob (PJSIP/bob on b) (busy) (In use) has taken no calls yet"),
    (_device("carol", "Local/carol@agents/n", "Local/carol@agents", "UNAVAILABLE", "unavailable"),
     "carol (Local/carol@agents/n on b) (unavailable) (Unavailable) has taken no calls yet"),
    (_device("dave", "Local/dave@agents/n", "PJSIP/dave", "INVALID", "unavailable"),
     "dave (Local/dave@agents/n from PJSIP/dave on b) (unavailable) (Invalid) has taken no calls yet"),
    (_device("erin", "PJSIP/erin", "PJSIP/erin", "RINGINUSE", "in_call"),
     "erin (PJSIP/erin on b) (in_call) (Ring+Inuse) has taken no calls yet"),
    (_device("fred", "PJSIP/fred", "PJSIP/fred", "UNKNOWN"), "fred (PJSIP/fred on b) (available) (Unknown) has taken no calls yet"),
])
def test_member_lines_show_the_device_like_app_queue(agent: admin_pb2.AgentState, line: str) -> None:
    assert agent_line(agent, "support") == line


def test_agent_show_names_the_device_and_its_state() -> None:
    agent = _device("dave", "Local/dave@agents/n", "PJSIP/dave", "ONHOLD", "busy")
    assert device_line(agent) == "   device PJSIP/dave: ONHOLD"


def test_a_penalty_is_shown_for_the_queue_being_shown_only() -> None:
    agent = _agent("alice", penalty=3, queue="sales")
    assert "(penalty" not in agent_line(agent, "support") and "(penalty 3)" in agent_line(agent, "sales")


def test_a_queue_with_members_and_callers_in_position_order() -> None:
    definition = admin_pb2.QueueDefinition(name="support", strategy="leastrecent", maxlen=10, weight=2,
                                           service_level=30)
    snap = admin_pb2.StatsSnapshot(
        queues=[admin_pb2.QueueStats(queue="support", waiting=2, holdtime=12.4, avg_talk_time=83.6, answered=10,
                                     abandoned=2, service_level_pct=80, service_level2_pct=85)],
        agents=[_agent("bob", state="ringing"), _agent("alice", calls=3, idle=61), _agent("zed", queue="sales")],
        callers=[admin_pb2.WaitingCaller(call_id="b-2", node_id="b", position=2, waited=5, priority=0),
                 admin_pb2.WaitingCaller(call_id="a-1", node_id="a", position=1, waited=95.9, priority=3,
                                         state="ringing")])
    assert queue_show(definition, snap) == [
        "support has 2 calls (max 10) in 'leastrecent' strategy (12s holdtime, 84s talktime), W:2, C:10, A:2, "
        "SL:80.0%, SL2:85.0% within 30s",
        "   Members:",
        "      alice (PJSIP/alice on a) (available) has taken 3 calls (idle 61 secs)",
        "      bob (PJSIP/bob on a) (ringing) has taken no calls yet",
        "   Callers:",
        "      1. a-1 on a (wait: 1:35, prio: 3) (ringing)",
        "      2. b-2 on b (wait: 0:05, prio: 0)",
    ]


def test_an_empty_queue_with_the_defaults() -> None:
    definition = admin_pb2.QueueDefinition(name="sales")
    assert queue_show(definition, admin_pb2.StatsSnapshot()) == [
        "sales has 0 calls (max unlimited) in 'ringall' strategy (0s holdtime, 0s talktime), W:0, C:0, A:0, "
        "SL:0.0%, SL2:0.0% within 60s",
        "   No Members",
        "   No Callers",
    ]

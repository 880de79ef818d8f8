"""QueueAdmin / Agents refuse hostile input with INVALID_ARGUMENT and a short message."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any

import grpc
import pytest

from clusterq_proto.v1 import admin_pb2, admin_pb2_grpc
from tests.unit.coordinator.rpc.conftest import Replica

BIG = "x" * 20_000
Q = admin_pb2.QueueDefinition


async def _refusal(call: Awaitable[Any]) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await call
    return err.value.code(), err.value.details() or ""


@pytest.mark.parametrize("queue", [
    Q(name=BIG), Q(name="q1", strategy=BIG), Q(name="q1", ewt_method=BIG), Q(name="q1", announce_position=BIG),
    Q(name="q1", announce_holdtime=BIG), Q(name="q1", joinempty=[BIG]),
    Q(name="q1", leavewhenempty=[f"c{i:05d}" * 10 for i in range(500)]),
], ids=["name", "strategy", "ewt_method", "announce_position", "announce_holdtime", "joinempty", "leavewhenempty"])
async def test_a_refused_definition_is_invalid_argument_however_long_its_values(
        channel: grpc.aio.Channel, queue: admin_pb2.QueueDefinition) -> None:
    admin = admin_pb2_grpc.QueueAdminStub(channel)
    for call in (admin.CreateQueue(admin_pb2.CreateQueueRequest(queue=queue)),
                 admin.UpdateQueue(admin_pb2.UpdateQueueRequest(queue=queue))):
        code, message = await _refusal(call)
        assert code == grpc.StatusCode.INVALID_ARGUMENT and len(message) < 500


async def test_a_timer_below_a_second_is_refused(channel: grpc.aio.Channel) -> None:
    admin = admin_pb2_grpc.QueueAdminStub(channel)
    for queue in (Q(name="tiny", periodic_announce=["hello"], periodic_announce_frequency=1e-12),
                  Q(name="tiny", announce_frequency=1e-12, min_announce_frequency=0), Q(name="tiny", ring_timeout=1e-6)):
        code, message = await _refusal(admin.CreateQueue(admin_pb2.CreateQueueRequest(queue=queue)))
        assert code == grpc.StatusCode.INVALID_ARGUMENT and "at least 1 s" in message


LOGIN = admin_pb2.LoginRequest(agent_id="alice", endpoint="PJSIP/alice", home_node="a",
                               queues=[admin_pb2.QueueMembership(queue="support")])


@pytest.mark.parametrize("reason", ["lunch\n1700000000|fake-call|support|bob|CONNECT|5|x|1", "a|b", "nul\x00",
                                    "tab\t", "line\u2028separator"])
async def test_a_pause_reason_that_would_forge_queue_log_fields_or_lines_is_refused(
        replica: Replica, channel: grpc.aio.Channel, reason: str) -> None:
    agents = admin_pb2_grpc.AgentsStub(channel)
    replica.attach_node()
    await agents.Login(LOGIN)
    code, message = await _refusal(agents.Pause(admin_pb2.PauseRequest(agent_id="alice", reason=reason)))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and message.startswith("reason must not contain")
    assert (await agents.GetState(admin_pb2.AgentStateRequest(agent_id="alice"))).state == "available"
    paused = await agents.Pause(admin_pb2.PauseRequest(agent_id="alice", reason="lunch break: back at 2"))
    assert paused.pause_reason == "lunch break: back at 2"


@pytest.mark.parametrize("endpoint", ["PJSIP/x\n|y", "PJSIP/x\x00", "PJSIP/a b"])
async def test_an_endpoint_with_control_characters_or_spaces_is_refused(channel: grpc.aio.Channel,
                                                                       endpoint: str) -> None:
    login = admin_pb2.LoginRequest()
    login.CopyFrom(LOGIN)
    login.endpoint = endpoint
    code, message = await _refusal(admin_pb2_grpc.AgentsStub(channel).Login(login))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "endpoint must be a dial string" in message


@pytest.mark.parametrize("queue", [Q(name="q1", music_class="a\nb|c"), Q(name="q1", exit_context="ctx\x00\n"),
                                   Q(name="q1", periodic_announce=["hel\x00lo"], periodic_announce_frequency=30)],
                         ids=["music_class", "exit_context", "periodic_announce"])
async def test_names_given_to_asterisk_refuse_control_characters(channel: grpc.aio.Channel,
                                                                 queue: admin_pb2.QueueDefinition) -> None:
    code, message = await _refusal(admin_pb2_grpc.QueueAdminStub(channel).CreateQueue(
        admin_pb2.CreateQueueRequest(queue=queue)))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "control characters" in message


async def test_a_login_with_one_skill_twice_is_refused(replica: Replica, channel: grpc.aio.Channel) -> None:
    """etcd stores the skills as a mapping: the next leader would silently know one of the two."""
    login = admin_pb2.LoginRequest()
    login.CopyFrom(LOGIN)
    login.skills.add(key="language", value="en")
    login.skills.add(key="language", value="de")
    code, message = await _refusal(admin_pb2_grpc.AgentsStub(channel).Login(login))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "skill 'language' given more than once" in message
    assert "alice" not in await replica.state.store.load_agents()

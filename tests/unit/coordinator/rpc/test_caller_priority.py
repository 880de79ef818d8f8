"""QueueAdmin.SetCallerPriority against an in-process replica: the caller moves in its line, its node
is told, and bad requests get a status with a message."""

from __future__ import annotations

import grpc
import pytest

from clusterq_proto.v1 import admin_pb2, admin_pb2_grpc, node_pb2
from coordinator.node_link import NodeLink
from tests.unit.coordinator.rpc.conftest import Replica


def _join(link: NodeLink, replica: Replica, *call_ids: str) -> None:
    rt = replica.state.runtime
    assert rt is not None
    rt.handle_batch(link, node_pb2.EventBatch(events=[
        node_pb2.NodeEvent(call_joined=node_pb2.CallJoined(call_id=c, queue="support")) for c in call_ids]))


async def test_a_waiting_caller_moves_up_and_its_node_is_told(replica: Replica, channel: grpc.aio.Channel) -> None:
    rt = replica.state.runtime
    assert rt is not None
    link = rt.attach("a", "ia")
    _join(link, replica, "a-1", "a-2", "a-3")
    link.take_ready()
    admin = admin_pb2_grpc.QueueAdminStub(channel)
    moved = await admin.SetCallerPriority(admin_pb2.SetCallerPriorityRequest(call_id="a-3", priority=4))
    assert (moved.queue, moved.position, moved.priority) == ("support", 1, 4)
    told = [d.caller_priority for m in link.take_ready() for d in m.decisions.decisions
            if d.WhichOneof("decision") == "caller_priority"]
    assert [(t.call_id, t.priority) for t in told] == [("a-3", 4)]
    assert [v.call_id for v in rt.engine.waiting_callers("support")] == ["a-3", "a-1", "a-2"]


@pytest.mark.parametrize(("call_id", "priority", "code"), [
    ("nobody", 1, grpc.StatusCode.NOT_FOUND),
    ("", 1, grpc.StatusCode.NOT_FOUND),
    ("a-1", 2_000_000, grpc.StatusCode.INVALID_ARGUMENT),
    ("a-talking", 1, grpc.StatusCode.FAILED_PRECONDITION),
])
async def test_bad_requests_are_refused_with_a_message(replica: Replica, channel: grpc.aio.Channel, call_id: str,
                                                        priority: int, code: grpc.StatusCode) -> None:
    rt = replica.state.runtime
    assert rt is not None
    link = rt.attach("a", "ia")
    replica.attach_node("b")
    agents = admin_pb2_grpc.AgentsStub(channel)
    await agents.Login(admin_pb2.LoginRequest(agent_id="x", endpoint="PJSIP/x", home_node="b",
                                              queues=[admin_pb2.QueueMembership(queue="support")]))
    _join(link, replica, "a-talking")
    [offer] = [d.offer for m in link.take_ready() for d in m.decisions.decisions if d.WhichOneof("decision") == "offer"]
    rt.handle_batch(link, node_pb2.EventBatch(events=[node_pb2.NodeEvent(
        agent_leg_answered=node_pb2.AgentLegAnswered(offer_id=offer.offer_id))]))  # (from the caller's node here)
    _join(link, replica, "a-1")
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await admin_pb2_grpc.QueueAdminStub(channel).SetCallerPriority(
            admin_pb2.SetCallerPriorityRequest(call_id=call_id, priority=priority))
    assert err.value.code() == code and err.value.details()

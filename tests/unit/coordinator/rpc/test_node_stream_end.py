"""How a node's Connect stream ends: OK after the node's own half-close, INVALID_ARGUMENT for a message
that does not parse, ABORTED only when a newer stream of the same instance replaced it."""

from __future__ import annotations

import asyncio

import grpc
import pytest

from clusterq_proto.v1 import node_pb2, node_pb2_grpc
from tests.unit.coordinator.rpc.conftest import Replica

CONNECT = "/clusterq.v1.NodeService/Connect"


def _register(node: str, instance: str) -> node_pb2.NodeMessage:
    return node_pb2.NodeMessage(register=node_pb2.Register(node_id=node, instance_id=instance))


def _bad_utf8_events() -> bytes:
    """A NodeMessage whose CallLeft.call_id is not UTF-8: it does not parse on the coordinator."""
    good = node_pb2.NodeMessage(events=node_pb2.EventBatch(events=[node_pb2.NodeEvent(
        node_seq=1, call_left=node_pb2.CallLeft(call_id="zz", reason="hangup"))])).SerializeToString()
    return good.replace(b"zz", b"\xff\xfe")


async def _drain(call: grpc.aio.StreamStreamCall) -> grpc.StatusCode:
    """Read to the end of the stream; its status code."""
    try:
        while await asyncio.wait_for(call.read(), 5) is not grpc.aio.EOF:
            pass
    except grpc.aio.AioRpcError as exc:
        return exc.code()
    return await call.code()


async def test_a_clean_half_close_ends_ok_and_detaches(replica: Replica, channel: grpc.aio.Channel) -> None:
    call = node_pb2_grpc.NodeServiceStub(channel).Connect()
    await call.write(_register("a", "i1"))
    assert (await asyncio.wait_for(call.read(), 5)).WhichOneof("body") == "registered"
    await call.done_writing()
    assert await _drain(call) == grpc.StatusCode.OK
    assert replica.state.runtime is not None and "a" not in replica.state.runtime.links


async def test_only_a_real_replacement_ends_aborted(replica: Replica, channel: grpc.aio.Channel) -> None:
    stub = node_pb2_grpc.NodeServiceStub(channel)
    old = stub.Connect()
    await old.write(_register("a", "i1"))
    assert (await asyncio.wait_for(old.read(), 5)).WhichOneof("body") == "registered"
    new = stub.Connect()
    await new.write(_register("a", "i1"))  # the same instance reconnects
    assert (await asyncio.wait_for(new.read(), 5)).WhichOneof("body") == "registered"
    with pytest.raises(grpc.aio.AioRpcError) as err:
        while await asyncio.wait_for(old.read(), 5) is not grpc.aio.EOF:
            pass
    assert err.value.code() == grpc.StatusCode.ABORTED and "replaced" in (err.value.details() or "")
    new.cancel()


@pytest.mark.parametrize("first", [True, False], ids=["as-register", "after-register"])
async def test_a_message_that_does_not_parse_ends_invalid_argument(
        replica: Replica, channel: grpc.aio.Channel, first: bool) -> None:
    raw = channel.stream_stream(CONNECT, request_serializer=lambda b: b,
                                response_deserializer=node_pb2.CoordinatorMessage.FromString)
    call = raw()
    if not first:
        await call.write(_register("b", "i1").SerializeToString())
        assert (await asyncio.wait_for(call.read(), 5)).WhichOneof("body") == "registered"
    await call.write(_bad_utf8_events())
    with pytest.raises(grpc.aio.AioRpcError) as err:
        while await asyncio.wait_for(call.read(), 5) is not grpc.aio.EOF:
            pass
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "does not parse" in (err.value.details() or "")
    assert replica.state.runtime is not None and "b" not in replica.state.runtime.links


async def test_an_oversized_batch_is_refused_whole_and_ends_the_stream(replica: Replica,
                                                                         channel: grpc.aio.Channel) -> None:
    from coordinator.runtime import MAX_EVENTS_PER_BATCH

    call = node_pb2_grpc.NodeServiceStub(channel).Connect()
    await call.write(_register("a", "i1"))
    assert (await asyncio.wait_for(call.read(), 5)).WhichOneof("body") == "registered"
    joins = [node_pb2.NodeEvent(call_joined=node_pb2.CallJoined(call_id=f"a-{i}", queue="support"))
             for i in range(MAX_EVENTS_PER_BATCH + 1)]
    await call.write(node_pb2.NodeMessage(events=node_pb2.EventBatch(events=joins)))
    with pytest.raises(grpc.aio.AioRpcError) as err:
        while await asyncio.wait_for(call.read(), 5) is not grpc.aio.EOF:
            pass
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "at most" in (err.value.details() or "")
    rt = replica.state.runtime
    assert rt is not None and not rt.engine.holds("a-0")  # nothing of it applied: the node re-registers

"""NodeService.Connect against an in-process replica: leadership lost during the handshake, and a
Register the runtime cannot take."""

from __future__ import annotations

import asyncio

import grpc
import pytest

from clusterq_proto.v1 import LEADER_TRAILER, node_pb2, node_pb2_grpc
from tests.unit.coordinator.rpc.conftest import Replica

# Time for the server to start the handler and reach its first read of the stream.
HANDLER_STARTS = 0.2


def _register(node: str, instance: str) -> node_pb2.NodeMessage:
    return node_pb2.NodeMessage(register=node_pb2.Register(node_id=node, instance_id=instance))


async def _status(call: grpc.aio.StreamStreamCall) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await asyncio.wait_for(call.read(), 5)
    return err.value


async def test_leadership_lost_while_waiting_for_register_refuses_the_node(
        replica: Replica, channel: grpc.aio.Channel) -> None:
    call = node_pb2_grpc.NodeServiceStub(channel).Connect()
    await asyncio.sleep(HANDLER_STARTS)  # the handler now holds the runtime and waits for Register
    old = replica.state.runtime
    assert old is not None
    replica.lose_leadership()
    await call.write(_register("a", "inst-1"))
    err = await _status(call)
    assert err.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert dict(err.trailing_metadata() or ()).get(LEADER_TRAILER) == "10.0.0.9:50051"
    assert not old.links, "nothing attached to the closed runtime"


async def test_leadership_won_again_while_waiting_for_register_refuses_the_old_term(
        replica: Replica, channel: grpc.aio.Channel) -> None:
    call = node_pb2_grpc.NodeServiceStub(channel).Connect()
    await asyncio.sleep(HANDLER_STARTS)
    old = replica.state.runtime
    assert old is not None
    replica.lose_leadership()
    new = await replica.lead_again()
    await call.write(_register("a", "inst-1"))
    err = await _status(call)
    assert err.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert not old.links and not new.links
    # The node reconnects and is served by the new term.
    again = node_pb2_grpc.NodeServiceStub(channel).Connect()
    await again.write(_register("a", "inst-1"))
    reg = await asyncio.wait_for(again.read(), 5)
    assert reg.registered.epoch == new.epoch
    again.cancel()


async def test_a_register_the_runtime_refuses_ends_the_stream_and_detaches(
        replica: Replica, channel: grpc.aio.Channel, monkeypatch: pytest.MonkeyPatch) -> None:
    rt = replica.state.runtime
    assert rt is not None
    from coordinator import runtime as runtime_module

    real_register = runtime_module.apply_register

    def refuse(rt: object, link: object, reg: node_pb2.Register) -> None:
        raise ValueError("call a-1: arrival_seq out of range")

    monkeypatch.setattr(runtime_module, "apply_register", refuse)
    call = node_pb2_grpc.NodeServiceStub(channel).Connect()
    await call.write(_register("a", "inst-1"))
    err = await _status(call)
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "arrival_seq out of range" in (err.details() or "")
    assert "a" not in rt.links, "the link was detached"

    def crash(rt: object, link: object, reg: node_pb2.Register) -> None:
        raise RuntimeError("engine bug")

    monkeypatch.setattr(runtime_module, "apply_register", crash)
    call = node_pb2_grpc.NodeServiceStub(channel).Connect()
    await call.write(_register("a", "inst-2"))
    err = await _status(call)
    assert err.code() == grpc.StatusCode.INTERNAL
    assert "a" not in rt.links

    # The node's next instance is not refused as ALREADY_EXISTS.
    monkeypatch.setattr(runtime_module, "apply_register", real_register)
    call = node_pb2_grpc.NodeServiceStub(channel).Connect()
    await call.write(_register("a", "inst-3"))
    reg = await asyncio.wait_for(call.read(), 5)
    assert reg.registered.epoch == rt.epoch
    call.cancel()


async def test_a_register_with_too_many_agent_legs_is_refused(
        replica: Replica, channel: grpc.aio.Channel, monkeypatch: pytest.MonkeyPatch) -> None:
    from coordinator.rpc import node_service

    monkeypatch.setattr(node_service, "MAX_RESYNC_LEGS", 1)
    call = node_pb2_grpc.NodeServiceStub(channel).Connect()
    legs = [node_pb2.AgentLegSnapshot(offer_id=f"o{i}", agent_id="a1", call_id=f"c{i}", state="ringing")
            for i in range(2)]
    await call.write(node_pb2.NodeMessage(register=node_pb2.Register(node_id="a", instance_id="i", agent_legs=legs)))
    err = await _status(call)
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and "agent legs" in (err.details() or "")


async def test_a_stream_the_leader_gives_up_on_ends_resource_exhausted_with_the_reason(
        replica: Replica, channel: grpc.aio.Channel, monkeypatch: pytest.MonkeyPatch) -> None:
    from coordinator import node_link
    from coordinator.queue import decisions as d

    monkeypatch.setattr(node_link, "MAX_BATCH", 4)
    monkeypatch.setattr(node_link, "MAX_PENDING_MESSAGES", 2)
    rt = replica.state.runtime
    assert rt is not None
    call = node_pb2_grpc.NodeServiceStub(channel).Connect()
    await call.write(_register("a", "inst-1"))
    assert (await asyncio.wait_for(call.read(), 5)).registered.epoch == rt.epoch
    link = rt.links["a"]
    for i in range(20):  # decided in one step: the writer gets no turn, the backlog overflows
        link.push(d.CancelOffer(f"o{i}", f"c{i}", "ag", "a", "a", "gone"))
    assert link.closed
    with pytest.raises(grpc.aio.AioRpcError) as err:
        for _ in range(100):  # what was written before the close, then the status
            assert await asyncio.wait_for(call.read(), 5) is not grpc.aio.EOF
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "reads too slowly" in (err.value.details() or "")

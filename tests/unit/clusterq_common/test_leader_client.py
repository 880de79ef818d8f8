"""AdminClient: last_error says why no leader answered (a follower's redirect is not a refusal, so the
error of the hop after it is what the operator is shown), and a silent address does not use up the budget."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
import pytest

from clusterq_common.leader_client import LAST_ERROR, AdminClient
from clusterq_proto.v1 import LEADER_TRAILER, admin_pb2, admin_pb2_grpc
from clusterq_testing.ports import free_tcp_port


class _Follower(admin_pb2_grpc.QueueAdminServicer):
    """Redirects every ListQueues to `leader`; slowly after the first, so the client's time runs out there."""

    def __init__(self, leader: str) -> None:
        self.leader = leader
        self.calls = 0

    async def ListQueues(self, request: admin_pb2.ListQueuesRequest,
                         context: grpc.aio.ServicerContext[object, object]) -> admin_pb2.ListQueuesResponse:
        self.calls += 1
        if self.calls > 1:
            await asyncio.sleep(0.6)
        context.set_trailing_metadata(((LEADER_TRAILER, self.leader),))
        await context.abort(grpc.StatusCode.FAILED_PRECONDITION, "not the leader")
        raise AssertionError("abort returned")


async def test_the_last_error_is_the_leaders_refusal_not_the_followers_redirect() -> None:
    dead_leader = f"127.0.0.1:{free_tcp_port()}"  # nothing listens: UNAVAILABLE
    follower = _Follower(dead_leader)
    server = grpc.aio.server()
    admin_pb2_grpc.add_QueueAdminServicer_to_server(follower, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    client = AdminClient([f"127.0.0.1:{port}"])
    try:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await client.call(lambda ch: admin_pb2_grpc.QueueAdminStub(ch).ListQueues(
                admin_pb2.ListQueuesRequest(), timeout=5), timeout=0.4)
        assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION  # the time ran out at the follower
        assert follower.calls == 2
        assert client.last_error.startswith("UNAVAILABLE"), client.last_error
    finally:
        await client.close()
        await server.stop(None)


class _Leader(admin_pb2_grpc.QueueAdminServicer):
    def __init__(self) -> None:
        self.calls = 0

    async def ListQueues(self, request: admin_pb2.ListQueuesRequest,
                         context: grpc.aio.ServicerContext[object, object]) -> admin_pb2.ListQueuesResponse:
        self.calls += 1
        return admin_pb2.ListQueuesResponse()


async def _silent_server() -> tuple[asyncio.Server, str]:
    """Accepts connections and reads, never answers: a hung replica (or a host cut off mid-path)."""

    async def swallow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while await reader.read(65536):
            pass

    server = await asyncio.start_server(swallow, "127.0.0.1", 0)
    return server, f"127.0.0.1:{server.sockets[0].getsockname()[1]}"


async def _silent_then_leader() -> tuple[asyncio.Server, str, _Leader, grpc.aio.Server, AdminClient]:
    """A silent address first, then a leader; a client giving each address 0.3 s."""
    silent, silent_addr = await _silent_server()
    leader = _Leader()
    server = grpc.aio.server()
    admin_pb2_grpc.add_QueueAdminServicer_to_server(leader, server)
    leader_addr = f"127.0.0.1:{server.add_insecure_port('127.0.0.1:0')}"
    await server.start()
    return silent, silent_addr, leader, server, AdminClient([silent_addr, leader_addr], attempt_timeout=0.3)


def list_queues(ch: grpc.aio.Channel) -> Any:
    """QueueAdmin.ListQueues on a channel (what the tests call through AdminClient.call)."""
    return admin_pb2_grpc.QueueAdminStub(ch).ListQueues(admin_pb2.ListQueuesRequest(), timeout=5)


async def test_a_silent_address_gets_its_share_of_the_time_and_the_next_one_is_tried() -> None:
    silent, silent_addr, leader, server, client = await _silent_then_leader()

    try:
        # The silent address is first; the call's own gRPC deadline (5 s) would outlast a 2 s budget.
        async with asyncio.timeout(2.0):  # in this task, as the stasis app calls it: LAST_ERROR is its own
            await client.call(list_queues, timeout=2.0)
        assert leader.calls == 1 and LAST_ERROR.get() == f"no answer from {silent_addr} within 0.3 s"
        async with asyncio.timeout(0.25):  # the leader is remembered
            await client.call(list_queues, timeout=2.0)
        assert leader.calls == 2 and LAST_ERROR.get() == ""
    finally:
        await client.close()
        await server.stop(None)
        silent.close()


async def test_concurrent_calls_that_time_out_on_one_address_all_move_on_to_the_leader() -> None:
    """Calls in flight share the leader and the search start: ten timing out on the silent address
    together move the search past it once, not ten times (which sent every other one back to it)."""
    silent, _, leader, server, client = await _silent_then_leader()

    try:
        results = await asyncio.gather(*(client.call(list_queues, timeout=0.5) for _ in range(10)),
                                       return_exceptions=True)
        failed = [r for r in results if isinstance(r, BaseException)]
        assert not failed, failed
        assert leader.calls == 10
    finally:
        await client.close()
        await server.stop(None)
        silent.close()


class _SlowLogout(admin_pb2_grpc.AgentsServicer):
    """The first Logout is answered too late (the agent is logged out all the same); later ones find
    the agent gone (NOT_FOUND), as a leader does after a logout that a client's deadline cut short."""

    def __init__(self) -> None:
        self.calls = 0

    async def Logout(self, request: admin_pb2.LogoutRequest,
                     context: grpc.aio.ServicerContext[object, object]) -> admin_pb2.AgentState:
        self.calls += 1
        if self.calls == 1:
            await asyncio.sleep(1.0)
            return admin_pb2.AgentState(agent_id=request.agent_id, state="logged_out")
        await context.abort(grpc.StatusCode.NOT_FOUND, f"agent {request.agent_id} is not logged in")
        raise AssertionError("abort returned")


async def test_a_logout_retried_after_a_silent_attempt_is_done_not_not_found() -> None:
    agents = _SlowLogout()
    server = grpc.aio.server()
    admin_pb2_grpc.add_AgentsServicer_to_server(agents, server)
    addr = f"127.0.0.1:{server.add_insecure_port('127.0.0.1:0')}"
    await server.start()
    client = AdminClient([addr], attempt_timeout=0.3)
    try:
        state = await client.logout("alice")
        assert (state.agent_id, state.state, agents.calls) == ("alice", "logged_out", 2)
        # Without a silent attempt before it, NOT_FOUND is the answer: the agent was not logged in.
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await client.logout("bob")
        assert err.value.code() == grpc.StatusCode.NOT_FOUND and agents.calls == 3
    finally:
        await client.close()
        await server.stop(None)

"""AdminClient's last_error says why no leader answered: a follower's redirect is not a refusal, so the
error of the hop after it (the leader's) is what the operator is shown, wherever the time-out lands."""

from __future__ import annotations

import asyncio

import grpc
import pytest

from clusterq_cli.leader_client import AdminClient
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

"""AdminClient.give_up_refused: every address refusing the connection ends a call after a short round of
retries (Unreachable); an address that refuses only for a moment (a leader change) or a replica that
answers UNAVAILABLE (an election) keeps the call retrying."""

from __future__ import annotations

import asyncio
import time

import grpc
import pytest

from clusterq_common.leader_client import AdminClient, Unreachable
from clusterq_proto.v1 import admin_pb2, admin_pb2_grpc
from clusterq_testing.ports import free_tcp_port
from tests.unit.clusterq_common.test_leader_client import _Leader, list_queues


class _Electing(admin_pb2_grpc.QueueAdminServicer):
    """A running replica while no leader is elected: UNAVAILABLE, without a leader to follow."""

    async def ListQueues(self, request: admin_pb2.ListQueuesRequest,
                         context: grpc.aio.ServicerContext[object, object]) -> admin_pb2.ListQueuesResponse:
        await context.abort(grpc.StatusCode.UNAVAILABLE, "election in progress")
        raise AssertionError("abort returned")


async def _serve(servicer: admin_pb2_grpc.QueueAdminServicer, port: int = 0) -> tuple[grpc.aio.Server, str]:
    server = grpc.aio.server()
    admin_pb2_grpc.add_QueueAdminServicer_to_server(servicer, server)
    port = server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    return server, f"127.0.0.1:{port}"


async def test_every_address_refusing_ends_the_call_after_a_short_round_of_retries() -> None:
    addresses = [f"127.0.0.1:{free_tcp_port()}", f"127.0.0.1:{free_tcp_port()}"]
    client = AdminClient(addresses, give_up_refused=0.5)
    start = time.monotonic()
    try:
        with pytest.raises(Unreachable, match="connection refused") as err:
            await client.call(list_queues, timeout=10.0)
    finally:
        await client.close()
    assert 0.5 <= time.monotonic() - start < 2.0 and all(a in str(err.value) for a in addresses)


async def test_a_replica_answering_unavailable_keeps_the_call_retrying() -> None:
    server, electing = await _serve(_Electing())
    client = AdminClient([f"127.0.0.1:{free_tcp_port()}", electing], give_up_refused=0.2)
    try:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await client.call(list_queues, timeout=1.0)
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE  # the whole budget, not Unreachable
    finally:
        await client.close()
        await server.stop(None)


async def test_an_address_that_refuses_for_a_moment_is_retried() -> None:
    port = free_tcp_port()
    client = AdminClient([f"127.0.0.1:{port}"], give_up_refused=1.0)
    leader = _Leader()

    async def restart() -> grpc.aio.Server:
        await asyncio.sleep(0.3)  # the leader's replica comes back on its address
        return (await _serve(leader, port))[0]

    later = asyncio.ensure_future(restart())
    try:
        await client.call(list_queues, timeout=5.0)
        assert leader.calls == 1
    finally:
        await client.close()
        await (await later).stop(None)


def test_a_client_needs_an_address() -> None:
    with pytest.raises(ValueError, match="no coordinator address"):
        AdminClient([])

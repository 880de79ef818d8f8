"""QueueAdmin / Agents refuse hostile input with INVALID_ARGUMENT and a short message."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any

import grpc
import pytest

from clusterq_proto.v1 import admin_pb2, admin_pb2_grpc

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

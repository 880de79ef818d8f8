"""The coordinator's gRPC surface on real etcd: two in-process replicas, real grpc.aio servers.

Covers leader-only services and follower redirects, health, input validation (status codes with
messages, never crashes), the node stream's handshake and refusals, and stats.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from clusterq_proto.v1 import admin_pb2, admin_pb2_grpc, common_pb2, node_pb2, node_pb2_grpc
from clusterq_testing.client import AdminClient
from stasis_app.coordinator_client import stamped
from tests.integration.replicas import Replicas, running_replicas

pytestmark = pytest.mark.integration

QUEUES = "queues:\n  support: {strategy: leastrecent}\n"


@pytest.fixture
async def replicas(tmp_path: Path, etcd_factory: object) -> AsyncIterator[Replicas]:
    etcd = await etcd_factory()  # type: ignore[operator]
    async with running_replicas(etcd.endpoints, tmp_path, QUEUES) as r:
        yield r


async def test_health_and_follower_redirect(replicas: Replicas) -> None:
    leader = await replicas.leader()
    follower = next(a for a in replicas.addresses if a != leader)
    for addr in replicas.addresses:  # overall status SERVING everywhere once campaigning (rollouts proceed)
        assert await _serving_within(addr, "", 5.0)
    async with grpc.aio.insecure_channel(follower) as ch:
        r = await health_pb2_grpc.HealthStub(ch).Check(
            health_pb2.HealthCheckRequest(service="clusterq.v1.Leadership"), timeout=2)
        assert r.status == health_pb2.HealthCheckResponse.NOT_SERVING
        hint = ""
        for _ in range(100):  # the follower learns the leader through an etcd watch: ms after the win
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await admin_pb2_grpc.QueueAdminStub(ch).ListQueues(admin_pb2.ListQueuesRequest(), timeout=2)
            assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
            hint = str(dict(err.value.trailing_metadata() or ()).get("clusterq-leader", ""))
            if hint:
                break
            await asyncio.sleep(0.02)
    assert hint == leader
    # A client that starts at the follower ends up at the leader.
    client = AdminClient([follower])
    client.addresses.append(leader)
    snap = await client.snapshot()
    assert [q.queue for q in snap.queues] == ["support"] and snap.epoch > 0
    await client.close()


async def _serving_within(addr: str, service: str, timeout: float) -> bool:
    """Whether the replica's health service reports SERVING within timeout."""
    async with grpc.aio.insecure_channel(addr) as ch:
        watch = health_pb2_grpc.HealthStub(ch).Watch(health_pb2.HealthCheckRequest(service=service))
        try:
            async with asyncio.timeout(timeout):
                while (await watch.read()).status != health_pb2.HealthCheckResponse.SERVING:
                    pass
            return True
        except TimeoutError:
            return False
        finally:
            watch.cancel()


async def test_not_ready_as_soon_as_shutdown_starts(replicas: Replicas) -> None:
    addr = replicas.addresses[0]
    assert await _serving_within(addr, "", 5.0)
    async with grpc.aio.insecure_channel(addr) as ch:
        watch = health_pb2_grpc.HealthStub(ch).Watch(health_pb2.HealthCheckRequest(service=""))
        assert (await watch.read()).status == health_pb2.HealthCheckResponse.SERVING
        replicas.tasks[0].cancel()  # SIGTERM
        # Told on the open stream while the server drains (new calls are refused by then).
        assert (await asyncio.wait_for(watch.read(), 5)).status == health_pb2.HealthCheckResponse.NOT_SERVING
        watch.cancel()


async def _code(call: object) -> grpc.StatusCode:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await call  # type: ignore[misc]
    assert err.value.details(), "every refusal carries a message"
    return err.value.code()


async def test_bad_admin_requests_get_clear_status_codes(replicas: Replicas) -> None:
    leader = await replicas.leader()
    async with grpc.aio.insecure_channel(leader) as ch:
        qa, ag, st = admin_pb2_grpc.QueueAdminStub(ch), admin_pb2_grpc.AgentsStub(ch), admin_pb2_grpc.StatsStub(ch)
        bad = admin_pb2.QueueDefinition(name="bad name!")
        assert await _code(qa.CreateQueue(admin_pb2.CreateQueueRequest(queue=bad))) == grpc.StatusCode.INVALID_ARGUMENT
        neg = admin_pb2.QueueDefinition(name="q2", wrapup_time=-1)
        assert await _code(qa.CreateQueue(admin_pb2.CreateQueueRequest(queue=neg))) == grpc.StatusCode.INVALID_ARGUMENT
        odd = admin_pb2.QueueDefinition(name="q2", strategy="fastest")
        assert await _code(qa.CreateQueue(admin_pb2.CreateQueueRequest(queue=odd))) == grpc.StatusCode.INVALID_ARGUMENT
        dup = admin_pb2.QueueDefinition(name="support")
        assert await _code(qa.CreateQueue(admin_pb2.CreateQueueRequest(queue=dup))) == grpc.StatusCode.ALREADY_EXISTS
        ghost = admin_pb2.QueueDefinition(name="ghost")
        assert await _code(qa.UpdateQueue(admin_pb2.UpdateQueueRequest(queue=ghost))) == grpc.StatusCode.NOT_FOUND
        assert await _code(qa.DeleteQueue(admin_pb2.DeleteQueueRequest(name="ghost"))) == grpc.StatusCode.NOT_FOUND
        login = admin_pb2.LoginRequest(agent_id="a1", endpoint="PJSIP/a1", home_node="a",
                                       queues=[admin_pb2.QueueMembership(queue="ghost")])
        assert await _code(ag.Login(login)) == grpc.StatusCode.NOT_FOUND
        huge = admin_pb2.LoginRequest(agent_id="a1", endpoint="PJSIP/" + "x" * 5000, home_node="a",
                                      queues=[admin_pb2.QueueMembership(queue="support")])
        assert await _code(ag.Login(huge)) == grpc.StatusCode.INVALID_ARGUMENT
        assert await _code(ag.Pause(admin_pb2.PauseRequest(agent_id="nobody"))) == grpc.StatusCode.NOT_FOUND
        assert await _code(ag.GetState(admin_pb2.AgentStateRequest(agent_id="x" * 500))) in (
            grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT)
        watch = st.Watch(admin_pb2.WatchRequest(interval=0.01))
        assert await _code(watch.read()) == grpc.StatusCode.INVALID_ARGUMENT
        assert await _code(st.Snapshot(admin_pb2.StatsRequest(queue="ghost"))) == grpc.StatusCode.NOT_FOUND

        # The good path: create, login, pause, state, watch.
        created = await qa.CreateQueue(admin_pb2.CreateQueueRequest(queue=admin_pb2.QueueDefinition(
            name="sales", strategy="ringall", ring_timeout=5)))
        assert created.ring_timeout == 5 and created.service_level == 60
        ok = admin_pb2.LoginRequest(agent_id="a1", endpoint="PJSIP/a1", home_node="a",
                                    queues=[admin_pb2.QueueMembership(queue="sales")],
                                    skills=[common_pb2.Skill(key="language", value="de")])
        assert (await ag.Login(ok)).state == "unavailable"  # its home node has no stream attached
        node = await _register(ch, "a", "inst-a")
        assert (await node.read()).registered.epoch > 0
        assert (await ag.GetState(admin_pb2.AgentStateRequest(agent_id="a1"))).state == "available"
        assert (await ag.Pause(admin_pb2.PauseRequest(agent_id="a1", reason="lunch"))).state == "paused"
        watch = st.Watch(admin_pb2.WatchRequest(queue="sales", interval=0.2))
        first = await watch.read()
        second = await watch.read()
        assert first.queues[0].queue == "sales" and second.queues[0].agents_paused == 1
        watch.cancel()
        node.cancel()


async def _register(ch: grpc.aio.Channel, node: str, instance: str) -> grpc.aio.StreamStreamCall:
    call = node_pb2_grpc.NodeServiceStub(ch).Connect()
    await call.write(node_pb2.NodeMessage(register=node_pb2.Register(node_id=node, instance_id=instance)))
    return call


async def test_node_stream_handshake_refusals_and_join_answers(replicas: Replicas) -> None:
    leader = await replicas.leader()
    async with grpc.aio.insecure_channel(leader) as ch:
        # First message must be a Register.
        call = node_pb2_grpc.NodeServiceStub(ch).Connect()
        await call.write(node_pb2.NodeMessage(events=node_pb2.EventBatch()))
        assert await _code(call.read()) == grpc.StatusCode.INVALID_ARGUMENT
        bad = await _register(ch, "no spaces allowed", "i1")
        assert await _code(bad.read()) == grpc.StatusCode.INVALID_ARGUMENT

        first = await _register(ch, "a", "inst-1")
        reg = await first.read()
        assert reg.registered.epoch > 0
        # The same node id from another live instance is refused.
        dup = await _register(ch, "a", "inst-2")
        assert await _code(dup.read()) == grpc.StatusCode.ALREADY_EXISTS

        joins = [
            node_pb2.NodeEvent(call_joined=node_pb2.CallJoined(call_id="a-1", queue="support", caller_number="1")),
            node_pb2.NodeEvent(call_joined=node_pb2.CallJoined(call_id="a-2", queue="nosuch")),
            node_pb2.NodeEvent(call_joined=node_pb2.CallJoined(call_id="a-3", queue="bad queue")),
            node_pb2.NodeEvent(call_joined=node_pb2.CallJoined(call_id="a-4", queue="support", priority=5)),
        ]
        await first.write(node_pb2.NodeMessage(events=node_pb2.EventBatch(events=joins)))
        got: dict[str, node_pb2.Decision] = {}
        seqs: list[int] = []
        while len(got) < 4:
            msg = await asyncio.wait_for(first.read(), 5)
            assert msg.decisions.stamp.epoch == reg.registered.epoch
            for dec in stamped(msg.decisions):
                assert dec.stamp.epoch == reg.registered.epoch
                seqs.append(dec.stamp.seq)
                kind = dec.WhichOneof("decision")
                if kind in ("join_ack", "join_reject"):
                    got[getattr(dec, kind).call_id] = dec
        assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs), "decision seqs increase by stream"
        assert got["a-1"].join_ack.position == 1
        assert got["a-4"].join_ack.position == 1, "priority 5 goes ahead of a-1"
        assert got["a-4"].join_ack.arrival_seq > got["a-1"].join_ack.arrival_seq
        assert got["a-2"].join_reject.status == common_pb2.CALLER_STATUS_UNKNOWN_QUEUE
        assert got["a-3"].join_reject.status == common_pb2.CALLER_STATUS_INVALID_ARGS
        snap = await admin_pb2_grpc.StatsStub(ch).Snapshot(admin_pb2.StatsRequest(queue="support",
                                                                                   include_callers=True))
        assert [c.call_id for c in snap.callers] == ["a-4", "a-1"]
        first.cancel()

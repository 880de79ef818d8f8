"""`clusterq` as an operator runs it: a separate process, pointed at a follower, against two
coordinator replicas on real etcd with a node stream holding real waiting callers."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest

from clusterq_proto.v1 import node_pb2, node_pb2_grpc
from tests.integration.replicas import Replicas, running_replicas

pytestmark = pytest.mark.integration


@pytest.fixture
async def replicas(tmp_path: Path, etcd_factory: object) -> AsyncIterator[Replicas]:
    etcd = await etcd_factory()  # type: ignore[operator]
    queues = "queues:\n  support: {strategy: leastrecent, maxlen: 50}\n  sales: {}\n"
    async with running_replicas(etcd.endpoints, tmp_path, queues) as r:
        yield r


async def clusterq(coordinator: str, *argv: str) -> tuple[int, str, str]:
    """Run the command line in its own process (the servers keep running on this loop meanwhile)."""
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "clusterq_cli", "--coordinator", coordinator,
                                                *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_an_operator_session_through_a_follower(replicas: Replicas) -> None:
    leader = await replicas.leader()
    follower = next(a for a in replicas.addresses if a != leader)
    status, _, err = await clusterq(follower, "queue", "show", "nosuch")
    assert (status, err.strip()) == (1, "No such queue: nosuch.")

    async with grpc.aio.insecure_channel(leader) as ch:
        node = node_pb2_grpc.NodeServiceStub(ch).Connect()
        try:
            await node.write(node_pb2.NodeMessage(register=node_pb2.Register(node_id="a", instance_id="i1")))
            await node.read()
            await node.write(node_pb2.NodeMessage(events=node_pb2.EventBatch(events=[
                node_pb2.NodeEvent(call_joined=node_pb2.CallJoined(call_id="a-1", queue="support")),
                node_pb2.NodeEvent(call_joined=node_pb2.CallJoined(call_id="a-2", queue="support", priority=5))])))
            acks = 0
            while acks < 2:
                msg = await asyncio.wait_for(node.read(), 5)
                acks += sum(1 for d in msg.decisions.decisions if d.WhichOneof("decision") == "join_ack")

            status, out, err = await clusterq(follower, "agent", "login", "alice", "--endpoint", "PJSIP/alice",
                                              "--node", "a", "--queue", "support:1", "--paused")
            assert (status, out.strip(), err) == (
                0, "alice (PJSIP/alice on a) (paused:login) (Unknown) has taken no calls yet", "")
            status, out, _ = await clusterq(follower, "agent", "pause", "alice", "--reason", "lunch")
            assert (status, out.strip()) == (0, "alice (PJSIP/alice on a) (paused:lunch) (Unknown) has taken no calls yet")

            status, out, _ = await clusterq(follower, "queue", "show", "support")
            lines = out.splitlines()
            assert status == 0
            assert lines[0].startswith("support has 2 calls (max 50) in 'leastrecent' strategy (")
            assert lines[0].endswith(", W:0, C:0, A:0, SL:0.0%, SL2:0.0% within 60s")
            assert lines[1:4] == ["   Members:", "      alice (PJSIP/alice on a) (penalty 1) (paused:lunch) (Unknown) "
                                  "has taken no calls yet", "   Callers:"]
            assert [line.split(" (wait")[0] for line in lines[4:6]] == ["      1. a-2 on a", "      2. a-1 on a"]
            assert "prio: 5" in lines[4] and "prio: 0" in lines[5]

            status, out, _ = await clusterq(follower, "queue", "show")
            assert status == 0 and "sales has 0 calls" in out and "support has 2 calls" in out

            status, _, _ = await clusterq(follower, "agent", "unpause", "alice")
            assert status == 0
            offered = None
            while offered is None:  # the leader offers the caller ranked first to alice at once
                msg = await asyncio.wait_for(node.read(), 5)
                offered = next((d.offer for d in msg.decisions.decisions if d.WhichOneof("decision") == "offer"), None)
            assert (offered.call_id, offered.agent_id) == ("a-2", "alice")
            status, out, _ = await clusterq(follower, "agent", "show", "alice")
            assert (status, out.strip()) == (0, "alice (PJSIP/alice on a) (ringing) (Unknown) has taken no calls yet\n"
                                                "   device PJSIP/alice: UNKNOWN")

            status, out, _ = await clusterq(follower, "agent", "logout", "alice")
            assert status == 0 and "(logged_out)" in out
            status, _, err = await clusterq(follower, "agent", "show", "alice")
            assert status == 1 and err.startswith("clusterq: NOT_FOUND: ")
        finally:
            node.cancel()  # else the replicas wait for this stream when they stop


async def test_queue_apply_from_a_file_and_agent_list(replicas: Replicas, tmp_path: Path) -> None:
    leader = await replicas.leader()
    follower = next(a for a in replicas.addresses if a != leader)
    f = tmp_path / "more.yaml"
    f.write_text("queues:\n  support: {strategy: linear, maxlen: 7}\n  billing: {timeout: 20}\n")
    status, out, err = await clusterq(follower, "queue", "apply", str(f))
    assert (status, out.splitlines(), err) == (0, ["Updated queue support.", "Created queue billing."], "")
    status, out, _ = await clusterq(follower, "queue", "show", "support")
    assert status == 0 and out.startswith("support has 0 calls (max 7) in 'linear' strategy")
    status, _, err = await clusterq(follower, "queue", "create", str(f))
    assert (status, err.strip()) == (1, "clusterq: queue support: ALREADY_EXISTS: queue support already exists")

    status, out, _ = await clusterq(follower, "agent", "list")
    assert (status, out.strip()) == (0, "No agents logged in.")
    for agent, queue in (("bob", "billing"), ("alice", "support:1")):
        assert (await clusterq(follower, "agent", "login", agent, "--endpoint", f"PJSIP/{agent}", "--node", "a",
                               "--queue", queue))[0] == 0
    status, out, _ = await clusterq(follower, "agent", "list")
    assert status == 0 and out.splitlines() == [  # node a has no stasis app connected here
        "alice (PJSIP/alice on a) (unavailable) (Unknown) has taken no calls yet in support",
        "bob (PJSIP/bob on a) (unavailable) (Unknown) has taken no calls yet in billing"]

"""Three etcd members under the coordinators: losing the member the leader's client talks to, and
separately the raft leader, keeps the service deciding (a node's caller still gets sequenced and
its agent offered)."""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path

import pytest

from clusterq_proto.v1 import node_pb2
from clusterq_testing.client import AdminClient
from clusterq_testing.ports import free_tcp_port
from clusterq_testing.processes import coordinator_process
from stasis_app.coordinator_client import CoordinatorClient

pytestmark = pytest.mark.chaos


async def _decided(node: CoordinatorClient, got: list[node_pb2.Decision], calls: dict[str, node_pb2.CallJoined],
                   call_id: str, timeout: float) -> None:
    """Report a caller and wait for the leader's JoinAck for it. Like a real node, the caller is in
    every later Register snapshot (`calls`), so a leader elected meanwhile learns it from there: the
    member loss may cost the leader its lease seconds after the JoinAck, and a new leader that did
    not know the caller would never offer it."""
    deadline = time.monotonic() + timeout
    while not node.connected:
        assert time.monotonic() < deadline, "node not connected to any leader"
        await asyncio.sleep(0.05)
    joined = node_pb2.CallJoined(call_id=call_id, queue="support")
    calls[call_id] = joined
    node.send(node_pb2.NodeEvent(call_joined=joined))
    while not any(d.WhichOneof("decision") == "join_ack" and d.join_ack.call_id == call_id for d in got):
        if time.monotonic() > deadline:
            raise TimeoutError(f"no JoinAck for {call_id}")
        await asyncio.sleep(0.02)


@pytest.mark.parametrize("victim", ["client_member", "raft_leader"])
async def test_service_keeps_deciding_when_an_etcd_member_dies(victim: str, tmp_path: Path,
                                                               etcd_factory: object) -> None:
    etcd = await etcd_factory(members=3)  # type: ignore[operator]
    qfile = tmp_path / "queues.yaml"
    qfile.write_text("queues:\n  support: {strategy: leastrecent}\n")
    procs, addrs = [], []
    for i in range(2):
        port = free_tcp_port()
        p = coordinator_process(f"c{i}", tmp_path, etcd_endpoints=etcd.endpoints, port=port, queues_file=qfile,
                                lease_ttl=3.0, node_ttl=8.0, settle_time=0.2)
        p.start()
        procs.append(p)
        addrs.append(f"127.0.0.1:{port}")
    got: list[node_pb2.Decision] = []
    snapshot_calls: dict[str, node_pb2.CallJoined] = {}

    def snapshot() -> node_pb2.Register:
        return node_pb2.Register(calls=[node_pb2.CallSnapshot(joined=j, state="waiting")
                                        for j in snapshot_calls.values()])

    node = CoordinatorClient("n1", tuple(addrs), snapshot, got.append, lambda up: None)
    runner = asyncio.ensure_future(node.run())
    client = AdminClient(addrs)
    try:
        await _decided(node, got, snapshot_calls, "n1-before", 20)
        # The coordinators' etcd clients start on the first endpoint: member 0.
        idx = 0 if victim == "client_member" else await etcd.raft_leader_index()
        etcd.kill_member(idx, signal.SIGKILL)
        t0 = time.monotonic()
        await _decided(node, got, snapshot_calls, "n1-after", 20)
        # Writes still work too: an agent logs in and is offered the waiting callers.
        await client.login("ag1", "PJSIP/ag1", "n1", ["support"])
        deadline = time.monotonic() + 15
        while not any(d.WhichOneof("decision") == "offer" for d in got):
            assert time.monotonic() < deadline, "no offer after the member loss"
            await asyncio.sleep(0.05)
        assert time.monotonic() - t0 < 20
    finally:
        runner.cancel()
        node.close()
        await client.close()
        for p in procs:
            await p.async_stop()

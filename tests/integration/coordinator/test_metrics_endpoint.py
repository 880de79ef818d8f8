"""/metrics of REAL coordinator processes on real etcd: exactly one replica says it leads, a follower
exports its replica figures only, a queue created and an agent logged in through the admin gRPC API
show up in the leader's gauges, and after a failover the new leader exports the queue with a higher
epoch and its counters started again."""

from __future__ import annotations

import asyncio
import importlib.metadata
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest

from clusterq_proto.v1 import admin_pb2, admin_pb2_grpc
from clusterq_testing.exposition import Family, http_get, parse, value
from clusterq_testing.ports import free_tcp_port
from clusterq_testing.processes import ManagedProcess, coordinator_process
from coordinator.metrics_http import CACHE_SECONDS

pytestmark = pytest.mark.integration

REPLICA_ONLY = {"clusterq_leader", "clusterq_build_info"}


@dataclass
class Replica:
    """One coordinator process and its two ports."""

    proc: ManagedProcess
    grpc_port: int
    metrics_port: int

    async def scrape(self, fresh: bool = False) -> dict[str, Family]:
        """GET /metrics, checked as exposition format 0.0.4; `fresh`: after the server's cache of the
        last rendering (CACHE_SECONDS) has expired, so it shows what happened before the call."""
        if fresh:
            await asyncio.sleep(CACHE_SECONDS + 0.05)
        answer = await http_get("127.0.0.1", self.metrics_port)
        assert answer.status == 200 and answer.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
        return parse(answer.body)


@pytest.fixture
async def replicas(tmp_path: Path, etcd_factory: Any) -> AsyncIterator[list[Replica]]:
    """Two replicas with CLUSTERQ_METRICS_LISTEN, on a fresh etcd; stopped by PID at teardown."""
    etcd = await etcd_factory()
    started: list[Replica] = []
    try:
        for name in ("m1", "m2"):
            grpc_port, metrics_port = free_tcp_port(), free_tcp_port()
            proc = coordinator_process(name, tmp_path, etcd_endpoints=etcd.endpoints, port=grpc_port,
                                       extra_env={"CLUSTERQ_METRICS_LISTEN": f"127.0.0.1:{metrics_port}"})
            started.append(Replica(proc, grpc_port, metrics_port))
            proc.start()
        for r in started:
            await r.proc.wait_log("Prometheus metrics, plaintext, on", timeout=20)
        yield started
    finally:
        for r in started:
            await r.proc.async_stop()


async def _leader_and_followers(replicas: list[Replica], timeout: float = 20.0) -> tuple[Replica, list[Replica]]:
    """Scrape until exactly one live replica exports clusterq_leader 1 with its per-queue state loaded."""
    deadline = time.monotonic() + timeout
    while True:
        live = [r for r in replicas if r.proc.alive()]
        scraped = [(r, await r.scrape()) for r in live]
        leaders = [r for r, f in scraped if value(f, "clusterq_leader") == 1]
        assert len(leaders) <= 1, "two replicas export clusterq_leader 1 at once"
        if leaders:
            return leaders[0], [r for r in live if r is not leaders[0]]
        if time.monotonic() > deadline:
            raise TimeoutError("no replica exports clusterq_leader 1:\n" +
                               "\n".join(r.proc.log_text()[-2000:] for r in replicas))
        await asyncio.sleep(0.2)


async def test_leader_and_follower_metrics_follow_the_admin_api_and_a_failover(replicas: list[Replica]) -> None:
    leader, [follower] = await _leader_and_followers(replicas)
    version = importlib.metadata.version("clusterq")

    followed = await follower.scrape()
    assert set(followed) == REPLICA_ONLY, "a follower exports no term, runtime or queue figures"
    assert value(followed, "clusterq_leader") == 0
    assert followed["clusterq_build_info"].samples == {(("version", version),): 1.0}

    await leader.proc.wait_log("settled after", timeout=10)  # stored agents applied: the API's turn
    before = await leader.scrape()
    epoch = value(before, "clusterq_leader_epoch")
    assert epoch > 0 and "clusterq_queue_callers_waiting" not in before  # no queue yet

    async with grpc.aio.insecure_channel(f"127.0.0.1:{leader.grpc_port}") as ch:
        await admin_pb2_grpc.QueueAdminStub(ch).CreateQueue(admin_pb2.CreateQueueRequest(
            queue=admin_pb2.QueueDefinition(name="support", service_level=20)), timeout=5)
        await admin_pb2_grpc.AgentsStub(ch).Login(admin_pb2.LoginRequest(
            agent_id="alice", endpoint="PJSIP/alice", home_node="a",
            queues=[admin_pb2.QueueMembership(queue="support")]), timeout=5)
        await admin_pb2_grpc.AgentsStub(ch).Pause(admin_pb2.PauseRequest(agent_id="alice", reason="lunch"), timeout=5)

    after = await leader.scrape(fresh=True)
    gauges = {name: value(after, name, "support") for name in (
        "clusterq_queue_callers_waiting", "clusterq_queue_answered_total", "clusterq_queue_agents_logged_in",
        "clusterq_queue_agents_paused", "clusterq_queue_agents_available", "clusterq_queue_service_level_threshold_seconds")}
    assert gauges == {"clusterq_queue_callers_waiting": 0, "clusterq_queue_answered_total": 0,
                      "clusterq_queue_agents_logged_in": 1, "clusterq_queue_agents_paused": 1,
                      "clusterq_queue_agents_available": 0, "clusterq_queue_service_level_threshold_seconds": 20}
    # QueueDefined, AgentLoggedIn and AgentPaused at least, on top of what the term had applied.
    assert value(after, "clusterq_events_applied_total") >= value(before, "clusterq_events_applied_total") + 3
    assert value(after, "clusterq_nodes_attached") == 0
    assert set(await follower.scrape(fresh=True)) == REPLICA_ONLY

    # The replicas' other paths and methods, as Prometheus or a curious operator would meet them.
    assert (await http_get("127.0.0.1", follower.metrics_port, "/")).status == 404
    assert (await http_get("127.0.0.1", follower.metrics_port, method="POST")).status == 405

    # Failover: the follower leads with a higher epoch; the queue and the agent came from etcd.
    assert await leader.proc.async_stop() == 0
    successor, rest = await _leader_and_followers(replicas)
    assert successor is follower and rest == []
    await successor.proc.wait_log("settled after", timeout=10)
    taken_over = await successor.scrape(fresh=True)
    assert value(taken_over, "clusterq_leader_epoch") > epoch
    assert value(taken_over, "clusterq_queue_agents_logged_in", "support") == 1
    assert value(taken_over, "clusterq_queue_answered_total", "support") == 0

"""Real parts for the benchmark: one etcd member and coordinator replica subprocesses.

Every scenario gets its own etcd key prefix and its own replicas, so no scenario inherits queues,
agents or known nodes (a new leader waits for known nodes) from another. Processes are started by
the harness and stopped by their PID only.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from clusterq_proto.v1 import admin_pb2, admin_pb2_grpc
from clusterq_testing.client import AdminClient
from clusterq_testing.etcd import EtcdCluster
from clusterq_testing.ports import free_tcp_port
from clusterq_testing.processes import ManagedProcess, coordinator_process

__all__ = ["QUEUE", "Coordinators", "Replica"]

QUEUE = "bench"
LEADERSHIP_SERVICE = "clusterq.v1.Leadership"


@dataclass(frozen=True)
class Replica:
    """One coordinator replica process and the address it serves."""

    proc: ManagedProcess
    address: str

    @property
    def pid(self) -> int:
        """PID of the running process (RuntimeError when not running)."""
        pid = self.proc.pid
        if pid is None or not self.proc.alive():
            raise RuntimeError(f"{self.proc.name} is not running")
        return pid


def _range_count(endpoint: str, prefix: bytes) -> int:
    """Number of keys under prefix, through etcd's JSON gateway (v3 API)."""
    end = prefix[:-1] + bytes([prefix[-1] + 1])
    body = json.dumps({"key": base64.b64encode(prefix).decode(), "range_end": base64.b64encode(end).decode(),
                       "count_only": True}).encode()
    req = urllib.request.Request(f"http://{endpoint}/v3/kv/range", data=body, method="POST")
    with urllib.request.urlopen(req, timeout=2) as resp:
        return int(json.loads(resp.read()).get("count", 0))


class Coordinators:
    """`count` replicas sharing one etcd prefix; lease TTL 2 s (the minimum etcd allows)."""

    def __init__(self, etcd: EtcdCluster, log_dir: Path, prefix: str, count: int, *,
                 lease_ttl: float = 2.0, settle_time: float = 2.0,
                 extra_env: dict[str, str] | None = None) -> None:
        self.etcd = etcd
        self.prefix = prefix
        self.replicas: list[Replica] = []
        for i in range(count):
            port = free_tcp_port()
            proc = coordinator_process(f"{prefix.strip('/')}-{i}", log_dir, etcd_endpoints=etcd.endpoints,
                                       port=port, lease_ttl=lease_ttl, settle_time=settle_time, prefix=prefix,
                                       extra_env=extra_env)
            self.replicas.append(Replica(proc, f"127.0.0.1:{port}"))
        self.client = AdminClient(self.addresses)

    @property
    def addresses(self) -> list[str]:
        """Every replica's address."""
        return [r.address for r in self.replicas]

    async def start(self, timeout: float = 20.0) -> None:
        """Start every replica, wait for a leader and for every replica to campaign."""
        for r in self.replicas:
            r.proc.start()
        for r in self.replicas:
            await r.proc.wait_log("serving gRPC", timeout)
        await self.leader(timeout)
        await self.wait_candidates(len(self.replicas), timeout)

    async def restart(self, replica: Replica, timeout: float = 20.0) -> None:
        """Start a replica again on the same port (after it was killed), wait until it campaigns."""
        await replica.proc.async_stop()  # reaps the killed process, closes its log
        replica.proc.start()
        await replica.proc.wait_log("serving gRPC", timeout)
        await self.wait_candidates(len(self.replicas), timeout)

    async def wait_candidates(self, n: int, timeout: float) -> None:
        """Wait until n replicas hold an election key (so a leader kill has a ready successor)."""
        election = f"{self.prefix.rstrip('/')}/election/".encode()
        deadline = time.monotonic() + timeout
        while await asyncio.to_thread(_range_count, self.etcd.endpoints[0], election) < n:
            if time.monotonic() > deadline:
                raise TimeoutError(f"fewer than {n} replicas campaigning after {timeout} s")
            await asyncio.sleep(0.05)

    async def leader(self, timeout: float = 20.0) -> Replica:
        """The replica whose Leadership health service is SERVING (a replica that has set up its runtime)."""
        deadline = time.monotonic() + timeout
        while True:
            for r in self.replicas:
                if r.proc.alive() and await _is_leader(r.address):
                    return r
            if time.monotonic() > deadline:
                tails = "\n".join(r.proc.log_text()[-1500:] for r in self.replicas)
                raise TimeoutError(f"no leader within {timeout} s:\n{tails}")
            await asyncio.sleep(0.05)

    async def create_queue(self) -> None:
        """The benchmark queue: leastrecent (one agent rung per caller), app_queue defaults otherwise."""
        await self.client.create_queue(admin_pb2.QueueDefinition(name=QUEUE, strategy="leastrecent"))

    async def login_agents(self, homes: dict[str, str], paused: bool = False) -> None:
        """Log agents in (agent id -> home node), members of the benchmark queue."""
        for agent_id, node in homes.items():
            await self.client.login(agent_id, f"Local/{agent_id}@bench/n", node, [QUEUE], paused=paused)

    async def pause(self, agent_id: str, paused: bool) -> admin_pb2.AgentState:
        """Pause or unpause an agent on whichever replica leads (the client follows the leader)."""
        if paused:
            req = admin_pb2.PauseRequest(agent_id=agent_id, reason="bench")
            return await self.client.call(lambda ch: admin_pb2_grpc.AgentsStub(ch).Pause(req, timeout=2), 30)
        unpause = admin_pb2.UnpauseRequest(agent_id=agent_id)
        return await self.client.call(lambda ch: admin_pb2_grpc.AgentsStub(ch).Unpause(unpause, timeout=2), 30)

    async def stop(self) -> None:
        """Close the admin client and stop every replica by PID."""
        await self.client.close()
        for r in self.replicas:
            await r.proc.async_stop()

    def logs(self) -> str:
        """Every replica's log, for post-mortems."""
        return "\n".join(f"==== {r.proc.name} ({r.proc.log_path})\n{r.proc.log_text()}" for r in self.replicas)


async def _is_leader(address: str) -> bool:
    async with grpc.aio.insecure_channel(address) as ch:
        try:
            resp = await health_pb2_grpc.HealthStub(ch).Check(
                health_pb2.HealthCheckRequest(service=LEADERSHIP_SERVICE), timeout=1)
        except grpc.aio.AioRpcError:
            return False
        return bool(resp.status == health_pb2.HealthCheckResponse.SERVING)

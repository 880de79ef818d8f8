"""In-process coordinator replicas on real etcd, for the integration tests of their gRPC surface."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from clusterq_common.tls import ClientTls, ServerTls, open_channel
from clusterq_testing.ports import free_tcp_port
from coordinator.__main__ import serve
from coordinator.config import CoordinatorSettings


@dataclass
class Replicas:
    """Running replicas: their addresses and serve() tasks (cancel one to stop it like a SIGTERM);
    with TLS, the credentials leader() uses; with probe ports, their addresses (same order)."""

    addresses: list[str]
    tasks: list[asyncio.Task[None]]
    client_tls: ClientTls | None = None
    health_addresses: list[str] = field(default_factory=list)

    async def leader(self) -> str:
        """Address of the replica whose leadership health service is SERVING."""
        for _ in range(200):
            for addr in self.addresses:
                async with open_channel(addr, self.client_tls) as ch:
                    with contextlib.suppress(grpc.aio.AioRpcError):
                        r = await health_pb2_grpc.HealthStub(ch).Check(
                            health_pb2.HealthCheckRequest(service="clusterq.v1.Leadership"), timeout=1)
                        if r.status == health_pb2.HealthCheckResponse.SERVING:
                            return addr
            await asyncio.sleep(0.05)
        raise TimeoutError("no leader")


@contextlib.asynccontextmanager
async def running_replicas(etcd_endpoints: Sequence[str], work_dir: Path, queues_yaml: str,
                           count: int = 2, *, tls: ServerTls | None = None, client_tls: ClientTls | None = None,
                           health_port: bool = False) -> AsyncIterator[Replicas]:
    """`count` replicas serving on free loopback ports with `queues_yaml` as their queues file;
    stopped (cancelled, as on SIGTERM) when the block ends. `tls` serves TLS (`client_tls` is then
    what leader() dials with); `health_port` adds each one's plaintext health-only port."""
    qfile = work_dir / "queues.yaml"
    qfile.write_text(queues_yaml)
    replicas = Replicas([], [], client_tls)
    try:
        for i in range(count):
            port = free_tcp_port()
            health_listen = f"127.0.0.1:{free_tcp_port()}" if health_port else ""
            settings = CoordinatorSettings(etcd_endpoints=tuple(etcd_endpoints), lease_ttl=2.0, node_ttl=4.0,
                                           listen=f"127.0.0.1:{port}", queues_file=qfile, settle_time=0.2,
                                           replica_id=f"r{i}", tls=tls, health_listen=health_listen)
            ready = asyncio.Event()
            replicas.tasks.append(asyncio.ensure_future(serve(settings, ready)))
            await asyncio.wait_for(ready.wait(), 10)
            replicas.addresses.append(f"127.0.0.1:{port}")
            if health_listen:
                replicas.health_addresses.append(health_listen)
        yield replicas
    finally:
        for t in replicas.tasks:
            t.cancel()
        await asyncio.gather(*replicas.tasks, return_exceptions=True)

"""Assembly of one replica's grpc.aio servers: the API (services, health, reflection; plaintext or
TLS) and, optionally, a plaintext server with the health service alone for kubelet's gRPC probes,
which cannot speak TLS. Both serve the same HealthServicer object, so their statuses always agree."""

from __future__ import annotations

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from clusterq_common.tls import ServerTls
from clusterq_proto.v1 import admin_pb2, admin_pb2_grpc, node_pb2, node_pb2_grpc
from coordinator.replica import LEADERSHIP_SERVICE, ReplicaState
from coordinator.rpc.admin_service import AgentsServicer, QueueAdminServicer, StatsServicer
from coordinator.rpc.node_service import NodeServicer

# Always SERVING while the process answers: the liveness probe's service. Liveness must not follow
# "" (readiness): an etcd outage makes every replica unready, and restarting them all fixes nothing.
LIVENESS_SERVICE = "clusterq.v1.Liveness"

# grpc sets SO_REUSEPORT by default: a second server on the same port (the health port given the
# API's port under another address, or a second replica on the host) would then bind silently and
# take a share of the connections. Off, such a bind fails at start-up.
NO_REUSEPORT = ("grpc.so_reuseport", 0)

# Keepalive both ways: nodes must notice a dead leader quickly, and the leader a node that stopped
# answering without closing its connection (a frozen stasis app, a partition dropping packets): its
# stream must end so that the node is detached at once and lost after node_ttl. Pings every 2 s, no
# limit on pings while no data flows, and an unanswered ping ends the connection after 2 s: grpcio
# 1.85 does that after grpc.http2.ping_timeout_ms (default 60 s), keepalive_timeout_ms alone does not
# (measured: a SIGSTOPped client was not detected in 40 s; with the ping timeout, in 3 s).
SERVER_OPTIONS = [
    NO_REUSEPORT,
    ("grpc.keepalive_time_ms", 2_000),
    ("grpc.keepalive_timeout_ms", 2_000),
    ("grpc.http2.ping_timeout_ms", 2_000),
    ("grpc.http2.max_pings_without_data", 0),
    ("grpc.http2.min_ping_interval_without_data_ms", 1_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.max_receive_message_length", 8 * 1024 * 1024),
]


async def build_server(state: ReplicaState, listen: str,
                       tls: ServerTls | None = None) -> tuple[grpc.aio.Server, int]:
    """Create and start the API server (TLS with `tls`, else plaintext); returns it and the bound port
    (listen may use port 0)."""
    server = grpc.aio.server(options=SERVER_OPTIONS)
    node_pb2_grpc.add_NodeServiceServicer_to_server(NodeServicer(state), server)
    admin_pb2_grpc.add_QueueAdminServicer_to_server(QueueAdminServicer(state), server)
    admin_pb2_grpc.add_AgentsServicer_to_server(AgentsServicer(state), server)
    admin_pb2_grpc.add_StatsServicer_to_server(StatsServicer(state), server)
    health_pb2_grpc.add_HealthServicer_to_server(state.health, server)
    names = (
        node_pb2.DESCRIPTOR.services_by_name["NodeService"].full_name,
        admin_pb2.DESCRIPTOR.services_by_name["QueueAdmin"].full_name,
        admin_pb2.DESCRIPTOR.services_by_name["Agents"].full_name,
        admin_pb2.DESCRIPTOR.services_by_name["Stats"].full_name,
        health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
        reflection.SERVICE_NAME,
    )
    reflection.enable_server_reflection(names, server)
    port = server.add_insecure_port(listen) if tls is None else server.add_secure_port(listen, tls.credentials())
    if port == 0:
        raise RuntimeError(f"cannot listen on {listen}")
    # Before start, so no probe sees a status missing: the overall status "" becomes SERVING only
    # once this replica reached etcd and campaigns (`set_ready`), on leader and followers alike
    # (rollouts proceed); a replica with a wrong etcd configuration never becomes ready. The named
    # leadership service is SERVING only on the leader.
    await state.health.set(LIVENESS_SERVICE, health_pb2.HealthCheckResponse.SERVING)
    await set_ready(state, False)
    await state.health.set(LEADERSHIP_SERVICE, health_pb2.HealthCheckResponse.NOT_SERVING)
    await server.start()
    return server, port


async def build_health_server(state: ReplicaState, listen: str) -> tuple[grpc.aio.Server, int]:
    """Create and start a plaintext server with grpc.health.v1.Health alone (state.health: the API
    server's statuses, "" / Liveness / Leadership); returns it and the bound port. Nothing else is
    served there, not even reflection: it is reachable without TLS. Build it after build_server, which
    sets the statuses before anything can ask."""
    server = grpc.aio.server(options=[NO_REUSEPORT])
    health_pb2_grpc.add_HealthServicer_to_server(state.health, server)
    port = server.add_insecure_port(listen)
    if port == 0:
        raise RuntimeError(f"cannot listen on {listen} (health)")
    await server.start()
    return server, port


async def set_ready(state: ReplicaState, ready: bool) -> None:
    """Set the overall health status "" (the readiness probe's service)."""
    status = health_pb2.HealthCheckResponse.SERVING if ready else health_pb2.HealthCheckResponse.NOT_SERVING
    await state.health.set("", status)


def new_health() -> health.aio.HealthServicer:
    """A fresh asyncio health servicer."""
    return health.aio.HealthServicer()

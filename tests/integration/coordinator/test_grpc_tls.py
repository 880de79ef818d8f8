"""TLS on the coordinator's gRPC API, on real etcd with two in-process replicas (real grpc.aio servers):
the stasis side's node stream, AdminClient and the `clusterq` command follow the leader from a
follower over TLS; plaintext clients and clients trusting another CA are refused; with mutual TLS a
client without a certificate from the CA is refused; the plaintext probe port answers health alone.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from clusterq_common.leader_client import AdminClient
from clusterq_common.tls import ClientTls, ServerTls, client_tls_from_files, open_channel, server_tls_from_files
from clusterq_proto.v1 import admin_pb2, admin_pb2_grpc, node_pb2, node_pb2_grpc
from clusterq_testing.certs import CertPair, TestCa
from coordinator.rpc.server import LIVENESS_SERVICE
from stasis_app.coordinator_client import CoordinatorClient
from tests.integration.replicas import Replicas, running_replicas

pytestmark = pytest.mark.integration

QUEUES = "queues:\n  support: {strategy: leastrecent}\n"
SERVING, NOT_SERVING = health_pb2.HealthCheckResponse.SERVING, health_pb2.HealthCheckResponse.NOT_SERVING
# The server certificate names this (and localhost) but not 127.0.0.1, the address every replica
# advertises: like a pod IP in Kubernetes, so every hop verifies only through CLUSTERQ_COORDINATOR_TLS_NAME.
CERT_NAME = "clusterq-coordinator"


@dataclass(frozen=True)
class Pki:
    """The cluster's CA (server and node certificates) and a stranger CA with a client certificate of its own."""

    ca: TestCa
    server: CertPair
    node: CertPair
    other_ca: TestCa
    other_node: CertPair

    def client(self, *, cert: CertPair | None = None, name: str = CERT_NAME) -> ClientTls:
        """Trusting the cluster's CA, verifying `name`, with `cert` as client certificate if given."""
        tls = client_tls_from_files(self.ca.ca_cert, cert.cert if cert else None, cert.key if cert else None, name)
        assert tls is not None
        return tls


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    ca, other = TestCa(tmp_path_factory.mktemp("ca")), TestCa(tmp_path_factory.mktemp("other-ca"))
    return Pki(ca, ca.server("coordinator", (CERT_NAME,), ip=False), ca.client("node-a"), other,
               other.client("node-x"))


def _server_tls(pki: Pki, *, mutual: bool) -> ServerTls:
    tls = server_tls_from_files(pki.server.cert, pki.server.key, pki.ca.ca_cert if mutual else None)
    assert tls is not None
    return tls


async def _health(address: str, tls: ClientTls | None, service: str = "") -> int | grpc.StatusCode:
    """The health status of `service`, or the status code of the refused call."""
    async with open_channel(address, tls) as ch:
        try:
            r = await health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(service=service), timeout=3)
        except grpc.aio.AioRpcError as exc:
            return exc.code()  # type: ignore[no-any-return]
        return r.status


async def _serving_within(address: str, tls: ClientTls | None, timeout: float = 10.0) -> None:
    """Wait until the overall status "" is SERVING (the replica campaigns)."""
    async with open_channel(address, tls) as ch:
        watch = health_pb2_grpc.HealthStub(ch).Watch(health_pb2.HealthCheckRequest(service=""))
        try:
            async with asyncio.timeout(timeout):
                while (await watch.read()).status != SERVING:
                    pass
        finally:
            watch.cancel()


async def _node_joins_through(follower: str, tls: ClientTls) -> CoordinatorClient:
    """A stasis-side node stream given only the follower's address: it must follow the hint to the
    leader (over TLS) and get a JoinAck for a caller."""
    connected, acked = asyncio.Event(), asyncio.Event()

    def on_decision(d: node_pb2.Decision) -> None:
        if d.WhichOneof("decision") == "join_ack" and d.join_ack.call_id == "a-1":
            acked.set()

    client = CoordinatorClient("a", (follower,), node_pb2.Register, on_decision,
                               lambda up: connected.set() if up else None, tls=tls)
    task = asyncio.create_task(client.run())
    try:
        async with asyncio.timeout(15):
            await connected.wait()
            client.send(node_pb2.NodeEvent(call_joined=node_pb2.CallJoined(call_id="a-1", queue="support")))
            await acked.wait()
    finally:
        client.close()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    return client


async def clusterq(coordinator: str, *argv: str) -> tuple[int, str, str]:
    """The `clusterq` command in its own process."""
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "clusterq_cli", "--coordinator", coordinator,
                                                *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


@pytest.fixture
async def tls_replicas(tmp_path: Path, etcd_factory: object, pki: Pki) -> AsyncIterator[Replicas]:
    etcd = await etcd_factory()  # type: ignore[operator]
    async with running_replicas(etcd.endpoints, tmp_path, QUEUES, tls=_server_tls(pki, mutual=False),
                                client_tls=pki.client(), health_port=True) as r:
        yield r


@pytest.fixture
async def mtls_replicas(tmp_path: Path, etcd_factory: object, pki: Pki) -> AsyncIterator[Replicas]:
    etcd = await etcd_factory()  # type: ignore[operator]
    async with running_replicas(etcd.endpoints, tmp_path, QUEUES, tls=_server_tls(pki, mutual=True),
                                client_tls=pki.client(cert=pki.node)) as r:
        yield r


async def test_tls_clients_follow_the_leader_and_others_are_refused(tls_replicas: Replicas, pki: Pki) -> None:
    leader = await tls_replicas.leader()
    follower = next(a for a in tls_replicas.addresses if a != leader)
    await _serving_within(follower, pki.client())

    # The node stream, from the follower to the leader; the name override is verified on both hops.
    node = await _node_joins_through(follower, pki.client())
    assert node.highest_epoch > 0
    # Without the name, no hop verifies (the certificate does not name 127.0.0.1).
    assert await _health(follower, pki.client(name="")) == grpc.StatusCode.UNAVAILABLE

    admin = AdminClient([follower], tls=pki.client())
    try:
        assert [q.name for q in await admin.list_queues()] == ["support"]
    finally:
        await admin.close()
    status, out, err = await clusterq(follower, "--ca-file", str(pki.ca.ca_cert), "--tls-name", CERT_NAME,
                                      "queue", "show", "support")
    assert (status, err) == (0, ""), err
    assert out.startswith("support has 1 call (")  # the node's caller

    # Refused: plaintext, a stranger CA, a name the certificate does not carry.
    for refused in (None, ClientTls(pki.other_ca.ca_cert.read_bytes()), pki.client(name="elsewhere.example")):
        assert await _health(leader, refused) == grpc.StatusCode.UNAVAILABLE
    status, _, err = await clusterq(follower, "--timeout", "2", "queue", "show")
    assert status == 1 and "no answer from a leader" in err and "last error: UNAVAILABLE" in err
    status, _, err = await clusterq(follower, "--timeout", "2", "--ca-file", str(pki.other_ca.ca_cert), "queue", "show")
    assert status == 1 and "handshake" in err.lower(), err  # the reason reaches the operator
    # The first hop verifies (the certificate names localhost), the redirect to 127.0.0.1 does not: the
    # operator sees that handshake, not the follower's redirect.
    via_localhost = follower.replace("127.0.0.1", "localhost")
    status, _, err = await clusterq(via_localhost, "--timeout", "2", "--ca-file", str(pki.ca.ca_cert), "queue", "show")
    assert status == 1 and "verification" in err.lower() and "FAILED_PRECONDITION" not in err, err


async def test_the_plaintext_probe_port_serves_the_same_health_and_nothing_else(tls_replicas: Replicas,
                                                                                pki: Pki) -> None:
    leader = await tls_replicas.leader()
    probes = dict(zip(tls_replicas.addresses, tls_replicas.health_addresses, strict=True))
    for addr, probe in probes.items():
        await _serving_within(probe, None)
        assert await _health(probe, None, LIVENESS_SERVICE) == SERVING
        leading = SERVING if addr == leader else NOT_SERVING
        assert await _health(probe, None, "clusterq.v1.Leadership") == leading
        assert await _health(addr, pki.client(), "clusterq.v1.Leadership") == leading  # the same servicer
        assert await _health(probe, pki.client()) == grpc.StatusCode.UNAVAILABLE  # it does not speak TLS
    async with grpc.aio.insecure_channel(probes[leader]) as ch:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await admin_pb2_grpc.QueueAdminStub(ch).ListQueues(admin_pb2.ListQueuesRequest(), timeout=3)
        assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await admin_pb2_grpc.StatsStub(ch).Snapshot(admin_pb2.StatsRequest(), timeout=3)
        assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED
        stream = node_pb2_grpc.NodeServiceStub(ch).Connect()
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stream.read()
        assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED

    # Shutdown: the probe port reports NOT_SERVING while the API drains.
    async with grpc.aio.insecure_channel(probes[leader]) as ch:
        watch = health_pb2_grpc.HealthStub(ch).Watch(health_pb2.HealthCheckRequest(service=""))
        assert (await watch.read()).status == SERVING
        tls_replicas.tasks[tls_replicas.addresses.index(leader)].cancel()
        assert (await asyncio.wait_for(watch.read(), 5)).status == NOT_SERVING
        watch.cancel()


async def test_mutual_tls_accepts_only_clients_with_a_certificate_from_the_ca(mtls_replicas: Replicas,
                                                                            pki: Pki) -> None:
    leader = await mtls_replicas.leader()  # itself over mutual TLS
    follower = next(a for a in mtls_replicas.addresses if a != leader)
    stranger = client_tls_from_files(pki.ca.ca_cert, pki.other_node.cert, pki.other_node.key, CERT_NAME)
    for refused in (pki.client(), stranger, None):  # no certificate, one from another CA, plaintext
        assert await _health(leader, refused) == grpc.StatusCode.UNAVAILABLE
    assert await _health(leader, pki.client(cert=pki.node)) == SERVING

    node = await _node_joins_through(follower, pki.client(cert=pki.node))
    assert node.highest_epoch > 0
    tls_args = ("--ca-file", str(pki.ca.ca_cert), "--tls-name", CERT_NAME, "--cert-file", str(pki.node.cert),
                "--key-file", str(pki.node.key))
    status, out, err = await clusterq(follower, *tls_args, "queue", "show", "support")
    assert (status, err) == (0, ""), err
    assert out.startswith("support has 1 call (")
    status, _, err = await clusterq(follower, "--timeout", "2", "--ca-file", str(pki.ca.ca_cert), "--tls-name",
                                    CERT_NAME, "queue", "show")
    assert status == 1 and "no answer from a leader" in err

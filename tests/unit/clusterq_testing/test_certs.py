"""The test CA makes certificates that openssl verifies against it, and gRPC accepts over TLS."""

from __future__ import annotations

import subprocess
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from clusterq_testing.certs import TestCa


def _verify(ca: TestCa, cert: Path, purpose: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["openssl", "verify", "-purpose", purpose, "-CAfile", str(ca.ca_cert), str(cert)],
                          capture_output=True, text=True, check=False)


def test_certificates_verify_against_their_ca_only(tmp_path: Path) -> None:
    ca = TestCa(tmp_path / "a")
    other = TestCa(tmp_path / "b")
    server = ca.server("srv")
    client = ca.client("alice")
    assert _verify(ca, server.cert, "sslserver").returncode == 0
    assert _verify(ca, client.cert, "sslclient").returncode == 0
    assert _verify(other, server.cert, "sslserver").returncode != 0
    assert _verify(ca, client.cert, "sslserver").returncode != 0  # a client certificate cannot serve
    assert oct(client.key.stat().st_mode & 0o777) == "0o600"


async def test_grpc_tls_with_a_server_certificate(tmp_path: Path) -> None:
    ca = TestCa(tmp_path)
    pair = ca.server("srv")
    server = grpc.aio.server()
    health_pb2_grpc.add_HealthServicer_to_server(health.aio.HealthServicer(), server)
    creds = grpc.ssl_server_credentials([(pair.key.read_bytes(), pair.cert.read_bytes())])
    port = server.add_secure_port("127.0.0.1:0", creds)
    await server.start()
    try:
        trusted = grpc.ssl_channel_credentials(root_certificates=ca.ca_cert.read_bytes())
        async with grpc.aio.secure_channel(f"127.0.0.1:{port}", trusted) as ch:
            resp = await health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=5)
            assert resp.status == health_pb2.HealthCheckResponse.SERVING
        untrusted = grpc.ssl_channel_credentials(root_certificates=TestCa(tmp_path / "x").ca_cert.read_bytes())
        async with grpc.aio.secure_channel(f"127.0.0.1:{port}", untrusted) as ch:
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=5)
            assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        await server.stop(None)

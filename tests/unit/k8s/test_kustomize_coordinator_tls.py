"""k8s/components/coordinator-tls rendered in an overlay over the base: the schema still validates,
probes move to the plaintext health port, the key reaches the coordinator only, and the environment
each pod gets, with the Secret's files put where it mounts them, gives working TLS through the apps'
own settings classes (a misspelt variable would silently leave the API in plaintext)."""

from __future__ import annotations

from pathlib import Path

import grpc
import kubernetes_validate  # type: ignore[import-untyped]
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from clusterq_common.tls import client_tls_from_env, open_channel
from clusterq_testing.certs import TestCa
from coordinator.config import CoordinatorSettings
from stasis_app.config import StasisSettings
from tests.unit.k8s.conftest import render
from tests.unit.k8s.rendering import SCHEMA_VERSIONS, Obj, Rendered, _container, _host_port, _pod_env, secret_files

SECRET = "clusterq-coordinator-tls"


@pytest.fixture(scope="module")
def overlay(tmp_path_factory: pytest.TempPathFactory) -> Rendered:
    """The base plus the component, rendered from an overlay outside k8s/ (as an operator keeps it)."""
    return render(tmp_path_factory.mktemp("overlay"), "coordinator-tls")


@pytest.mark.parametrize("version", SCHEMA_VERSIONS)
def test_the_overlay_validates_strictly(overlay: Rendered, version: str) -> None:
    for obj in overlay.objects:
        kubernetes_validate.validate(obj, version, strict=True)


def test_probes_use_the_health_port_and_the_key_stays_on_the_coordinator(overlay: Rendered) -> None:
    dep = overlay.get("Deployment", "clusterq-coordinator")
    coord = _container(dep, "coordinator")
    _, health_port = _host_port(_pod_env(overlay, coord, None, "")["CLUSTERQ_HEALTH_LISTEN"])
    assert coord["readinessProbe"]["grpc"] == {"port": health_port}
    assert coord["livenessProbe"]["grpc"] == {"port": health_port, "service": "clusterq.v1.Liveness"}
    assert health_port in [p["containerPort"] for p in coord["ports"]]
    assert sorted(secret_files(dep, coord, SECRET).values()) == ["ca.crt", "tls.crt", "tls.key"]
    sts = overlay.get("StatefulSet", "asterisk-node")
    assert list(secret_files(sts, _container(sts, "stasis-app"), SECRET).values()) == ["ca.crt"]
    assert not secret_files(sts, _container(sts, "asterisk"), SECRET)


async def test_the_rendered_environment_gives_working_tls(overlay: Rendered, tmp_path: Path) -> None:
    ca = TestCa(tmp_path / "ca")
    pair = ca.server("coordinator", extra_names=("clusterq-coordinator",))
    secret = {"tls.crt": pair.cert, "tls.key": pair.key, "ca.crt": ca.ca_cert}

    def env_with_files(workload: Obj, container: Obj, fields: dict[str, str]) -> dict[str, str]:
        files = secret_files(workload, container, SECRET)
        env = _pod_env(overlay, container, fields, "not-real")
        return {k: str(secret[files[v]]) if v in files else v for k, v in env.items()}

    dep = overlay.get("Deployment", "clusterq-coordinator")
    fields = {"metadata.name": "clusterq-coordinator-abc12", "status.podIP": "10.1.2.3"}
    coordinator = CoordinatorSettings.from_env(env_with_files(dep, _container(dep, "coordinator"), fields))
    assert coordinator.tls is not None and not coordinator.tls.mutual
    # `kubectl exec` of the clusterq command in the coordinator's pod: the CLI's settings are the client's.
    cli_env = env_with_files(dep, _container(dep, "coordinator"), fields)
    cli = client_tls_from_env(cli_env)
    assert cli is not None and cli.target_name == "clusterq-coordinator"
    sts = overlay.get("StatefulSet", "asterisk-node")
    fields = {"metadata.name": "asterisk-node-0", "metadata.namespace": "clusterq"}
    stasis = StasisSettings.from_env(env_with_files(sts, _container(sts, "stasis-app"), fields))
    assert stasis.coordinator_tls is not None and stasis.coordinator_tls.target_name == "clusterq-coordinator"

    # The stasis app's credentials complete a handshake with the coordinator's, dialling an address
    # (like a leader's pod IP) by the name the certificate carries.
    server = grpc.aio.server()
    health_pb2_grpc.add_HealthServicer_to_server(health.aio.HealthServicer(), server)
    port = server.add_secure_port("127.0.0.1:0", coordinator.tls.credentials())
    await server.start()
    try:
        async with open_channel(f"127.0.0.1:{port}", stasis.coordinator_tls) as ch:
            resp = await health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=5)
        assert resp.status == health_pb2.HealthCheckResponse.SERVING
    finally:
        await server.stop(None)

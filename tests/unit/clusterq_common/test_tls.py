"""TLS settings: files become grpc credentials once, incomplete settings and unusable files are refused
with the variable's name, keys never show in repr or messages; a real grpc.aio server on port 0
shows what each client setting is accepted or refused by."""

from __future__ import annotations

import re
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from clusterq_common.tls import (
    ClientTls,
    ServerTls,
    TlsConfigError,
    client_tls_from_env,
    open_channel,
    server_tls_from_env,
)
from clusterq_testing.certs import CertPair, TestCa


@dataclass(frozen=True)
class Pki:
    """Two CAs: `ca` signed the coordinator's and node's certificates, `other` is a stranger."""

    ca: TestCa
    other: TestCa
    server: CertPair
    client: CertPair
    stranger: CertPair  # a server pair signed by `other`


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    ca, other = TestCa(tmp_path_factory.mktemp("ca")), TestCa(tmp_path_factory.mktemp("other"))
    return Pki(ca, other, ca.server("coord", ("coordinator.test",)), ca.client("node-a"), other.server("stranger"))


def _key_body(pair: CertPair) -> str:
    """A line of the key's base64 body: must never appear in a repr or a message."""
    return pair.key.read_text().splitlines()[1]


# ------------------------------------------------------------------------------ server side
def test_the_server_is_plaintext_without_settings() -> None:
    assert server_tls_from_env({}) is None


def test_cert_and_key_turn_tls_on_and_a_client_ca_makes_it_mutual(pki: Pki) -> None:
    env = {"CLUSTERQ_TLS_CERT_FILE": str(pki.server.cert), "CLUSTERQ_TLS_KEY_FILE": str(pki.server.key)}
    one_way = server_tls_from_env(env)
    assert one_way is not None and not one_way.mutual
    assert (one_way.cert_chain, one_way.private_key) == (pki.server.cert.read_bytes(), pki.server.key.read_bytes())
    assert isinstance(one_way.credentials(), grpc.ServerCredentials)
    mutual = server_tls_from_env({**env, "CLUSTERQ_TLS_CLIENT_CA_FILE": str(pki.ca.ca_cert)})
    assert mutual is not None and mutual.mutual and mutual.client_ca == pki.ca.ca_cert.read_bytes()
    assert _key_body(pki.server) not in repr(mutual) and "PRIVATE" not in repr(mutual)


@pytest.mark.parametrize(("names", "message"), [
    (("CLUSTERQ_TLS_CERT_FILE",), "CLUSTERQ_TLS_CERT_FILE and CLUSTERQ_TLS_KEY_FILE go together"),
    (("CLUSTERQ_TLS_KEY_FILE",), "CLUSTERQ_TLS_CERT_FILE and CLUSTERQ_TLS_KEY_FILE go together"),
    (("CLUSTERQ_TLS_CLIENT_CA_FILE",), "CLUSTERQ_TLS_CLIENT_CA_FILE .mutual TLS. needs CLUSTERQ_TLS_CERT_FILE"),
    (("CLUSTERQ_TLS_CERT_FILE", "CLUSTERQ_TLS_CLIENT_CA_FILE"), "go together"),
])
def test_incomplete_server_settings_are_refused(pki: Pki, names: tuple[str, ...], message: str) -> None:
    files = {"CLUSTERQ_TLS_CERT_FILE": pki.server.cert, "CLUSTERQ_TLS_KEY_FILE": pki.server.key,
             "CLUSTERQ_TLS_CLIENT_CA_FILE": pki.ca.ca_cert}
    with pytest.raises(TlsConfigError, match=message):
        server_tls_from_env({n: str(files[n]) for n in names})


def test_unusable_server_files_are_refused_naming_the_variable_never_the_key(pki: Pki, tmp_path: Path) -> None:
    cert, key = str(pki.server.cert), str(pki.server.key)
    missing = str(tmp_path / "nope.pem")
    with pytest.raises(TlsConfigError, match=re.escape(f"CLUSTERQ_TLS_KEY_FILE={missing}: cannot read the file")):
        server_tls_from_env({"CLUSTERQ_TLS_CERT_FILE": cert, "CLUSTERQ_TLS_KEY_FILE": missing})
    with pytest.raises(TlsConfigError, match=r"CLUSTERQ_TLS_CERT_FILE=.*coord\.key: not a PEM certificate") as swapped:
        server_tls_from_env({"CLUSTERQ_TLS_CERT_FILE": key, "CLUSTERQ_TLS_KEY_FILE": cert})
    assert _key_body(pki.server) not in str(swapped.value)
    with pytest.raises(TlsConfigError, match=r"CLUSTERQ_TLS_KEY_FILE=.*stranger\.key is not the key of") as other:
        server_tls_from_env({"CLUSTERQ_TLS_CERT_FILE": cert, "CLUSTERQ_TLS_KEY_FILE": str(pki.stranger.key)})
    assert _key_body(pki.stranger) not in str(other.value)
    with pytest.raises(TlsConfigError, match=r"CLUSTERQ_TLS_CLIENT_CA_FILE=.*not a PEM certificate"):
        server_tls_from_env({"CLUSTERQ_TLS_CERT_FILE": cert, "CLUSTERQ_TLS_KEY_FILE": key,
                             "CLUSTERQ_TLS_CLIENT_CA_FILE": key})


def test_an_encrypted_key_is_refused_without_any_passphrase_prompt(pki: Pki, tmp_path: Path) -> None:
    """OpenSSL would prompt on a terminal (or fail with a bare OSError without one); grpc cannot use it."""
    encrypted = tmp_path / "encrypted.key"
    done = subprocess.run(["openssl", "pkey", "-in", str(pki.server.key), "-aes256", "-passout", "pass:pw",
                           "-out", str(encrypted)], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    with pytest.raises(TlsConfigError, match=r"CLUSTERQ_TLS_KEY_FILE=.*encrypted\.key: the key is encrypted"):
        server_tls_from_env({"CLUSTERQ_TLS_CERT_FILE": str(pki.server.cert), "CLUSTERQ_TLS_KEY_FILE": str(encrypted)})


# ------------------------------------------------------------------------------ client side
def test_the_client_is_plaintext_without_a_ca() -> None:
    assert client_tls_from_env({}) is None


def test_the_ca_turns_client_tls_on_and_cert_and_key_add_a_client_certificate(pki: Pki) -> None:
    ca_only = client_tls_from_env({"CLUSTERQ_COORDINATOR_CA_FILE": str(pki.ca.ca_cert)})
    assert ca_only == ClientTls(pki.ca.ca_cert.read_bytes())
    assert not ca_only.mutual and ca_only.channel_options() == []
    full = client_tls_from_env({"CLUSTERQ_COORDINATOR_CA_FILE": str(pki.ca.ca_cert),
                                "CLUSTERQ_COORDINATOR_CERT_FILE": str(pki.client.cert),
                                "CLUSTERQ_COORDINATOR_KEY_FILE": str(pki.client.key),
                                "CLUSTERQ_COORDINATOR_TLS_NAME": "coordinator.test"})
    assert full is not None and full.mutual and full.private_key == pki.client.key.read_bytes()
    assert full.channel_options() == [("grpc.ssl_target_name_override", "coordinator.test")]
    assert isinstance(full.credentials(), grpc.ChannelCredentials)
    assert _key_body(pki.client) not in repr(full) and "coordinator.test" in repr(full)


@pytest.mark.parametrize(("names", "message"), [
    (("CLUSTERQ_COORDINATOR_CERT_FILE", "CLUSTERQ_COORDINATOR_KEY_FILE"), "need CLUSTERQ_COORDINATOR_CA_FILE"),
    (("CLUSTERQ_COORDINATOR_TLS_NAME",), "need CLUSTERQ_COORDINATOR_CA_FILE"),
    (("CLUSTERQ_COORDINATOR_CA_FILE", "CLUSTERQ_COORDINATOR_CERT_FILE"), "go together"),
    (("CLUSTERQ_COORDINATOR_CA_FILE", "CLUSTERQ_COORDINATOR_KEY_FILE"), "go together"),
])
def test_incomplete_client_settings_are_refused(pki: Pki, names: tuple[str, ...], message: str) -> None:
    values = {"CLUSTERQ_COORDINATOR_CA_FILE": str(pki.ca.ca_cert), "CLUSTERQ_COORDINATOR_CERT_FILE": str(pki.client.cert),
              "CLUSTERQ_COORDINATOR_KEY_FILE": str(pki.client.key), "CLUSTERQ_COORDINATOR_TLS_NAME": "coordinator.test"}
    with pytest.raises(TlsConfigError, match=message):
        client_tls_from_env({n: values[n] for n in names})


def test_unusable_client_files_are_refused(pki: Pki, tmp_path: Path) -> None:
    with pytest.raises(TlsConfigError, match=r"CLUSTERQ_COORDINATOR_CA_FILE=.*cannot read the file"):
        client_tls_from_env({"CLUSTERQ_COORDINATOR_CA_FILE": str(tmp_path / "missing.pem")})
    with pytest.raises(TlsConfigError, match=r"CLUSTERQ_COORDINATOR_KEY_FILE=.*coord\.key is not the key of"):
        client_tls_from_env({"CLUSTERQ_COORDINATOR_CA_FILE": str(pki.ca.ca_cert),
                             "CLUSTERQ_COORDINATOR_CERT_FILE": str(pki.client.cert),
                             "CLUSTERQ_COORDINATOR_KEY_FILE": str(pki.server.key)})
    with pytest.raises(TlsConfigError, match="a client certificate needs its key"):
        ClientTls(b"ca", cert_chain=b"cert")


# ------------------------------------------------------------------------------ over the wire
@pytest.fixture
async def tls_health(pki: Pki) -> AsyncIterator[str]:
    """A TLS (not mutual) grpc.aio server with the health service, on 127.0.0.1:0."""
    server_tls = ServerTls(pki.server.cert.read_bytes(), pki.server.key.read_bytes())
    server = grpc.aio.server()
    health_pb2_grpc.add_HealthServicer_to_server(health.aio.HealthServicer(), server)
    port = server.add_secure_port("127.0.0.1:0", server_tls.credentials())
    assert port != 0
    await server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        await server.stop(None)


async def _check(address: str, tls: ClientTls | None) -> grpc.StatusCode:
    async with open_channel(address, tls) as ch:
        try:
            await health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=3)
        except grpc.aio.AioRpcError as exc:
            return exc.code()  # type: ignore[no-any-return]
    return grpc.StatusCode.OK


async def test_open_channel_verifies_the_server_against_the_ca_and_the_name(pki: Pki, tls_health: str) -> None:
    ca = pki.ca.ca_cert.read_bytes()
    assert await _check(tls_health, ClientTls(ca)) == grpc.StatusCode.OK  # 127.0.0.1 is in the certificate
    assert await _check(tls_health, ClientTls(ca, target_name="coordinator.test")) == grpc.StatusCode.OK
    assert await _check(tls_health, ClientTls(ca, target_name="elsewhere.test")) == grpc.StatusCode.UNAVAILABLE
    assert await _check(tls_health, ClientTls(pki.other.ca_cert.read_bytes())) == grpc.StatusCode.UNAVAILABLE
    assert await _check(tls_health, None) == grpc.StatusCode.UNAVAILABLE  # plaintext

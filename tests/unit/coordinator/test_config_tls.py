"""The coordinator's TLS and probe-port settings from the environment, and what a bad one does at start."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from clusterq_common.tls import TlsConfigError
from clusterq_testing.certs import CertPair, TestCa
from clusterq_testing.ports import free_tcp_port
from coordinator.config import CoordinatorSettings

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> TestCa:
    return TestCa(tmp_path_factory.mktemp("ca"))


@pytest.fixture(scope="module")
def server(ca: TestCa) -> CertPair:
    return ca.server("coord")


def test_defaults_stay_plaintext_without_a_probe_port() -> None:
    s = CoordinatorSettings.from_env({})
    assert (s.tls, s.health_listen) == (None, "")


def test_tls_files_and_the_probe_port_are_read(ca: TestCa, server: CertPair) -> None:
    s = CoordinatorSettings.from_env({"CLUSTERQ_TLS_CERT_FILE": str(server.cert),
                                      "CLUSTERQ_TLS_KEY_FILE": str(server.key),
                                      "CLUSTERQ_TLS_CLIENT_CA_FILE": str(ca.ca_cert),
                                      "CLUSTERQ_HEALTH_LISTEN": "0.0.0.0:50052"})
    assert s.tls is not None and s.tls.mutual and s.tls.cert_chain == server.cert.read_bytes()
    assert s.health_listen == "0.0.0.0:50052"
    assert server.key.read_text().splitlines()[1] not in repr(s), "the key stays out of the settings' repr"


def test_a_cert_without_its_key_is_refused(server: CertPair) -> None:
    with pytest.raises(TlsConfigError, match="CLUSTERQ_TLS_CERT_FILE and CLUSTERQ_TLS_KEY_FILE go together"):
        CoordinatorSettings.from_env({"CLUSTERQ_TLS_CERT_FILE": str(server.cert)})


@pytest.mark.parametrize("health", ["0.0.0.0:50051", "127.0.0.1:50051", "[::]:50051"])
def test_the_probe_port_must_differ_from_the_api_port(health: str) -> None:
    with pytest.raises(ValueError, match="CLUSTERQ_HEALTH_LISTEN must use another port"):
        CoordinatorSettings.from_env({"CLUSTERQ_LISTEN": "0.0.0.0:50051", "CLUSTERQ_HEALTH_LISTEN": health})


def test_main_exits_with_status_2_naming_an_unreadable_tls_file(server: CertPair, tmp_path: Path) -> None:
    missing = tmp_path / "tls.key"
    env = {**os.environ, "CLUSTERQ_TLS_CERT_FILE": str(server.cert), "CLUSTERQ_TLS_KEY_FILE": str(missing),
           "CLUSTERQ_LISTEN": f"127.0.0.1:{free_tcp_port()}", "CLUSTERQ_ETCD_ENDPOINTS": f"127.0.0.1:{free_tcp_port()}"}
    done = subprocess.run([sys.executable, "-m", "coordinator"], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=30, check=False)
    assert done.returncode == 2
    assert f"CLUSTERQ_TLS_KEY_FILE={missing}: cannot read the file" in done.stderr
    assert "Traceback" not in done.stderr

"""Stasis-app settings from the environment: credentials never end up where they would be logged."""

from __future__ import annotations

from pathlib import Path

import pytest

from clusterq_common.tls import TlsConfigError
from clusterq_testing.certs import TestCa
from stasis_app.config import StasisSettings

_ENV = {"CLUSTERQ_NODE_ID": "a", "CLUSTERQ_ARI_PASSWORD": "secret-pw"}


def test_the_ari_url_and_user_come_from_the_environment_and_the_password_stays_out_of_repr() -> None:
    s = StasisSettings.from_env({**_ENV, "CLUSTERQ_ARI_URL": "http://10.0.0.5:8088/", "CLUSTERQ_ARI_USER": "cq"})
    assert (s.ari_url, s.ari_user, s.ari_password) == ("http://10.0.0.5:8088/", "cq", "secret-pw")
    assert "secret-pw" not in repr(s)


@pytest.mark.parametrize("url", ["http://cq:hunter2@10.0.0.5:8088/", "http://cq@10.0.0.5:8088/"])
def test_credentials_in_the_ari_url_are_refused_without_repeating_them(url: str) -> None:
    with pytest.raises(ValueError, match="CLUSTERQ_ARI_USER and CLUSTERQ_ARI_PASSWORD") as err:
        StasisSettings.from_env({**_ENV, "CLUSTERQ_ARI_URL": url})
    assert "hunter2" not in str(err.value)


def test_the_coordinator_is_dialled_in_plaintext_by_default() -> None:
    assert StasisSettings.from_env(_ENV).coordinator_tls is None


def test_coordinator_tls_with_a_client_certificate_and_a_name_to_verify(tmp_path: Path) -> None:
    ca = TestCa(tmp_path)
    node = ca.client("node-a")
    s = StasisSettings.from_env({**_ENV, "CLUSTERQ_COORDINATOR_CA_FILE": str(ca.ca_cert),
                                 "CLUSTERQ_COORDINATOR_CERT_FILE": str(node.cert),
                                 "CLUSTERQ_COORDINATOR_KEY_FILE": str(node.key),
                                 "CLUSTERQ_COORDINATOR_TLS_NAME": "clusterq-coordinator"})
    tls = s.coordinator_tls
    assert tls is not None and tls.mutual and tls.ca == ca.ca_cert.read_bytes()
    assert tls.channel_options() == [("grpc.ssl_target_name_override", "clusterq-coordinator")]
    assert node.key.read_text().splitlines()[1] not in repr(s)


def test_a_client_certificate_without_the_coordinator_ca_is_refused(tmp_path: Path) -> None:
    node = TestCa(tmp_path).client("node-a")
    with pytest.raises(TlsConfigError, match="need CLUSTERQ_COORDINATOR_CA_FILE"):
        StasisSettings.from_env({**_ENV, "CLUSTERQ_COORDINATOR_CERT_FILE": str(node.cert),
                                 "CLUSTERQ_COORDINATOR_KEY_FILE": str(node.key)})

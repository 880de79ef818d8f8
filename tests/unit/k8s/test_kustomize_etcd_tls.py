"""k8s/components/etcd-tls rendered in an overlay over the base (alone and with coordinator-tls): the
schema still validates, exactly the two client-URL flags become https, etcd gets its certificate
through ETCD_* variables, the probes stay on the plain metrics port, the coordinator's env names
files that its mounts provide."""

from __future__ import annotations

import kubernetes_validate  # type: ignore[import-untyped]
import pytest

from tests.unit.k8s.conftest import render
from tests.unit.k8s.rendering import SCHEMA_VERSIONS, Rendered, _container, _pod_env, secret_files


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Rendered:
    return render(tmp_path_factory.mktemp("base"))


@pytest.fixture(scope="module", params=[("etcd-tls",), ("etcd-tls", "coordinator-tls")])
def overlay(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Rendered:
    return render(tmp_path_factory.mktemp("overlay"), *request.param)


@pytest.mark.parametrize("version", SCHEMA_VERSIONS)
def test_the_overlay_validates_strictly(overlay: Rendered, version: str) -> None:
    for obj in overlay.objects:
        kubernetes_validate.validate(obj, version, strict=True)


def test_exactly_the_client_urls_turn_https(base: Rendered, overlay: Rendered) -> None:
    before = _container(base.get("StatefulSet", "etcd"), "etcd")["args"]
    after = _container(overlay.get("StatefulSet", "etcd"), "etcd")["args"]
    changed = [(a, b) for a, b in zip(before, after, strict=True) if a != b]
    assert changed == [
        ("--listen-client-urls=http://0.0.0.0:2379", "--listen-client-urls=https://0.0.0.0:2379"),
        ("--advertise-client-urls=http://$(POD_NAME).etcd.$(POD_NAMESPACE).svc:2379",
         "--advertise-client-urls=https://$(POD_NAME).etcd.$(POD_NAMESPACE).svc:2379"),
    ]
    assert all("--cert-file" not in a and "--client-cert-auth" not in a for a in after), \
        "a flag also given as ETCD_* would make etcd refuse to start"


def test_etcd_gets_its_certificate_and_keeps_plain_probes(overlay: Rendered) -> None:
    sts = overlay.get("StatefulSet", "etcd")
    etcd = _container(sts, "etcd")
    env = _pod_env(overlay, etcd, None, "")
    files = secret_files(sts, etcd, "clusterq-etcd-tls")
    assert files[env["ETCD_CERT_FILE"]] == "tls.crt"
    assert files[env["ETCD_KEY_FILE"]] == "tls.key"
    assert files[env["ETCD_TRUSTED_CA_FILE"]] == "ca.crt"
    assert env["ETCD_CLIENT_CERT_AUTH"] == "true"
    for probe in ("readinessProbe", "livenessProbe"):
        assert etcd[probe]["httpGet"]["port"] == "metrics"
    assert "--listen-metrics-urls=http://0.0.0.0:2381" in etcd["args"]


def test_the_coordinator_env_names_mounted_files(overlay: Rendered) -> None:
    dep = overlay.get("Deployment", "clusterq-coordinator")
    coord = _container(dep, "coordinator")
    env = _pod_env(overlay, coord, None, "")
    files = secret_files(dep, coord, "clusterq-etcd-client-tls")
    assert files[env["CLUSTERQ_ETCD_CA_FILE"]] == "ca.crt"
    assert files[env["CLUSTERQ_ETCD_CERT_FILE"]] == "tls.crt"
    assert files[env["CLUSTERQ_ETCD_KEY_FILE"]] == "tls.key"
    assert dep["spec"]["template"]["spec"]["securityContext"]["fsGroup"] == 10001

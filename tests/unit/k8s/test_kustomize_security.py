"""Rendered k8s/: no committed secret, credentials only from Secret references, the restricted pod
security standard, and resource requests within limits on every container."""

from __future__ import annotations

import re

import kubernetes_validate  # type: ignore[import-untyped]
import yaml

from tests.unit.k8s.rendering import (
    K8S_DIR,
    NAMESPACE,
    SCHEMA_VERSIONS,
    Rendered,
    _containers,
    _env,
    _pod_spec,
    _quantity,
)

# --- secrets and security ------------------------------------------------------------------------


def test_no_secret_is_rendered_and_the_example_stays_out(rendered: Rendered) -> None:
    """The ARI password is created by the operator: nothing renders or lists a Secret."""
    assert rendered.of_kind("Secret") == []
    kustomization = yaml.safe_load((K8S_DIR / "kustomization.yaml").read_text())
    assert "secretGenerator" not in kustomization
    assert "secret.example.yaml" not in kustomization["resources"]
    example = yaml.safe_load((K8S_DIR / "secret.example.yaml").read_text())
    for version in SCHEMA_VERSIONS:
        kubernetes_validate.validate(example, version, strict=True)
    assert example["stringData"] == {"password": "CHANGE-ME"}


def test_credentials_only_come_from_secret_refs(rendered: Rendered) -> None:
    """No env var that looks like a credential carries a literal value."""
    for w in rendered.workloads():
        for c in _containers(_pod_spec(w)):
            for name, e in _env(c).items():
                if re.search(r"PASSWORD|SECRET|TOKEN", name):
                    assert "value" not in e and "secretKeyRef" in e["valueFrom"], name


def test_pods_meet_the_restricted_pod_security_standard(rendered: Rendered) -> None:
    """Matches the namespace's enforce=restricted label, so no pod is rejected at admission."""
    ns = rendered.get("Namespace", NAMESPACE)
    assert ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    for w in rendered.workloads():
        pod = _pod_spec(w)
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
        assert pod["automountServiceAccountToken"] is False
        assert not any(pod.get(k) for k in ("hostNetwork", "hostPID", "hostIPC"))
        assert not any("hostPath" in v for v in pod.get("volumes", []))
        for c in _containers(pod):
            sc = c["securityContext"]
            assert sc["allowPrivilegeEscalation"] is False, c["name"]
            assert sc["capabilities"] == {"drop": ["ALL"]}, c["name"]
            assert not any("hostPort" in p for p in c.get("ports", [])), c["name"]
            if c["name"] != "asterisk":  # Asterisk writes under /var/lib/asterisk (documented)
                assert sc["readOnlyRootFilesystem"] is True, c["name"]


def test_every_container_has_requests_within_limits(rendered: Rendered) -> None:
    """CPU and memory requests and limits on every container, requests <= limits."""
    for w in rendered.workloads():
        for c in _containers(_pod_spec(w)):
            res = c["resources"]
            for kind in ("cpu", "memory"):
                assert _quantity(res["requests"][kind]) <= _quantity(res["limits"][kind]), c["name"]

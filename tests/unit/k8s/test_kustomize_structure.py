"""Rendered k8s/: strict schema validation, the planned objects and labels, and the references between
objects that a schema cannot check (selectors, named ports, ConfigMaps, headless Services)."""

from __future__ import annotations

import kubernetes_validate  # type: ignore[import-untyped]
import pytest

from tests.unit.k8s.rendering import (
    NAMESPACE,
    SCHEMA_VERSIONS,
    Rendered,
    _config_env,
    _containers,
    _pod_spec,
    _selected,
)

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

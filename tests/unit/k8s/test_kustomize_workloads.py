"""Rendered k8s/: the deployment decisions per workload: etcd membership and probes, the coordinator's
replicas, gRPC probes, rollout and environment, timing order, and the stasis app beside Asterisk, with
the env each pod would get parsed by the apps' own settings classes."""

from __future__ import annotations

from pathlib import Path, PurePosixPath

from coordinator.config import CoordinatorSettings
from coordinator.definitions import load_file
from coordinator.rpc.server import LIVENESS_SERVICE
from stasis_app.config import StasisSettings
from tests.unit.k8s.rendering import (
    NAMESPACE,
    Rendered,
    _args,
    _config_env,
    _container,
    _env,
    _host_port,
    _pod_env,
    _pod_spec,
    _selected,
)

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
    """3 replicas, native gRPC probes (readiness on "", liveness on the process's own service),
    surge-only rollout."""
    dep = rendered.get("Deployment", "clusterq-coordinator")
    assert dep["spec"]["replicas"] == 3
    assert dep["spec"]["strategy"]["rollingUpdate"] == {"maxUnavailable": 0, "maxSurge": 1}
    c = _container(dep, "coordinator")
    assert c["image"] == "clusterq:0.1.0"
    assert c["command"] == ["python", "-m", "coordinator"]
    # Service "" (absent): SERVING on every replica that reached etcd. The leader-only
    # "clusterq.v1.Leadership" here would keep followers unready or kill them.
    assert c["readinessProbe"]["grpc"] == {"port": 50051}
    # Not "": an etcd outage makes every replica unready, and must not restart them all.
    assert c["livenessProbe"]["grpc"] == {"port": 50051, "service": LIVENESS_SERVICE}
    assert [(p["name"], p["containerPort"]) for p in c["ports"]] == [("grpc", 50051), ("metrics", 9102)]
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


def test_coordinator_metrics_port_env_and_scrape_annotations_agree(rendered: Rendered) -> None:
    """CLUSTERQ_METRICS_LISTEN binds the container port named "metrics", and the prometheus.io/*
    annotations on the pod template point a scraper at that port and /metrics."""
    dep = rendered.get("Deployment", "clusterq-coordinator")
    c = _container(dep, "coordinator")
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert _host_port(_config_env(rendered, c)["CLUSTERQ_METRICS_LISTEN"]) == ("0.0.0.0", ports["metrics"])
    annotations = dep["spec"]["template"]["metadata"]["annotations"]
    assert annotations == {"prometheus.io/scrape": "true", "prometheus.io/port": str(ports["metrics"]),
                           "prometheus.io/path": "/metrics"}


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
    assert coordinator.metrics_listen == "0.0.0.0:9102"
    sts = rendered.get("StatefulSet", "asterisk-node")
    fields = {"metadata.name": "asterisk-node-0", "metadata.namespace": NAMESPACE}
    stasis = StasisSettings.from_env(_pod_env(rendered, _container(sts, "stasis-app"), fields, "not-real"))
    assert stasis.node_id == "asterisk-node-0"
    assert stasis.coordinators == ("clusterq-coordinator:50051",)
    assert stasis.grace == 20.0
    assert stasis.ari_password == "not-real"
    assert stasis.health_listen == "0.0.0.0:8090"
    asterisk = _pod_env(rendered, _container(sts, "asterisk"), fields, "not-real")
    assert asterisk["ASTERISK_SIP_HOST"] == f"asterisk-node-0.{sts['spec']['serviceName']}.{NAMESPACE}.svc"
    # A trunk to every node: the peer list is exactly the StatefulSet's pods, under the same domain.
    names = [f"{sts['metadata']['name']}-{i}" for i in range(sts["spec"]["replicas"])]
    assert asterisk["ASTERISK_PEERS"].split(",") == names
    assert asterisk["ASTERISK_PEER_DOMAIN"] == f"{sts['spec']['serviceName']}.{NAMESPACE}.svc"


def test_stasis_app_probes_hit_its_health_endpoints(rendered: Rendered) -> None:
    """Readiness on /readyz, liveness on /livez, both on the port the app's CLUSTERQ_HEALTH_LISTEN binds."""
    app = _container(rendered.get("StatefulSet", "asterisk-node"), "stasis-app")
    ports = {p["name"]: p["containerPort"] for p in app["ports"]}
    _, listen_port = _host_port(_config_env(rendered, app)["CLUSTERQ_HEALTH_LISTEN"])
    for probe, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/livez")):
        get = app[probe]["httpGet"]
        assert get["path"] == path
        assert ports[get["port"]] == listen_port


def test_stasis_app_metrics_are_scraped_on_its_health_port(rendered: Rendered) -> None:
    """The prometheus.io/* annotations of the node pods point a scraper at /metrics on the port the
    stasis app's CLUSTERQ_HEALTH_LISTEN binds (the app serves its metrics beside its probes)."""
    sts = rendered.get("StatefulSet", "asterisk-node")
    app = _container(sts, "stasis-app")
    ports = {p["name"]: p["containerPort"] for p in app["ports"]}
    _, listen_port = _host_port(_config_env(rendered, app)["CLUSTERQ_HEALTH_LISTEN"])
    assert ports["health"] == listen_port
    annotations = sts["spec"]["template"]["metadata"]["annotations"]
    assert annotations == {"prometheus.io/scrape": "true", "prometheus.io/port": str(listen_port),
                           "prometheus.io/path": "/metrics"}

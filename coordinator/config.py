"""Coordinator settings, read once from the environment and validated.

Timing invariant (checked here): leader failover takes about lease_ttl + 1 s, nodes keep their
place for node_ttl after their stream drops, and stasis apps give callers back to the dialplan
after their own grace time; so lease_ttl + 1 < node_ttl must hold. node_ttl < grace spans two
programs that do not read each other's settings: k8s/config/timing.env holds both and a test checks
it there (tests/unit/k8s/test_kustomize_workloads.py); anywhere else the operator keeps it.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from clusterq_common.text import clip
from clusterq_common.tls import ServerTls, server_tls_from_env

NAME_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}\Z")  # \Z: "$" would also match before a final newline


@dataclass(frozen=True)
class CoordinatorSettings:
    """Everything a coordinator replica needs; see README "Configuration"."""

    etcd_endpoints: tuple[str, ...] = ("127.0.0.1:2379",)
    etcd_prefix: str = "/clusterq"
    lease_ttl: float = 3.0
    node_ttl: float = 6.0
    listen: str = "127.0.0.1:50051"
    advertise: str = ""
    # TLS (mutual if it has a client CA) on the gRPC API; None = plaintext. See clusterq_common/tls.py.
    tls: ServerTls | None = None
    # A second, plaintext port that serves only grpc.health.v1.Health ("" = none): kubelet's gRPC probe
    # cannot speak TLS. Off unless set, with or without TLS (no port is ever opened unasked).
    health_listen: str = ""
    # Prometheus text metrics on GET /metrics over plain HTTP ("" = none; coordinator/metrics.py).
    metrics_listen: str = ""
    queues_file: Path | None = None
    # app_queue-style queue_log written by the leader (coordinator/queue_log.py); None = off.
    queue_log: Path | None = None
    # How long a new leader waits for known nodes to re-report before it dispatches offers.
    settle_time: float = 2.0
    replica_id: str = field(default_factory=lambda: f"{os.uname().nodename}-{os.getpid()}")
    # Fault injection for tests only (CLUSTERQ_FAULT_STEP_DOWN_DELAY): keep acting this long after
    # the lease is known lost, to prove that fencing alone refuses a stale leader's work.
    fault_step_down_delay: float = 0.0
    # etcd authentication (user + password; both or neither) and TLS. A CA file turns TLS on (it is
    # what etcd's server certificates are checked against); a client certificate + key add mutual
    # TLS (etcd's --client-cert-auth). The files are read when the replica starts (__main__.py).
    etcd_user: str = ""
    etcd_password: str = field(default="", repr=False)
    etcd_ca_file: Path | None = None
    etcd_cert_file: Path | None = None
    etcd_key_file: Path | None = None

    def __post_init__(self) -> None:
        if not self.lease_ttl >= 2.0:  # NaN too
            raise ValueError("CLUSTERQ_LEASE_TTL (lease_ttl) must be >= 2 s (etcd's minimum lease TTL)")
        if not self.lease_ttl + 1.0 < self.node_ttl:
            raise ValueError("CLUSTERQ_NODE_TTL (node_ttl) must exceed CLUSTERQ_LEASE_TTL + 1 s so a leader "
                             "failover never loses nodes")
        if not self.etcd_endpoints:
            raise ValueError("CLUSTERQ_ETCD_ENDPOINTS needs at least one etcd endpoint")
        if not self.etcd_prefix.startswith("/"):
            raise ValueError("CLUSTERQ_ETCD_PREFIX must start with '/'")
        if self.health_listen and self.health_listen.rpartition(":")[2] == self.listen.rpartition(":")[2]:
            # Same port under another address (0.0.0.0 vs 127.0.0.1) would also clash.
            raise ValueError("CLUSTERQ_HEALTH_LISTEN must use another port than CLUSTERQ_LISTEN")
        if self.metrics_listen:
            _, port = host_port(self.metrics_listen, "CLUSTERQ_METRICS_LISTEN")
            taken = {self.listen.rpartition(":")[2]: "CLUSTERQ_LISTEN"}
            if self.health_listen:
                taken[self.health_listen.rpartition(":")[2]] = "CLUSTERQ_HEALTH_LISTEN"
            if port != 0 and (other := taken.get(str(port))):
                raise ValueError(f"CLUSTERQ_METRICS_LISTEN must use another port than {other}")
        # The messages name the variables, never the values: a password must not reach a log.
        if bool(self.etcd_user) != bool(self.etcd_password):
            raise ValueError("etcd authentication needs both CLUSTERQ_ETCD_USER and CLUSTERQ_ETCD_PASSWORD "
                             "(or CLUSTERQ_ETCD_PASSWORD_FILE), or neither")
        if (self.etcd_cert_file is None) != (self.etcd_key_file is None):
            raise ValueError("an etcd client certificate needs both CLUSTERQ_ETCD_CERT_FILE and "
                             "CLUSTERQ_ETCD_KEY_FILE, or neither")
        if self.etcd_cert_file is not None and self.etcd_ca_file is None:
            raise ValueError("CLUSTERQ_ETCD_CERT_FILE needs CLUSTERQ_ETCD_CA_FILE (the CA etcd's server "
                             "certificates are checked against; it turns TLS on)")

    @property
    def advertise_address(self) -> str:
        """The address clients are told to use for this replica."""
        return self.advertise or self.listen

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> CoordinatorSettings:
        """Read CLUSTERQ_* variables (documented in the README)."""
        e = os.environ if env is None else env
        kw: dict[str, object] = {}
        if v := e.get("CLUSTERQ_ETCD_ENDPOINTS"):
            kw["etcd_endpoints"] = tuple(x.strip() for x in v.split(",") if x.strip())
        if v := e.get("CLUSTERQ_ETCD_PREFIX"):
            kw["etcd_prefix"] = v
        if v := e.get("CLUSTERQ_LEASE_TTL"):
            kw["lease_ttl"] = seconds(v, "CLUSTERQ_LEASE_TTL")
        if v := e.get("CLUSTERQ_NODE_TTL"):
            kw["node_ttl"] = seconds(v, "CLUSTERQ_NODE_TTL")
        if v := e.get("CLUSTERQ_LISTEN"):
            kw["listen"] = v
        if v := e.get("CLUSTERQ_ADVERTISE"):
            kw["advertise"] = v
        kw["tls"] = server_tls_from_env(e)
        if v := e.get("CLUSTERQ_HEALTH_LISTEN"):
            kw["health_listen"] = v
        if v := e.get("CLUSTERQ_METRICS_LISTEN"):
            kw["metrics_listen"] = v
        if v := e.get("CLUSTERQ_QUEUES_FILE"):
            kw["queues_file"] = Path(v)
        if v := e.get("CLUSTERQ_QUEUE_LOG"):
            kw["queue_log"] = Path(v)
        if v := e.get("CLUSTERQ_SETTLE_TIME"):
            kw["settle_time"] = seconds(v, "CLUSTERQ_SETTLE_TIME")
        if v := e.get("CLUSTERQ_REPLICA_ID"):
            kw["replica_id"] = v
        if v := e.get("CLUSTERQ_FAULT_STEP_DOWN_DELAY"):
            kw["fault_step_down_delay"] = seconds(v, "CLUSTERQ_FAULT_STEP_DOWN_DELAY")
        kw.update(_etcd_security_from_env(e))
        return cls(**kw)  # type: ignore[arg-type]


def seconds(text: str, var: str) -> float:
    """A duration variable's value: a finite number >= 0; ValueError naming `var` otherwise (float()'s
    own message, "could not convert string to float: 'abc'", did not say which variable)."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value >= 0):
        raise ValueError(f"{var} must be a number of seconds >= 0, not {clip(text)}")
    return value


def host_port(listen: str, var: str) -> tuple[str, int]:
    """`host:port` (IPv6 in brackets; port 0 = any free port) as (host, port); ValueError naming `var` otherwise."""
    host, sep, port = listen.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) < 65536:
        raise ValueError(f"{var} must be host:port, not {listen!r}")
    return host.removeprefix("[").removesuffix("]"), int(port)


def _etcd_security_from_env(e: Mapping[str, str]) -> dict[str, object]:
    """The CLUSTERQ_ETCD_* credential and TLS variables; the password file is read here (OSError
    if it cannot be: the message names the file, never its content)."""
    kw: dict[str, object] = {}
    if v := e.get("CLUSTERQ_ETCD_USER"):
        kw["etcd_user"] = v
    password = e.get("CLUSTERQ_ETCD_PASSWORD", "")
    if path := e.get("CLUSTERQ_ETCD_PASSWORD_FILE"):
        if password:
            raise ValueError("set CLUSTERQ_ETCD_PASSWORD or CLUSTERQ_ETCD_PASSWORD_FILE, not both")
        # A Secret mounted as a file usually ends with a newline that is not part of the password.
        try:
            password = Path(path).read_text(encoding="utf-8").rstrip("\r\n")
        except UnicodeDecodeError:  # its message would quote the password's bytes
            raise ValueError(f"CLUSTERQ_ETCD_PASSWORD_FILE {path} is not UTF-8 text") from None
        if not password:
            raise ValueError(f"CLUSTERQ_ETCD_PASSWORD_FILE {path} is empty")
    if password:
        kw["etcd_password"] = password
    for name, var in (("etcd_ca_file", "CLUSTERQ_ETCD_CA_FILE"), ("etcd_cert_file", "CLUSTERQ_ETCD_CERT_FILE"),
                      ("etcd_key_file", "CLUSTERQ_ETCD_KEY_FILE")):
        if v := e.get(var):
            kw[name] = Path(v)
    return kw

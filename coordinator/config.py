"""Coordinator settings, read once from the environment and validated.

Timing invariant (checked here): leader failover takes about lease_ttl + 1 s, nodes keep their
place for node_ttl after their stream drops, and stasis apps give callers back to the dialplan
after their own grace time; so lease_ttl + 1 < node_ttl must hold. node_ttl < grace spans two
programs that do not read each other's settings: k8s/config/timing.env holds both and a test checks
it there (tests/unit/k8s/test_kustomize_workloads.py); anywhere else the operator keeps it.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from clusterq_common.tls import ServerTls, server_tls_from_env

NAME_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


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
    queues_file: Path | None = None
    # app_queue-style queue_log written by the leader (coordinator/queue_log.py); None = off.
    queue_log: Path | None = None
    # How long a new leader waits for known nodes to re-report before it dispatches offers.
    settle_time: float = 2.0
    replica_id: str = field(default_factory=lambda: f"{os.uname().nodename}-{os.getpid()}")
    # Fault injection for tests only (CLUSTERQ_FAULT_STEP_DOWN_DELAY): keep acting this long after
    # the lease is known lost, to prove that fencing alone refuses a stale leader's work.
    fault_step_down_delay: float = 0.0

    def __post_init__(self) -> None:
        if self.lease_ttl < 2.0:
            raise ValueError("lease_ttl must be >= 2 s (etcd's minimum lease TTL)")
        if not self.lease_ttl + 1.0 < self.node_ttl:
            raise ValueError("node_ttl must exceed lease_ttl + 1 s so a leader failover never loses nodes")
        if not self.etcd_endpoints:
            raise ValueError("at least one etcd endpoint is required")
        if not self.etcd_prefix.startswith("/"):
            raise ValueError("etcd_prefix must start with '/'")
        if self.health_listen and self.health_listen.rpartition(":")[2] == self.listen.rpartition(":")[2]:
            # Same port under another address (0.0.0.0 vs 127.0.0.1) would also clash.
            raise ValueError("CLUSTERQ_HEALTH_LISTEN must use another port than CLUSTERQ_LISTEN")

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
            kw["lease_ttl"] = float(v)
        if v := e.get("CLUSTERQ_NODE_TTL"):
            kw["node_ttl"] = float(v)
        if v := e.get("CLUSTERQ_LISTEN"):
            kw["listen"] = v
        if v := e.get("CLUSTERQ_ADVERTISE"):
            kw["advertise"] = v
        kw["tls"] = server_tls_from_env(e)
        if v := e.get("CLUSTERQ_HEALTH_LISTEN"):
            kw["health_listen"] = v
        if v := e.get("CLUSTERQ_QUEUES_FILE"):
            kw["queues_file"] = Path(v)
        if v := e.get("CLUSTERQ_QUEUE_LOG"):
            kw["queue_log"] = Path(v)
        if v := e.get("CLUSTERQ_SETTLE_TIME"):
            kw["settle_time"] = float(v)
        if v := e.get("CLUSTERQ_REPLICA_ID"):
            kw["replica_id"] = v
        if v := e.get("CLUSTERQ_FAULT_STEP_DOWN_DELAY"):
            kw["fault_step_down_delay"] = float(v)
        return cls(**kw)  # type: ignore[arg-type]

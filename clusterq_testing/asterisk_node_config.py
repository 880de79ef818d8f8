"""What decides one test Asterisk node's configuration: `NodeConfig` and its parts, as frozen values.

Names are checked here, once (`valid_name`, `NodeConfig.__post_init__`), so the renderers can put them
into section headers and dialplan as they are.  Passwords are fields with repr=False: excluded from
every repr.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

__all__ = [
    "AppQueue",
    "AppQueueConfig",
    "ConfigFile",
    "NodeConfig",
    "PhoneAccount",
    "PhoneRegistration",
    "TrunkPeer",
    "valid_name",
]

_NAME_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_-]*$")


def valid_name(name: str) -> bool:
    """True for names usable as node, endpoint and section names (letters, digits, '_', '-')."""
    return bool(_NAME_RE.match(name))


@dataclass(frozen=True)
class TrunkPeer:
    """Another node reachable over a PJSIP trunk (endpoint and aor named after it)."""

    name: str
    sip_port: int


@dataclass(frozen=True)
class PhoneAccount:
    """A plain PJSIP phone endpoint hosted by a node: a real SIP UA may REGISTER as it."""

    name: str
    password: str = field(repr=False)


@dataclass(frozen=True)
class PhoneRegistration:
    """This node registers as `phone` at node `server` (it then plays that phone: calls to the
    phone arrive here in [clusterq-agents-test] with the phone name as extension)."""

    phone: str
    password: str = field(repr=False)
    server: str
    server_sip_port: int


@dataclass(frozen=True)
class ConfigFile:
    """One file of a node's etc directory."""

    name: str
    text: str


@dataclass(frozen=True)
class AppQueue:
    """One app_queue queue: queues.conf settings (app_queue's own names, in order) and member lines
    ("interface,penalty,name,state_interface,ringinuse,wrapuptime,paused")."""

    name: str
    settings: tuple[tuple[str, str], ...] = ()
    members: tuple[str, ...] = ()


@dataclass(frozen=True)
class AppQueueConfig:
    """app_queue on a node: the [general] settings of queues.conf and its queues."""

    queues: tuple[AppQueue, ...] = ()
    general: tuple[tuple[str, str], ...] = (("persistentmembers", "no"), ("autofill", "yes"))


@dataclass(frozen=True)
class NodeConfig:
    """Everything that decides one node's configuration."""

    name: str
    instance_dir: str  # path INSIDE the chroot
    module_dir: str  # path INSIDE the chroot
    http_port: int
    sip_port: int
    rtp_start: int
    rtp_end: int
    ari_user: str
    ari_password: str = field(repr=False)
    entity_id: str = "02:00:00:00:00:01"
    stasis_app: str = "clusterq"
    test_app: str = "cqtest"
    peers: tuple[TrunkPeer, ...] = ()
    phones: tuple[PhoneAccount, ...] = ()
    registrations: tuple[PhoneRegistration, ...] = ()
    bind: str = "127.0.0.1"
    app_queue: AppQueueConfig | None = None  # None: app_queue is not even loaded

    def __post_init__(self) -> None:
        names = [self.name, *(p.name for p in self.peers), *(p.name for p in self.phones)]
        queues = [q.name for q in self.app_queue.queues] if self.app_queue else []
        for n in [*names, self.stasis_app, self.test_app, *(r.phone for r in self.registrations), *queues]:
            if not valid_name(n):
                raise ValueError(f"bad name {n!r} (letters, digits, '_' and '-' only)")
        # pjsip.conf sections share one namespace per type: a phone named like a peer would clash.
        if len(set(names)) != len(names):
            raise ValueError(f"node, peer and phone names must be distinct: {names}")
        if not 0 < self.rtp_start < self.rtp_end < 65536:
            raise ValueError(f"bad RTP range {self.rtp_start}-{self.rtp_end}")

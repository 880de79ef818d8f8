"""Stasis-app settings, read once from the environment.

The ARI password comes from CLUSTERQ_ARI_PASSWORD or the file named by CLUSTERQ_ARI_PASSWORD_FILE;
it is never logged (repr masks it). CLUSTERQ_ARI_URL (logged at startup) must not carry credentials.
TLS towards the coordinator (CLUSTERQ_COORDINATOR_CA_FILE etc.) is read by clusterq_common.tls; its
key is kept out of repr too.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from clusterq_common.files import read_secret_text
from clusterq_common.tls import ClientTls, client_tls_from_env
from stasis_app.health import parse_listen

NODE_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}\Z")  # \Z: "$" would also match before a final newline


@dataclass(frozen=True)
class StasisSettings:
    """Everything one stasis app (one per Asterisk node) needs."""

    node_id: str
    ari_url: str
    ari_user: str
    ari_password: str = field(repr=False)
    coordinators: tuple[str, ...]
    app: str = "clusterq"
    # Callers keep their music this long while no coordinator is reachable, then leave with
    # UNAVAILABLE. Must exceed the coordinator's node_ttl (leader failover < node_ttl < grace).
    grace: float = 20.0
    # Event batching towards the coordinator: while the stream is busy, an event waits at most this
    # long for others to share its message (see coordinator_client.py).
    flush_interval: float = 0.001
    # Channel name prefix of the trunk endpoints to other nodes: PJSIP/<token>@<node>.
    trunk_tech: str = "PJSIP"
    # Waiting callers hear ONE music stream per class (a holding bridge with bridge music, like
    # FreeSWITCH's local_stream) instead of one music generator each (like app_queue). Cheaper per
    # caller; every caller hears the same point of the music. See stasis_app/call/music.py.
    shared_music: bool = False
    # host:port of the HTTP /livez and /readyz endpoints (stasis_app/health.py); empty = none.
    health_listen: str = ""
    # TLS (mutual with a client certificate) towards the coordinator; None = plaintext.
    coordinator_tls: ClientTls | None = None

    def __post_init__(self) -> None:
        if not NODE_RE.match(self.node_id):
            raise ValueError(f"node id {self.node_id!r} must match {NODE_RE.pattern}")
        if not self.coordinators:
            raise ValueError("at least one coordinator address is required")
        if self.grace <= 0:
            raise ValueError("grace must be > 0")
        if self.health_listen:
            parse_listen(self.health_listen)  # raises with the rule
        # The URL is logged and shown in repr: credentials in it would leak. The message does not
        # repeat the URL for the same reason.
        if "@" in urlsplit(self.ari_url).netloc:
            raise ValueError("CLUSTERQ_ARI_URL must not carry a user or password (user:password@host): "
                             "set CLUSTERQ_ARI_USER and CLUSTERQ_ARI_PASSWORD (or CLUSTERQ_ARI_PASSWORD_FILE)")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> StasisSettings:
        """Read CLUSTERQ_* variables (README "Configuration")."""
        e = os.environ if env is None else env
        password = e.get("CLUSTERQ_ARI_PASSWORD", "")
        if not password and (path := e.get("CLUSTERQ_ARI_PASSWORD_FILE")):
            password = read_secret_text("CLUSTERQ_ARI_PASSWORD_FILE", Path(path)).strip()
        if not password:
            raise ValueError("set CLUSTERQ_ARI_PASSWORD or CLUSTERQ_ARI_PASSWORD_FILE")
        return cls(
            node_id=e.get("CLUSTERQ_NODE_ID", ""),
            ari_url=e.get("CLUSTERQ_ARI_URL", "http://127.0.0.1:8088/"),
            ari_user=e.get("CLUSTERQ_ARI_USER", "clusterq"),
            ari_password=password,
            coordinators=tuple(x.strip() for x in e.get("CLUSTERQ_COORDINATOR", "127.0.0.1:50051").split(",")
                               if x.strip()),
            app=e.get("CLUSTERQ_ARI_APP", "clusterq"),
            grace=_number(e, "CLUSTERQ_GRACE", 20.0),
            shared_music=e.get("CLUSTERQ_SHARED_MUSIC", "").strip().lower() in ("1", "true", "yes", "on"),
            health_listen=e.get("CLUSTERQ_HEALTH_LISTEN", ""),
            coordinator_tls=client_tls_from_env(e),
        )


def _number(env: Mapping[str, str], var: str, default: float) -> float:
    """A float setting; the error names the variable."""
    raw = env.get(var, "")
    try:
        return float(raw) if raw.strip() else default
    except ValueError:
        raise ValueError(f"{var}={raw!r} is not a number") from None


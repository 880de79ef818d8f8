"""A test Asterisk node as configured: identity, ports, paths, config files and its consoles.

`AsteriskInstance` is everything about one node that needs no process of ours: its name (= `systemname`,
so channel ids look like `<name>-<epoch>.<n>`), its own etc/log/run/spool/db directory inside the
chroot (`/srv/clusterq/<run-id>/<name>`), its own loopback ports, a random ARI password (never logged,
excluded from repr), its trunks, hosted phones and registrations, the `NodeConfig` they make and the
files written from it.  It also talks to the Asterisk running from that directory: the CLI through the
remote console, ARI's ping, the registered contacts of a phone (blocking, each with an `async_*` twin
that runs it in a thread).  `AsteriskNode` (clusterq_testing.asterisk) adds the process: starting,
stopping and signalling it.
"""

from __future__ import annotations

import asyncio
import base64
import os
import secrets
import subprocess
import time
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path

from clusterq_testing.asterisk_conf import render_config
from clusterq_testing.asterisk_node_config import NodeConfig, PhoneAccount, PhoneRegistration, TrunkPeer
from clusterq_testing.ports import PortRange, free_tcp_port, free_udp_port, reserve_rtp_range

__all__ = ["AsteriskInstance", "default_root"]

_ENV = ("PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL=C.UTF-8", "HOME=/root")
_INSTANCE_BASE = "/srv/clusterq"


def default_root() -> Path:
    """The provisioned chroot: $CLUSTERQ_CACHE/astroot, else <repo>/.cache/astroot."""
    cache = os.environ.get("CLUSTERQ_CACHE")
    base = Path(cache) if cache else Path(__file__).resolve().parents[1] / ".cache"
    return base / "astroot"


class AsteriskInstance:
    """One test node's identity, configuration and consoles; see the module docstring."""

    def __init__(
        self,
        name: str,
        *,
        root: Path | None = None,
        run_id: str | None = None,
        http_port: int | None = None,
        sip_port: int | None = None,
        rtp: PortRange | None = None,
        ari_user: str = "clusterq",
        ari_password: str | None = None,
        peers: Mapping[str, int] | None = None,
        phones: Sequence[str] = (),
        registrations: Sequence[PhoneRegistration] = (),
        stasis_app: str = "clusterq",
        test_app: str = "cqtest",
        keep: bool = False,
        verbose: int | None = None,
    ) -> None:
        self.name = name
        self.root = (root or default_root()).resolve()
        self.run_id = run_id or f"{os.getpid()}-{secrets.token_hex(3)}"
        self.http_port = http_port or free_tcp_port()
        self.sip_port = sip_port or free_udp_port()
        self.rtp = rtp or reserve_rtp_range()
        self.ari_user = ari_user
        self.ari_password = ari_password or secrets.token_urlsafe(18)
        self.stasis_app = stasis_app
        self.test_app = test_app
        self.keep = keep
        self.verbose = int(os.environ.get("CLUSTERQ_AST_VERBOSE", "0")) if verbose is None else verbose
        self._peers: dict[str, int] = dict(peers or {})
        self._phones: dict[str, PhoneAccount] = {}
        self._registrations: list[PhoneRegistration] = list(registrations)
        self._entity_id = "02:" + ":".join(f"{b:02x}" for b in secrets.token_bytes(5))
        for phone in phones:
            self.add_phone(phone)
        self.config  # noqa: B018 - validates names early

    def __repr__(self) -> str:  # no password here, ever
        return (f"{type(self).__name__}({self.name!r}, http={self.http_port}, sip={self.sip_port}, "
                f"pid={self.pid})")

    # ---------------------------------------------------------------- identity and paths
    @property
    def systemname(self) -> str:
        """Asterisk `systemname` (= name): prefix of every channel id on this node."""
        return self.name

    @property
    def peers(self) -> dict[str, int]:
        """Trunk peers: node name -> its SIP port (a copy)."""
        return dict(self._peers)

    @property
    def phones(self) -> tuple[PhoneAccount, ...]:
        """Phone endpoints hosted here (a SIP UA may REGISTER as them)."""
        return tuple(self._phones.values())

    @property
    def registrations(self) -> tuple[PhoneRegistration, ...]:
        """Phones this node registers as, at other nodes."""
        return tuple(self._registrations)

    @property
    def instance_dir(self) -> str:
        """The node's directory as seen inside the chroot."""
        return f"{_INSTANCE_BASE}/{self.run_id}/{self.name}"

    @property
    def host_dir(self) -> Path:
        """The node's directory as seen from the host."""
        return self.root / self.instance_dir.lstrip("/")

    @property
    def log_path(self) -> Path:
        """messages.log (notices, warnings, errors, verbose) on the host."""
        return self.host_dir / "log" / "messages.log"

    @property
    def stdout_path(self) -> Path:
        """stdout/stderr of the Asterisk process on the host."""
        return self.host_dir / "log" / "stdout.log"

    @property
    def ari_url(self) -> str:
        """Base URL of the HTTP server, e.g. http://127.0.0.1:PORT/ (ARI lives under ari/)."""
        return f"http://127.0.0.1:{self.http_port}/"

    @property
    def pid(self) -> int | None:
        """PID of the Asterisk process we started, None when not running (AsteriskNode starts it)."""
        return None

    @property
    def config(self) -> NodeConfig:
        """The node's configuration as a value (rendered by asterisk_conf)."""
        return NodeConfig(
            name=self.name,
            instance_dir=self.instance_dir,
            module_dir=self._module_dir(),
            http_port=self.http_port,
            sip_port=self.sip_port,
            rtp_start=self.rtp.start,
            rtp_end=self.rtp.end,
            ari_user=self.ari_user,
            ari_password=self.ari_password,
            entity_id=self._entity_id,
            stasis_app=self.stasis_app,
            test_app=self.test_app,
            peers=tuple(TrunkPeer(n, p) for n, p in sorted(self._peers.items())),
            phones=self.phones,
            registrations=self.registrations,
        )

    def _module_dir(self) -> str:
        found = sorted(self.root.glob("usr/lib/*/asterisk/modules"))
        if not found:
            raise RuntimeError(f"no Asterisk modules under {self.root}/usr/lib/*/asterisk/modules "
                               "(run scripts/provision.sh asterisk)")
        return "/" + str(found[0].relative_to(self.root))

    # ---------------------------------------------------------------- configuration changes
    def add_peer(self, name: str, sip_port: int) -> None:
        """Add a PJSIP trunk to node `name`; applied at once (pjsip reload) when running."""
        self._peers[name] = sip_port
        self._apply_pjsip_change()

    def add_phone(self, name: str, password: str | None = None) -> PhoneAccount:
        """Host a phone endpoint `name` (max_contacts=1, digest auth); applied at once when running."""
        account = PhoneAccount(name, password or secrets.token_urlsafe(12))
        self._phones[name] = account
        self._apply_pjsip_change()
        return account

    def add_registration(self, registration: PhoneRegistration) -> None:
        """Register as a phone at another node; applied at once when running."""
        self._registrations.append(registration)
        self._apply_pjsip_change()

    def phone(self, name: str) -> PhoneAccount:
        """The hosted phone account `name` (KeyError if absent)."""
        return self._phones[name]

    def _apply_pjsip_change(self) -> None:
        if self.pid is not None:
            self.write_config()
            self.cli("module reload res_pjsip.so")

    def write_config(self) -> None:
        """(Re)write every config file of the node (host side of the chroot)."""
        for sub in ("etc", "log", "run", "spool", "lib", "cache"):
            (self.host_dir / sub).mkdir(parents=True, exist_ok=True)
        etc = self.host_dir / "etc"
        for f in render_config(self.config):
            (etc / f.name).write_text(f.text)
        sample = self.root / "usr/share/asterisk/conf/samples/indications.conf.sample"
        (etc / "indications.conf").write_text(sample.read_text() if sample.exists() else "")

    # ---------------------------------------------------------------- consoles: CLI and ARI
    def _chroot_cmd(self, *args: str) -> list[str]:
        return ["chroot", str(self.root), "/usr/bin/env", "-i", *_ENV, "/usr/sbin/asterisk", *args]

    def ping(self) -> bool:
        """True when `GET /ari/asterisk/ping` answers 200 with our credentials."""
        cred = base64.b64encode(f"{self.ari_user}:{self.ari_password}".encode()).decode()
        req = urllib.request.Request(f"{self.ari_url}ari/asterisk/ping",
                                     headers={"Authorization": f"Basic {cred}"})
        try:
            with urllib.request.urlopen(req, timeout=1.0) as resp:
                return int(resp.status) == 200
        except OSError:
            return False

    def cli(self, command: str, timeout: float = 10.0) -> str:
        """Run one CLI command through the remote console (`asterisk -rx`); returns its output."""
        res = subprocess.run(
            self._chroot_cmd("-C", f"{self.instance_dir}/etc/asterisk.conf", "-rx", command),
            capture_output=True, timeout=timeout, check=False,
        )
        if res.returncode != 0:
            raise RuntimeError(f"asterisk {self.name}: cli {command!r} failed ({res.returncode}): "
                               f"{res.stderr.decode(errors='replace').strip()}")
        return res.stdout.decode(errors="replace")

    async def async_cli(self, command: str, timeout: float = 10.0) -> str:
        """`cli` in a worker thread."""
        return await asyncio.to_thread(self.cli, command, timeout)

    def contacts(self, phone: str) -> list[str]:
        """Contact URIs currently registered for hosted phone `phone`."""
        out = self.cli(f"pjsip show aor {phone}")
        return [line.split(f"{phone}/", 1)[1].split()[0] for line in out.splitlines()
                if line.strip().startswith(f"Contact:  {phone}/")]

    def wait_registered(self, phone: str, timeout: float = 10.0) -> str:
        """Wait until hosted phone `phone` has a registered contact; returns its URI."""
        deadline = time.monotonic() + timeout
        while not (found := self.contacts(phone)):
            if time.monotonic() > deadline:
                raise TimeoutError(f"node {self.name}: phone {phone} not registered after {timeout}s")
            time.sleep(0.1)
        return found[0]

    async def async_wait_registered(self, phone: str, timeout: float = 15.0) -> str:
        """`wait_registered` in a worker thread."""
        return await asyncio.to_thread(self.wait_registered, phone, timeout)

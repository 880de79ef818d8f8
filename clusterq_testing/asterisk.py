"""Real Asterisk 22 nodes for tests, run from the provisioned chroot (no mounts needed).

`AsteriskNode` is one instance: its own etc/log/run/spool/db directory inside the chroot
(`/srv/clusterq/<run-id>/<name>`), its own loopback ports, `systemname` = name (channel ids look like
`<name>-<epoch>.<n>`) and a random ARI password (never logged, excluded from repr).
`AsteriskCluster` creates nodes with full-mesh PJSIP trunks (and phone hosts) and starts them in
parallel; `start_nodes` is the one-call form.

Process ownership: a node only ever signals the PID it started itself (the Popen child, which stays a
zombie until reaped, so the PID cannot be recycled under us).  Blocking methods (`start`, `stop`, ...)
have `async_*` twins that run them in a thread so a test's event loop keeps running.
"""

from __future__ import annotations

import asyncio
import atexit
import base64
import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO

from clusterq_testing.asterisk_conf import (
    NodeConfig,
    PhoneAccount,
    PhoneRegistration,
    TrunkPeer,
    render_config,
)
from clusterq_testing.ports import PortRange, free_tcp_port, free_udp_port, release_rtp_range, reserve_rtp_range

__all__ = ["AsteriskCluster", "AsteriskNode", "default_root", "start_nodes"]

_ENV = ("PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL=C.UTF-8", "HOME=/root")
_INSTANCE_BASE = "/srv/clusterq"
_LOG_TAIL_LINES = 40
_running: set[AsteriskNode] = set()


def default_root() -> Path:
    """The provisioned chroot: $CLUSTERQ_CACHE/astroot, else <repo>/.cache/astroot."""
    cache = os.environ.get("CLUSTERQ_CACHE")
    base = Path(cache) if cache else Path(__file__).resolve().parents[1] / ".cache"
    return base / "astroot"


def _tail(path: Path, lines: int = _LOG_TAIL_LINES) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return f"({path.name}: missing)"
    return f"--- {path.name} (last {lines} lines) ---\n" + "\n".join(text.splitlines()[-lines:])


def _port_answers(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


class AsteriskNode:
    """One real Asterisk process in the chroot; see the module docstring."""

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
        self._proc: subprocess.Popen[bytes] | None = None
        self._stdout: IO[bytes] | None = None
        for phone in phones:
            self.add_phone(phone)
        self.config  # noqa: B018 - validates names early

    def __repr__(self) -> str:  # no password here, ever
        return f"AsteriskNode({self.name!r}, http={self.http_port}, sip={self.sip_port}, pid={self.pid})"

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
        """PID of the Asterisk process we started, None when not running."""
        return self._proc.pid if self._proc is not None and self._proc.poll() is None else None

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

    # ---------------------------------------------------------------- process control
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

    def start(self, timeout: float = 30.0) -> None:
        """Write the config, start Asterisk, return once ARI answers and the core is fully booted.

        Raises RuntimeError (with the tail of the node's logs) if it exits or is not up in time.
        """
        if self.pid is not None:
            raise RuntimeError(f"node {self.name} already running (pid {self.pid})")
        if _port_answers(self.http_port):
            raise RuntimeError(f"node {self.name}: something already listens on 127.0.0.1:{self.http_port}")
        self.write_config()
        for stale in ("asterisk.pid", "asterisk.ctl"):
            (self.host_dir / "run" / stale).unlink(missing_ok=True)
        flags = ["-f", "-n"] + ([f"-{'v' * self.verbose}"] if self.verbose > 0 else [])
        self._stdout = open(self.stdout_path, "ab")  # closed in _reap()
        # start_new_session = setsid: terminal/job-control signals of the test run do not reach it
        self._proc = subprocess.Popen(
            self._chroot_cmd(*flags, "-C", f"{self.instance_dir}/etc/asterisk.conf"),
            stdin=subprocess.DEVNULL, stdout=self._stdout, stderr=subprocess.STDOUT,
            start_new_session=True, env={"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")},
        )
        _running.add(self)
        deadline = time.monotonic() + timeout
        while not self.ping():
            if self._proc.poll() is not None:
                code = self._proc.returncode
                self._reap()
                raise RuntimeError(f"asterisk {self.name} exited with {code} during start\n{self._logs()}")
            if time.monotonic() > deadline:
                self._terminate(grace=2.0)
                raise RuntimeError(f"asterisk {self.name}: ARI on port {self.http_port} not up after "
                                   f"{timeout:.0f}s\n{self._logs()}")
            time.sleep(0.05)
        # ARI can answer while modules are still loading: wait for "fully booted" too.
        try:
            self.cli("core waitfullybooted", timeout=max(1.0, deadline - time.monotonic()))
        except (RuntimeError, subprocess.TimeoutExpired) as e:
            self._terminate(grace=2.0)
            raise RuntimeError(f"asterisk {self.name}: not fully booted: {e}\n{self._logs()}") from e

    def _logs(self) -> str:
        return _tail(self.stdout_path) + "\n" + _tail(self.log_path)

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

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Send `sig` to the Asterisk PID we started (chaos: SIGKILL, SIGSTOP, SIGCONT ...)."""
        if self._proc is None or self._proc.poll() is not None:
            raise RuntimeError(f"node {self.name} is not running")
        self._proc.send_signal(sig)

    def wait_exited(self, timeout: float = 10.0) -> int:
        """Wait for our Asterisk process to exit (e.g. after kill); returns its exit status."""
        if self._proc is None:
            raise RuntimeError(f"node {self.name} was not started")
        return self._proc.wait(timeout)

    def _terminate(self, grace: float) -> None:
        proc = self._proc
        if proc is None:
            return
        for sig in (signal.SIGTERM, signal.SIGKILL):
            if proc.poll() is not None:
                break
            proc.send_signal(sig)
            try:
                proc.wait(grace)
            except subprocess.TimeoutExpired:
                continue
        proc.wait(5.0)
        self._reap()

    def _reap(self) -> None:
        if self._proc is not None:
            self._proc.poll()
        self._proc = None
        _running.discard(self)
        if self._stdout is not None:
            self._stdout.close()
            self._stdout = None

    def stop(
        self, timeout: float = 10.0, *, save_logs_to: Path | None = None, remove: bool | None = None
    ) -> None:
        """Stop gracefully (`core stop now`), then SIGTERM/SIGKILL our PID if needed.

        Copies the logs to `save_logs_to` if given, then removes the instance directory unless
        `keep` (or `remove=False`).  Safe to call on a node that is stopped or was killed.
        """
        proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGCONT)  # a SIGSTOPped node cannot answer the remote console
            try:
                self.cli("core stop now", timeout=min(5.0, timeout))
            except (subprocess.TimeoutExpired, RuntimeError):
                pass
            try:
                proc.wait(timeout / 2)
            except subprocess.TimeoutExpired:
                pass
        self._terminate(grace=max(1.0, timeout / 4))
        if save_logs_to is not None and self.host_dir.exists():
            save_logs_to.mkdir(parents=True, exist_ok=True)
            for log in (self.log_path, self.stdout_path):
                if log.exists():
                    shutil.copy2(log, save_logs_to / log.name)
        if remove if remove is not None else not self.keep:
            shutil.rmtree(self.host_dir, ignore_errors=True)
            try:
                self.host_dir.parent.rmdir()  # the run directory, once its last node is gone
            except OSError:
                pass

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

    def restart(self, timeout: float = 30.0) -> None:
        """Stop (keeping the instance directory) and start again with the same config and ports."""
        self.stop(remove=False)
        self.start(timeout)

    async def async_start(self, timeout: float = 30.0) -> None:
        """`start` in a worker thread."""
        await asyncio.to_thread(self.start, timeout)

    async def async_stop(self, timeout: float = 10.0, *, save_logs_to: Path | None = None) -> None:
        """`stop` in a worker thread."""
        await asyncio.to_thread(lambda: self.stop(timeout, save_logs_to=save_logs_to))

    async def async_restart(self, timeout: float = 30.0) -> None:
        """`restart` in a worker thread."""
        await asyncio.to_thread(self.restart, timeout)

    async def async_cli(self, command: str, timeout: float = 10.0) -> str:
        """`cli` in a worker thread."""
        return await asyncio.to_thread(self.cli, command, timeout)


@atexit.register
def _stop_leftovers() -> None:
    # Safety net for an interpreter exiting with nodes still up (fixtures normally stop them).
    for node in list(_running):
        node._terminate(grace=2.0)


class AsteriskCluster:
    """Nodes of one test run: shared root and run id, full-mesh trunks, optional phone hosts."""

    def __init__(
        self,
        *,
        root: Path | None = None,
        run_id: str | None = None,
        stasis_app: str = "clusterq",
        test_app: str = "cqtest",
        keep: bool = False,
    ) -> None:
        self.root = root or default_root()
        self.run_id = run_id or f"{os.getpid()}-{secrets.token_hex(3)}"
        self.stasis_app = stasis_app
        self.test_app = test_app
        self.keep = keep
        self.nodes: dict[str, AsteriskNode] = {}

    def _new_node(self, name: str, **kwargs: object) -> AsteriskNode:
        if name in self.nodes:
            raise ValueError(f"node {name!r} exists already")
        node = AsteriskNode(name, root=self.root, run_id=self.run_id, stasis_app=self.stasis_app,
                            test_app=self.test_app, keep=self.keep, **kwargs)  # type: ignore[arg-type]
        self.nodes[name] = node
        return node

    def add_nodes(self, names: Sequence[str], phones: Mapping[str, Sequence[str]] | None = None
                  ) -> list[AsteriskNode]:
        """Create nodes meshed with each other and with the cluster's trunk nodes (not started)."""
        trunk_nodes = [n for n in self.nodes.values() if not n.registrations]
        new = [self._new_node(name, phones=tuple((phones or {}).get(name, ()))) for name in names]
        for node in new:
            for other in [*trunk_nodes, *new]:
                if other is not node:
                    node.add_peer(other.name, other.sip_port)
                    if other in trunk_nodes:
                        other.add_peer(node.name, node.sip_port)  # reloads pjsip if running
        return new

    def add_phone_host(self, name: str, server: AsteriskNode, phones: Sequence[str]) -> AsteriskNode:
        """Create a node that REGISTERs at `server` as each of `phones` (created there if missing).

        Calls from `server` to such a phone arrive on the host in [clusterq-agents-test], i.e. in
        Stasis(<test app>,agent,<phone>).  The host has no trunks.
        """
        regs = []
        for phone in phones:
            known = phone in {p.name for p in server.phones}
            account = server.phone(phone) if known else server.add_phone(phone)
            regs.append(PhoneRegistration(phone, account.password, server.name, server.sip_port))
        return self._new_node(name, registrations=tuple(regs))

    async def start(self, nodes: Sequence[AsteriskNode] | None = None, timeout: float = 30.0) -> None:
        """Start `nodes` (default: every node not running) in parallel; on any failure stop the
        ones that started and raise the first error."""
        todo = [n for n in (nodes if nodes is not None else self.nodes.values()) if n.pid is None]
        results = await asyncio.gather(*(n.async_start(timeout) for n in todo), return_exceptions=True)
        errors = [r for r in results if isinstance(r, BaseException)]
        if errors:
            await asyncio.gather(*(n.async_stop() for n in todo), return_exceptions=True)
            raise errors[0]
        # Phone hosts: wait until their servers list the contacts.  Asterisk sends each
        # registration's first REGISTER after a random 1-10 s (also after `pjsip send register`).
        waits = [server.async_wait_registered(reg.phone, timeout=max(timeout, 15.0))
                 for n in todo for reg in n.registrations
                 if (server := self.nodes.get(reg.server)) is not None and server.pid is not None]
        await asyncio.gather(*waits)

    async def stop(self, save_logs_to: Path | None = None) -> None:
        """Stop every node (in parallel); logs copied to save_logs_to/<name>/ if given."""
        await asyncio.gather(*(
            n.async_stop(save_logs_to=save_logs_to / n.name if save_logs_to else None)
            for n in self.nodes.values()
        ))
        # Not in AsteriskNode.stop: restart() reuses a node's range.
        for n in self.nodes.values():
            release_rtp_range(n.rtp)


async def start_nodes(
    names: Sequence[str],
    stasis_app: str = "clusterq",
    test_app: str = "cqtest",
    *,
    phones: Mapping[str, Sequence[str]] | None = None,
    root: Path | None = None,
    run_id: str | None = None,
    keep: bool = False,
    timeout: float = 30.0,
) -> list[AsteriskNode]:
    """Create full-mesh nodes `names` and start them in parallel (the caller stops them)."""
    cluster = AsteriskCluster(root=root, run_id=run_id, stasis_app=stasis_app, test_app=test_app, keep=keep)
    nodes = cluster.add_nodes(names, phones=phones)
    await cluster.start(nodes, timeout=timeout)
    return nodes

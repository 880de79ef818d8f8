"""A real etcd cluster (1 or more members) on loopback for tests, started from the cached binary.

Guarantees: free ports chosen at runtime (never 2379/2380), ETCD_* variables scrubbed from the
environment (etcd reads them as flags), data on /dev/shm when it exists (removed on stop),
one log file per member under base_dir, and only our own PIDs are ever signalled. A member that
does not become healthy makes start() raise RuntimeError with its log tail: a real part that
cannot start is a test error, never a skip.

Optional security, off by default: `tls` serves the client port over TLS with a certificate from
clusterq_testing.certs (https client URLs; with `client_cert_auth`, etcd's --client-cert-auth, the
harness presents its own client certificate for /health); peer URLs stay plaintext on loopback.
`enable_auth(password)` creates user root (role root) and turns etcd's authentication on, through
the gRPC Auth API; `auth_token_ttl` sets --auth-token-ttl (seconds a simple token lives unused).

`timeout` arguments bound whole polling loops.
Processes are plain `subprocess.Popen` children (not asyncio ones), so one cluster can outlive
the event loop of the test that started it.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import shutil
import signal
import ssl
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import grpc
from aetcd import rpc

from clusterq_testing.certs import CertPair, TestCa
from clusterq_testing.ports import free_tcp_port
from coordinator.store.kv import prefix_range_end

__all__ = ["EtcdCluster", "EtcdServerTls", "default_etcd_binary"]

_REPO = Path(__file__).resolve().parents[1]


def default_etcd_binary() -> Path:
    """$CLUSTERQ_CACHE/etcd/usr/bin/etcd, else <repo>/.cache/etcd/usr/bin/etcd."""
    cache = Path(os.environ.get("CLUSTERQ_CACHE") or _REPO / ".cache")
    return cache / "etcd" / "usr" / "bin" / "etcd"


@dataclass(frozen=True)
class _Member:
    name: str
    client_port: int
    peer_port: int
    log_path: Path


@dataclass(frozen=True)
class EtcdServerTls:
    """TLS for the members' client port: the CA, the members' server certificate, the certificate
    the harness presents itself, and whether etcd demands client certificates (--client-cert-auth)."""

    ca: Path
    server: CertPair
    client: CertPair
    client_cert_auth: bool = False

    @classmethod
    def issue(cls, ca: TestCa, client_cert_auth: bool = False) -> EtcdServerTls:
        """Server and harness certificates from `ca` (the harness's CN is "etcd-harness")."""
        return cls(ca.ca_cert, ca.server("etcd-server"), ca.client("etcd-harness"), client_cert_auth)

    def ssl_context(self) -> ssl.SSLContext:
        """What the harness's own HTTPS calls use."""
        ctx = ssl.create_default_context(cafile=str(self.ca))
        ctx.load_cert_chain(str(self.client.cert), str(self.client.key))
        return ctx

    def grpc_credentials(self) -> grpc.ChannelCredentials:
        """What the harness's own gRPC calls use."""
        return grpc.ssl_channel_credentials(self.ca.read_bytes(), self.client.key.read_bytes(),
                                            self.client.cert.read_bytes())


def _http_json(url: str, body: bytes | None, timeout: float, context: ssl.SSLContext | None = None) -> object:
    req = urllib.request.Request(url, data=body, method="POST" if body is not None else "GET")
    with urllib.request.urlopen(req, timeout=timeout, context=context) as resp:
        return json.loads(resp.read())


class EtcdCluster:
    """`members` etcd processes forming one cluster; an async context manager."""

    def __init__(self, base_dir: Path, members: int = 1, etcd_binary: Path | None = None, *,
                 tls: EtcdServerTls | None = None, auth_token_ttl: int | None = None) -> None:
        if members < 1:
            raise ValueError("members must be >= 1")
        self.tls = tls
        self._auth_token_ttl = auth_token_ttl
        self._ssl = None if tls is None else tls.ssl_context()
        self._scheme = "http" if tls is None else "https"
        self.root_password: str | None = None  # set by enable_auth()
        self._binary = etcd_binary or default_etcd_binary()
        self._base = Path(base_dir)
        self._token = f"clusterq-{secrets.token_hex(4)}"
        self._data_root: Path | None = None  # created by start(), removed by stop()
        self._members = [
            _Member(
                name=f"m{i}",
                client_port=free_tcp_port(),
                peer_port=free_tcp_port(),
                log_path=self._base / f"etcd-m{i}.log",
            )
            for i in range(members)
        ]
        self._procs: list[subprocess.Popen[bytes] | None] = [None] * members
        self.start_seconds: float | None = None

    def _data_dir(self, m: _Member) -> Path:
        if self._data_root is None:
            self._base.mkdir(parents=True, exist_ok=True)
            shm = Path("/dev/shm")
            fast = shm.is_dir() and os.access(shm, os.W_OK)
            self._data_root = Path(
                tempfile.mkdtemp(prefix="clusterq-etcd-", dir=shm)
                if fast
                else tempfile.mkdtemp(prefix="data-", dir=self._base)
            )
        return self._data_root / m.name

    # ---------------------------------------------------------------------------- views
    @property
    def endpoints(self) -> list[str]:
        """Client endpoints ("127.0.0.1:port"), member order."""
        return [f"127.0.0.1:{m.client_port}" for m in self._members]

    @property
    def member_pids(self) -> list[int | None]:
        """PID of each member's process, None when it is not running."""
        return [p.pid if p is not None and p.poll() is None else None for p in self._procs]

    def log_tail(self, i: int, lines: int = 30) -> str:
        """The last lines of member i's log."""
        try:
            text = self._members[i].log_path.read_text(errors="replace")
        except OSError:
            return "<no log>"
        return "\n".join(text.splitlines()[-lines:])

    # -------------------------------------------------------------------------- control
    def _command(self, m: _Member) -> list[str]:
        cluster = ",".join(f"{x.name}=http://127.0.0.1:{x.peer_port}" for x in self._members)
        client = f"{self._scheme}://127.0.0.1:{m.client_port}"
        peer = f"http://127.0.0.1:{m.peer_port}"
        return [*self._base_command(m, cluster, client, peer), *self._security_flags()]

    def _security_flags(self) -> list[str]:
        flags: list[str] = []
        if self.tls is not None:
            flags += ["--cert-file", str(self.tls.server.cert), "--key-file", str(self.tls.server.key)]
            # etcd 3.4 demands client certificates as soon as --trusted-ca-file is set, with or
            # without --client-cert-auth ("tls: client didn't provide a certificate"): both or neither.
            if self.tls.client_cert_auth:
                flags += ["--trusted-ca-file", str(self.tls.ca), "--client-cert-auth"]
        if self._auth_token_ttl is not None:
            flags += ["--auth-token-ttl", str(self._auth_token_ttl)]
        return flags

    def _base_command(self, m: _Member, cluster: str, client: str, peer: str) -> list[str]:
        return [
            str(self._binary),
            "--name", m.name,
            "--data-dir", str(self._data_dir(m)),
            "--listen-client-urls", client,
            "--advertise-client-urls", client,
            "--listen-peer-urls", peer,
            "--initial-advertise-peer-urls", peer,
            "--initial-cluster", cluster,
            "--initial-cluster-token", self._token,
            "--initial-cluster-state", "new",
            "--logger", "zap",
            "--log-level", "warn",
        ]  # fmt: skip

    def _spawn(self, i: int) -> None:
        if not self._binary.is_file():
            raise RuntimeError(f"etcd binary not found at {self._binary} (run scripts/provision.sh etcd)")
        m = self._members[i]
        command = self._command(m)  # creates base_dir and the data root on first use
        env = {k: v for k, v in os.environ.items() if not k.startswith("ETCD_")}
        with open(m.log_path, "ab") as log:
            self._procs[i] = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,  # our own process group: a terminal ^C does not reach it
            )

    async def start(self, timeout: float = 15.0) -> None:
        """Start every member and wait until each answers /health; RuntimeError otherwise."""
        t0 = time.monotonic()
        try:
            for i in range(len(self._members)):
                self._spawn(i)
            await asyncio.gather(*(self._wait_healthy(i, timeout) for i in range(len(self._members))))
        except BaseException:
            await self.stop()
            raise
        self.start_seconds = time.monotonic() - t0

    async def _wait_healthy(self, i: int, timeout: float) -> None:
        url = f"{self._scheme}://127.0.0.1:{self._members[i].client_port}/health"
        deadline = time.monotonic() + timeout
        last = "no answer"
        while time.monotonic() < deadline:
            proc = self._procs[i]
            if proc is None or proc.poll() is not None:
                code = None if proc is None else proc.returncode
                raise RuntimeError(f"etcd member {i} exited ({code}):\n{self.log_tail(i)}")
            try:
                body = await asyncio.to_thread(_http_json, url, None, 1.0, self._ssl)
                if isinstance(body, dict) and body.get("health") == "true":
                    return
                last = repr(body)
            except (OSError, urllib.error.URLError, ValueError) as e:
                last = repr(e)
            await asyncio.sleep(0.05)
        raise RuntimeError(f"etcd member {i} not healthy after {timeout} s ({last}):\n{self.log_tail(i)}")

    def kill_member(self, i: int, sig: int = signal.SIGKILL) -> None:
        """Send sig to member i (our child only)."""
        proc = self._procs[i]
        if proc is None or proc.poll() is not None:
            raise RuntimeError(f"etcd member {i} is not running")
        proc.send_signal(sig)
        if sig in (signal.SIGKILL, signal.SIGTERM):
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass

    async def restart_member(self, i: int, timeout: float = 15.0) -> None:
        """Start member i again with the same command and data dir; wait for /health."""
        proc = self._procs[i]
        if proc is not None and proc.poll() is None:
            raise RuntimeError(f"etcd member {i} is still running")
        self._spawn(i)
        await self._wait_healthy(i, timeout)

    async def wait_healthy(self, timeout: float = 15.0) -> None:
        """Wait until every running member answers /health."""
        running = [i for i, pid in enumerate(self.member_pids) if pid is not None]
        await asyncio.gather(*(self._wait_healthy(i, timeout) for i in running))

    async def raft_leader_index(self) -> int | None:
        """Index of the member that is the raft leader, as the live members report it."""
        ids: dict[str, int] = {}
        leader: str | None = None
        for i, pid in enumerate(self.member_pids):
            if pid is None:
                continue
            url = f"{self._scheme}://127.0.0.1:{self._members[i].client_port}/v3/maintenance/status"
            try:
                body = await asyncio.to_thread(_http_json, url, b"{}", 1.0, self._ssl)
            except (OSError, urllib.error.URLError, ValueError):
                continue
            if not isinstance(body, dict):
                continue
            header = body.get("header", {})
            if isinstance(header, dict) and "member_id" in header:
                ids[str(header["member_id"])] = i
            if body.get("leader") not in (None, "0"):
                leader = str(body["leader"])
        return None if leader is None else ids.get(leader)

    def _first_member_channel(self) -> grpc.aio.Channel:
        """A gRPC channel to the first member (TLS when the cluster serves it)."""
        target = self.endpoints[0]
        return (grpc.aio.insecure_channel(target) if self.tls is None
                else grpc.aio.secure_channel(target, self.tls.grpc_credentials()))

    async def enable_auth(self, root_password: str) -> None:
        """Create user root with `root_password` and role root, then turn authentication on
        (etcd refuses AuthEnable without a root user holding the root role)."""
        async with self._first_member_channel() as channel:
            auth = rpc.AuthStub(channel)
            await auth.UserAdd(rpc.AuthUserAddRequest(name="root", password=root_password), timeout=5)
            await auth.RoleAdd(rpc.AuthRoleAddRequest(name="root"), timeout=5)
            await auth.UserGrantRole(rpc.AuthUserGrantRoleRequest(user="root", role="root"), timeout=5)
            await auth.AuthEnable(rpc.AuthEnableRequest(), timeout=5)
        self.root_password = root_password

    async def add_user(self, user: str, password: str, readwrite_prefix: bytes) -> None:
        """As root (after enable_auth): a user whose one role may read and write only keys under
        `readwrite_prefix`, the way an operator restricts clusterq to its prefix."""
        assert self.root_password is not None, "enable_auth() first"
        async with self._first_member_channel() as channel:
            auth = rpc.AuthStub(channel)
            token = (await auth.Authenticate(
                rpc.AuthenticateRequest(name="root", password=self.root_password), timeout=5)).token
            md = (("token", token),)
            await auth.UserAdd(rpc.AuthUserAddRequest(name=user, password=password), timeout=5, metadata=md)
            await auth.RoleAdd(rpc.AuthRoleAddRequest(name=user), timeout=5, metadata=md)
            perm = rpc.Permission(permType=rpc.Permission.READWRITE, key=readwrite_prefix,
                                  range_end=prefix_range_end(readwrite_prefix))
            await auth.RoleGrantPermission(rpc.AuthRoleGrantPermissionRequest(name=user, perm=perm), timeout=5,
                                           metadata=md)
            await auth.UserGrantRole(rpc.AuthUserGrantRoleRequest(user=user, role=user), timeout=5, metadata=md)

    async def stop(self) -> None:
        """SIGTERM the members (raft leader last), SIGKILL any still alive after 5 s, drop the data."""
        # A raft leader on SIGTERM first hands leadership to a connected follower and waits for
        # that (seconds if the followers are stopping too); stopped last, it has nobody to wait for.
        running = sum(pid is not None for pid in self.member_pids)
        leader = await self.raft_leader_index() if running > 1 else None
        waves = [[i for i in range(len(self._procs)) if i != leader], [] if leader is None else [leader]]
        for wave in waves:
            for i in wave:
                proc = self._procs[i]
                if proc is not None and proc.poll() is None:
                    proc.terminate()
            await self._reap([self._procs[i] for i in wave], 5.0)
        self._procs = [None] * len(self._members)
        if self._data_root is not None:
            shutil.rmtree(self._data_root, ignore_errors=True)
            self._data_root = None

    @staticmethod
    async def _reap(procs: list[subprocess.Popen[bytes] | None], grace: float) -> None:
        deadline = time.monotonic() + grace
        for proc in procs:
            # Popen has no awaitable exit; poll (children are not asyncio subprocesses on purpose).
            while proc is not None and proc.poll() is None and time.monotonic() < deadline:  # noqa: ASYNC110
                await asyncio.sleep(0.02)
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()

    async def __aenter__(self) -> EtcdCluster:
        await self.start()
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

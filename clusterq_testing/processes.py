"""clusterq's own processes (coordinator replicas, stasis apps) started as real subprocesses.

Tests and `make run` use these so that chaos tests can SIGKILL / SIGSTOP a real process. Each
process gets its own log file; only the PIDs started here are ever signalled.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO

REPO = Path(__file__).resolve().parents[1]


class ManagedProcess:
    """One subprocess with a log file; stop() is TERM then KILL of our own PID."""

    def __init__(self, name: str, argv: Sequence[str], env: Mapping[str, str], log_path: Path) -> None:
        self.name = name
        self.argv = list(argv)
        self.env = dict(env)
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    def __repr__(self) -> str:  # env holds secrets: never shown
        return f"ManagedProcess({self.name!r}, pid={self.pid})"

    @property
    def pid(self) -> int | None:
        """PID while running (None before start / after stop)."""
        return self.proc.pid if self.proc is not None else None

    def alive(self) -> bool:
        """Whether our process is still running."""
        return self.proc is not None and self.proc.poll() is None

    def start(self) -> None:
        """Start the process (its output goes to log_path)."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(self.argv, env=self.env, stdout=self._log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, cwd=REPO, start_new_session=True)

    def signal(self, sig: int) -> None:
        """Send a signal to our process (SIGKILL, SIGSTOP, SIGCONT...)."""
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, sig)

    def stop(self, grace: float = 5.0) -> int | None:
        """TERM, wait up to grace, then KILL; returns the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            try:
                os.kill(self.proc.pid, signal.SIGCONT)  # a stopped process cannot handle TERM
                os.kill(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(grace)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        code = self.proc.returncode
        if self._log is not None:
            self._log.close()
            self._log = None
        return code

    async def async_stop(self, grace: float = 5.0) -> int | None:
        """stop() in a thread."""
        return await asyncio.to_thread(self.stop, grace)

    def log_text(self) -> str:
        """Everything the process printed so far."""
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    async def wait_log(self, needle: str, timeout: float = 15.0) -> None:
        """Wait until the log contains `needle` (raises TimeoutError with the log tail)."""
        deadline = time.monotonic() + timeout
        while needle not in self.log_text():
            if not self.alive():
                raise RuntimeError(f"{self.name} exited:\n{self.log_text()[-3000:]}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.name}: {needle!r} not logged within {timeout} s:\n"
                                   f"{self.log_text()[-3000:]}")
            await asyncio.sleep(0.05)


def _base_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CLUSTERQ_", "ETCD_"))}
    env["PYTHONPATH"] = str(REPO)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def coordinator_process(name: str, log_dir: Path, *, etcd_endpoints: Sequence[str], port: int,
                        queues_file: Path | None = None, lease_ttl: float = 2.0, node_ttl: float = 6.0,
                        settle_time: float = 1.0, prefix: str = "/clusterq",
                        extra_env: Mapping[str, str] | None = None) -> ManagedProcess:
    """A coordinator replica listening on 127.0.0.1:port."""
    env = _base_env()
    env.update({
        "CLUSTERQ_ETCD_ENDPOINTS": ",".join(etcd_endpoints),
        "CLUSTERQ_ETCD_PREFIX": prefix,
        "CLUSTERQ_LISTEN": f"127.0.0.1:{port}",
        "CLUSTERQ_LEASE_TTL": str(lease_ttl),
        "CLUSTERQ_NODE_TTL": str(node_ttl),
        "CLUSTERQ_SETTLE_TIME": str(settle_time),
        "CLUSTERQ_REPLICA_ID": name,
    })
    if queues_file is not None:
        env["CLUSTERQ_QUEUES_FILE"] = str(queues_file)
    env.update(extra_env or {})
    return ManagedProcess(name, [sys.executable, "-m", "coordinator"], env, log_dir / f"{name}.log")


def stasis_process(node_id: str, log_dir: Path, *, ari_url: str, ari_user: str, ari_password: str,
                   coordinators: Sequence[str], grace: float = 20.0, shared_music: bool = False,
                   extra_env: dict[str, str] | None = None) -> ManagedProcess:
    """The stasis app of one Asterisk node (password passed by environment, never argv)."""
    env = _base_env()
    env.update({
        "CLUSTERQ_NODE_ID": node_id,
        "CLUSTERQ_ARI_URL": ari_url,
        "CLUSTERQ_ARI_USER": ari_user,
        "CLUSTERQ_ARI_PASSWORD": ari_password,
        "CLUSTERQ_COORDINATOR": ",".join(coordinators),
        "CLUSTERQ_GRACE": str(grace),
        "CLUSTERQ_SHARED_MUSIC": "1" if shared_music else "0",
    })
    env.update(extra_env or {})
    return ManagedProcess(f"stasis-{node_id}", [sys.executable, "-m", "stasis_app"], env,
                          log_dir / f"stasis-{node_id}.log")

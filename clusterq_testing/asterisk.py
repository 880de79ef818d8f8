"""Real Asterisk 22 nodes for tests, run from the provisioned chroot (no mounts needed).

`AsteriskNode` is one instance (its identity, directory, ports, config and consoles are
`AsteriskInstance`'s, in clusterq_testing.asterisk_instance) plus the Asterisk process it starts and
stops.  `AsteriskCluster` (clusterq_testing.asterisk_cluster) creates nodes with full-mesh PJSIP trunks
(and phone hosts) and starts them in parallel.

Process ownership: a node only ever signals the PID it started itself (the Popen child, which stays a
zombie until reaped, so the PID cannot be recycled under us).  Blocking methods (`start`, `stop`, ...)
have `async_*` twins that run them in a thread so a test's event loop keeps running.
"""

from __future__ import annotations

import asyncio
import atexit
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import IO

from clusterq_testing.asterisk_instance import AsteriskInstance

__all__ = ["AsteriskNode"]

_LOG_TAIL_LINES = 40
_running: set[AsteriskNode] = set()


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


class AsteriskNode(AsteriskInstance):
    """One real Asterisk process in the chroot; see the module docstring."""

    # Class-level defaults, not set in __init__: AsteriskInstance.__init__ already reads `pid`
    # (adding phones applies them at once when running).
    _proc: subprocess.Popen[bytes] | None = None
    _stdout: IO[bytes] | None = None

    @property
    def pid(self) -> int | None:
        """PID of the Asterisk process we started, None when not running."""
        return self._proc.pid if self._proc is not None and self._proc.poll() is None else None

    # ---------------------------------------------------------------- process control
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


@atexit.register
def _stop_leftovers() -> None:
    # Safety net for an interpreter exiting with nodes still up (fixtures normally stop them).
    for node in list(_running):
        node._terminate(grace=2.0)

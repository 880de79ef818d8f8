"""Fixtures for end-to-end tests: clusterq's real processes beside real etcd and Asterisk."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from clusterq_testing.asterisk import AsteriskNode
from clusterq_testing.client import AdminClient
from clusterq_testing.ports import free_tcp_port
from clusterq_testing.processes import ManagedProcess, coordinator_process, stasis_process

QUEUES_YAML = """
queues:
  support:
    strategy: leastrecent
    ring_timeout: 8
    music_class: default
  sales:
    strategy: ringall
    ring_timeout: 8
"""


@dataclass
class Clusterq:
    """clusterq processes started for one test (all stopped at teardown)."""

    log_dir: Path
    etcd_endpoints: list[str]
    queues_file: Path
    coordinators: dict[str, ManagedProcess] = field(default_factory=dict)
    addresses: dict[str, str] = field(default_factory=dict)
    stasis: dict[str, ManagedProcess] = field(default_factory=dict)
    clients: list[AdminClient] = field(default_factory=list)

    async def start_coordinators(self, n: int = 1, lease_ttl: float = 2.0, settle_time: float = 0.5,
                                 ports: Sequence[int] = ()) -> None:
        """Start n replicas (on `ports` where given); returns once one of them leads. settle_time: how
        long a new leader waits for the known nodes to re-report before deciding (0.5 s keeps tests fast)."""
        for i in range(n):
            name = f"coord-{len(self.coordinators)}"
            port = ports[i] if i < len(ports) else free_tcp_port()
            proc = coordinator_process(name, self.log_dir, etcd_endpoints=self.etcd_endpoints, port=port,
                                       queues_file=self.queues_file, lease_ttl=lease_ttl, settle_time=settle_time,
                                       extra_env={"CLUSTERQ_QUEUE_LOG": str(self.log_dir / f"{name}.queue_log")})
            proc.start()
            self.coordinators[name] = proc
            self.addresses[name] = f"127.0.0.1:{port}"
            del i
        await self.wait_leader()

    def queue_log(self) -> list[list[str]]:
        """Every replica's queue_log lines so far, split at "|", in time order."""
        lines = [line.split("|") for name in self.coordinators
                 for path in [self.log_dir / f"{name}.queue_log"] if path.exists()
                 for line in path.read_text().splitlines()]
        return sorted(lines, key=lambda fields: int(fields[0]))

    async def wait_leader(self, timeout: float = 20.0) -> str:
        """Name of the replica whose log says it leads (raises if none within timeout)."""
        import asyncio
        import time

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for name, proc in self.coordinators.items():
                if proc.alive() and "leading with epoch" in proc.log_text():
                    return name
            await asyncio.sleep(0.05)
        logs = "\n".join(f"== {n}\n{p.log_text()[-2000:]}" for n, p in self.coordinators.items())
        raise TimeoutError(f"no coordinator leads within {timeout} s\n{logs}")

    async def start_stasis(self, nodes: Sequence[AsteriskNode], grace: float = 20.0,
                           shared_music: bool = False, wait: bool = True,
                           extra_env: dict[str, str] | None = None) -> None:
        """Start one stasis app per node; returns once each is connected to the leader (unless `wait`
        is False)."""
        for node in nodes:
            proc = stasis_process(node.name, self.log_dir, ari_url=node.ari_url, ari_user=node.ari_user,
                                  ari_password=node.ari_password, coordinators=list(self.addresses.values()),
                                  grace=grace, shared_music=shared_music, extra_env=extra_env)
            proc.start()
            self.stasis[node.name] = proc
        if not wait:
            return
        for node in nodes:
            # Ready = registered with the leader AND the Stasis app registered on Asterisk
            # (before that, Stasis(clusterq) in the dialplan fails at once).
            await self.stasis[node.name].wait_log("connected to leader", timeout=20)
            await self.stasis[node.name].wait_log("connected (app clusterq)", timeout=20)

    def client(self) -> AdminClient:
        """An admin client that follows the leader."""
        c = AdminClient(list(self.addresses.values()))
        self.clients.append(c)
        return c

    async def stop(self) -> None:
        """Stop everything started here (by PID)."""
        for c in self.clients:
            await c.close()
        for p in [*self.stasis.values(), *self.coordinators.values()]:
            await p.async_stop()


@pytest.fixture
async def clusterq(tmp_path: Path, etcd_factory: object) -> AsyncIterator[Clusterq]:
    """A clusterq deployment on one real etcd member (coordinators/stasis apps started by the test)."""
    etcd = await etcd_factory()  # type: ignore[operator]
    qfile = tmp_path / "queues.yaml"
    qfile.write_text(QUEUES_YAML)
    cq = Clusterq(tmp_path / "clusterq-logs", list(etcd.endpoints), qfile)
    try:
        yield cq
    finally:
        await cq.stop()

"""The bench's real parts: etcd, one coordinator, ONE Asterisk node (app_queue loaded beside clusterq),
the node's stasis app, the bench's ARI observer and an admin client. Everything listens on 127.0.0.1
and is stopped by the PID it was started with.

Both queue implementations get the same callers, agents and music:

* callers: Local/<queue>@<context>/n with formats=ulaw, the ;1 half ("phone") in the observer app;
* agents: Local/<agent>@clusterq-agents-bench/n (dialplan: answer after CQ_AGENT_RING s, talk a random
  CQ_AGENT_TALK_MIN_MS..MAX_MS, hang up), as clusterq endpoints and as app_queue members;
* music class "default" (the node's only class), strategy leastrecent, ring timeout 15 s, no wrap-up,
  ringinuse off.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import grpc

from clusterq_proto.v1 import admin_pb2, admin_pb2_grpc
from clusterq_testing.asterisk import AsteriskNode
from clusterq_testing.asterisk_node_config import AppQueue, AppQueueConfig, NodeConfig
from clusterq_testing.bench_asterisk.procstat import Pids
from clusterq_testing.client import AdminClient
from clusterq_testing.etcd import EtcdCluster
from clusterq_testing.observer import AriObserver
from clusterq_testing.ports import free_tcp_port
from clusterq_testing.processes import ManagedProcess, coordinator_process, stasis_process

__all__ = ["AGENT_CONTEXT", "BenchSettings", "QueueNames", "Rig", "agent_endpoint", "start_rig"]

AGENT_CONTEXT = "clusterq-agents-bench"
NODE = "a"
_UNUSED_EVENTS = ("ChannelVarset", "DeviceStateChanged", "ChannelCallerId", "ChannelConnectedLine", "Dial",
                  "ChannelStateChange", "PlaybackContinuing")


@dataclass(frozen=True)
class BenchSettings:
    """Loads, windows and queue settings of one bench run."""

    callers: int = 300
    agents: int = 20
    idle_window: float = 5.0
    cpu_window: float = 16.0  # measured as two halves
    settle: float = 3.0
    ring: float = 0.0  # seconds an agent phone rings before answering
    talk_min_ms: int = 500
    talk_max_ms: int = 1500
    # app_queue's default min-announce-frequency; announce-frequency is off by default in both
    announce_frequency: float = 15.0
    min_announce_frequency: float = 15.0
    drain_cap: float = 45.0  # a latency run stops after this long even if callers still wait
    # clusterq's waiting callers share one music stream per class (CLUSTERQ_SHARED_MUSIC); app_queue
    # always runs one music generator per caller
    shared_music: bool = True

    def __post_init__(self) -> None:
        if self.callers < 1 or self.agents < 1 or not 0 < self.talk_min_ms <= self.talk_max_ms:
            raise ValueError(f"bad loads: {self}")


@dataclass(frozen=True)
class QueueNames:
    """The three queues of one implementation: callers only (CPU), and agents without / with announcements."""

    hold: str
    plain: str
    announced: str


CLUSTERQ_QUEUES = QueueNames("cq-hold", "cq", "cq-ann")
APP_QUEUE_QUEUES = QueueNames("aq-hold", "aq", "aq-ann")


def agent_names(settings: BenchSettings) -> tuple[str, ...]:
    """agent1 .. agentN."""
    return tuple(f"agent{i}" for i in range(1, settings.agents + 1))


def agent_endpoint(agent: str) -> str:
    """The dial string of a bench agent (same for clusterq and app_queue)."""
    return f"Local/{agent}@{AGENT_CONTEXT}/n"


def clusterq_queues_yaml(s: BenchSettings) -> str:
    """The coordinator's queues file."""
    base = "{strategy: leastrecent, ring_timeout: 15, wrapup_time: 0, ringinuse: false, music_class: default"
    ann = (f", announce_frequency: {s.announce_frequency}, min_announce_frequency: {s.min_announce_frequency}"
           ", announce_position: 'yes', announce_holdtime: 'yes'")
    q = CLUSTERQ_QUEUES
    return f"queues:\n  {q.hold}: {base}}}\n  {q.plain}: {base}}}\n  {q.announced}: {base}{ann}}}\n"


def app_queue_config(s: BenchSettings) -> AppQueueConfig:
    """queues.conf: app_queue's best settings for this load (autofill, retry 1 s: its minimum)."""
    base = (("strategy", "leastrecent"), ("musicclass", "default"), ("timeout", "15"), ("retry", "1"),
            ("announce-frequency", "0"), ("periodic-announce-frequency", "0"))
    ann = (("announce-frequency", f"{s.announce_frequency:g}"),
           ("min-announce-frequency", f"{s.min_announce_frequency:g}"),
           ("announce-position", "yes"), ("announce-holdtime", "yes"))
    # Members start paused: the run unpauses them once every caller waits (like clusterq's logins).
    members = tuple(f"{agent_endpoint(a)},0,{a},,no,0,1" for a in agent_names(s))
    q = APP_QUEUE_QUEUES
    return AppQueueConfig(queues=(AppQueue(q.hold, base), AppQueue(q.plain, base, members),
                                  AppQueue(q.announced, tuple(x for x in base if x[0] != "announce-frequency")
                                           + ann, members)))


def _logout_call(agent: str) -> Callable[[grpc.aio.Channel], Awaitable[admin_pb2.AgentState]]:
    req = admin_pb2.LogoutRequest(agent_id=agent)
    return lambda ch: admin_pb2_grpc.AgentsStub(ch).Logout(req, timeout=5)


class BenchNode(AsteriskNode):
    """An AsteriskNode whose configuration also loads app_queue with the bench's queues."""

    def __init__(self, name: str, app_queue: AppQueueConfig, **kwargs: object) -> None:
        self._app_queue = app_queue  # before super().__init__, which renders the config once
        super().__init__(name, **kwargs)  # type: ignore[arg-type]

    @property
    def config(self) -> NodeConfig:
        """The plain node configuration plus app_queue."""
        return dataclasses.replace(super().config, app_queue=self._app_queue)


@dataclass
class Rig:
    """The running parts (mutable: the observer and PIDs change when Asterisk restarts)."""

    settings: BenchSettings
    work: Path
    etcd: EtcdCluster
    node: BenchNode
    coordinator: ManagedProcess
    stasis: ManagedProcess
    observer: AriObserver
    client: AdminClient

    def pids(self) -> Pids:
        """PIDs of the measured processes (raises if one is not running)."""
        pids = (self.node.pid, self.stasis.pid, self.coordinator.pid)
        if None in pids or not self.stasis.alive() or not self.coordinator.alive():
            raise RuntimeError(f"a measured process is not running: {self.node!r} {self.stasis!r} "
                               f"{self.coordinator!r}")
        ast, sta, coo = pids
        assert ast is not None and sta is not None and coo is not None
        own = (os.getpid(), *(p for p in self.etcd.member_pids if p is not None))
        return Pids(ast, sta, coo, own)

    def stasis_failures(self) -> int:
        """ARI actions the stasis app logged as failed so far (its KeyedSerializer logs each one)."""
        return sum(" failed: " in line and " action " in line for line in self.stasis.log_text().splitlines())

    async def configure_node(self) -> None:
        """Per-start settings on Asterisk: agent phone timing (dialplan globals) and the observer's
        event filter (again after every restart: the filter belongs to the app registration)."""
        s = self.settings
        for name, value in (("CQ_AGENT_RING", f"{s.ring:g}"), ("CQ_AGENT_TALK_MIN_MS", str(s.talk_min_ms)),
                            ("CQ_AGENT_TALK_MAX_MS", str(s.talk_max_ms))):
            await self.observer.ari("POST", "/asterisk/variable", {"variable": name, "value": value})
        # The observer subscribes to everything; the frequent event types the analysis does not use
        # are dropped by Asterisk before its websocket, so the bench perturbs what it measures less.
        await self.observer.ari("PUT", f"/applications/{self.observer.app}/eventFilter",
                                body={"disallowed": [{"type": t} for t in _UNUSED_EVENTS]})

    async def wait_app(self, app: str, timeout: float = 30.0) -> None:
        """Wait until Asterisk lists the ARI application `app` (its client is connected)."""
        deadline = time.monotonic() + timeout
        while True:
            with contextlib.suppress(Exception):
                apps = await self.observer.ari("GET", "/applications")
                if any(a.get("name") == app for a in apps):
                    return
            if time.monotonic() > deadline:
                raise TimeoutError(f"ARI app {app} not registered within {timeout} s:\n"
                                   f"{self.stasis.log_text()[-2000:]}")
            await asyncio.sleep(0.1)

    async def restart_asterisk(self) -> None:
        """Restart the Asterisk process (fresh heap for the next implementation's memory figure)."""
        await self.node.async_restart()
        await self.wait_app(self.node.test_app)
        await self.wait_app("clusterq")
        await self.configure_node()

    async def login(self, queue: str) -> None:
        """Log every bench agent into clusterq queue `queue`."""
        await asyncio.gather(*(self.client.login(a, agent_endpoint(a), NODE, [queue])
                               for a in agent_names(self.settings)))

    async def logout(self) -> None:
        """Log every bench agent out of clusterq."""
        for a in agent_names(self.settings):
            await self.client.call(_logout_call(a))

    async def app_queue_pause(self, queue: str, paused: bool) -> None:
        """Pause or unpause every bench member of app_queue queue `queue` (CLI, in parallel)."""
        verb = "pause" if paused else "unpause"
        await asyncio.gather(*(self.node.async_cli(f"queue {verb} member {agent_endpoint(a)} queue {queue}")
                               for a in agent_names(self.settings)))

    async def stop(self) -> None:
        """Stop everything started here, by PID, in reverse order of start."""
        with contextlib.suppress(Exception):
            await self.client.close()
        with contextlib.suppress(Exception):
            await self.observer.close()
        await self.stasis.async_stop()
        await self.coordinator.async_stop()
        await self.node.async_stop(save_logs_to=self.work / "asterisk")
        await self.etcd.stop()


async def start_rig(settings: BenchSettings, work: Path) -> Rig:
    """Start every part; on any failure stop what started and raise (a part that cannot start is an error)."""
    etcd = EtcdCluster(work / "etcd", members=1)
    node = BenchNode(NODE, app_queue_config(settings))
    qfile = work / "queues.yaml"
    qfile.write_text(clusterq_queues_yaml(settings))
    port = free_tcp_port()
    coord = coordinator_process("coord-0", work / "logs", etcd_endpoints=etcd.endpoints, port=port,
                                queues_file=qfile, lease_ttl=2.0, settle_time=0.5)
    stasis = stasis_process(NODE, work / "logs", ari_url=node.ari_url, ari_user=node.ari_user,
                            ari_password=node.ari_password, coordinators=[f"127.0.0.1:{port}"],
                            shared_music=settings.shared_music)
    observer: AriObserver | None = None
    try:
        await etcd.start()
        await node.async_start()
        coord.start()
        await coord.wait_log("leading with epoch", timeout=30)
        stasis.start()
        await stasis.wait_log("connected to leader", timeout=30)
        await stasis.wait_log("connected (app clusterq)", timeout=30)
        observer = await AriObserver.open(node)
        rig = Rig(settings, work, etcd, node, coord, stasis, observer, AdminClient([f"127.0.0.1:{port}"]))
        await rig.configure_node()
        return rig
    except BaseException:
        if observer is not None:
            await observer.close()
        await stasis.async_stop()
        await coord.async_stop()
        await node.async_stop(save_logs_to=work / "asterisk")
        await etcd.stop()
        raise

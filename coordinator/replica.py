"""What one coordinator replica knows: whether it leads, the runtime if so, and where the leader is."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field

import yaml
from grpc_health.v1 import health, health_pb2

from coordinator.config import CoordinatorSettings
from coordinator.definitions import load_file
from coordinator.election.election import Fence
from coordinator.queue import AgentConfig, AgentLoggedIn, AgentPaused, QueueDefined, QueueEngine, Settling
from coordinator.queue_log import QueueLogBook, QueueLogFile
from coordinator.runtime import LeaderRuntime, SeqAllocator
from coordinator.store.queue_store import QueueStore, StoredAgent

log = logging.getLogger(__name__)

LEADERSHIP_SERVICE = "clusterq.v1.Leadership"
SEQ_BLOCK = 100_000


@dataclass
class ReplicaState:
    """Shared by the servicers and the leadership loop of one replica."""

    settings: CoordinatorSettings
    store: QueueStore
    health: health.aio.HealthServicer
    runtime: LeaderRuntime | None = None
    fence: Fence | None = None
    leader_address: str = ""
    started_at: float = field(default_factory=time.monotonic)

    async def set_leading(self, leading: bool) -> None:
        """Flip the named leadership health service (the overall status "" is the readiness that
        coordinator.__main__ manages: SERVING once campaigning, NOT_SERVING from shutdown on)."""
        status = health_pb2.HealthCheckResponse.SERVING if leading else health_pb2.HealthCheckResponse.NOT_SERVING
        await self.health.set(LEADERSHIP_SERVICE, status)


async def apply_queues_file(state: ReplicaState, fence: Fence) -> None:
    """Write file definitions whose text changed since last applied (the file then wins).

    A file that cannot be read or has an invalid definition is logged and nothing of it is applied:
    the definitions already stored stay, and the leadership term goes on (a bad file must not make
    every replica that wins the election exit)."""
    path = state.settings.queues_file
    if path is None:
        return
    try:
        queues, agents = load_file(path)
    except (OSError, ValueError, yaml.YAMLError) as exc:  # DefinitionError is a ValueError
        log.error("queues file %s not applied, the stored definitions stay: %s", path, exc)
        return
    hashes = await state.store.load_file_hashes()
    for name, (cfg, digest) in queues.items():
        if hashes.get(name) != digest:
            log.info("queues file: applying queue %s", name)
            await state.store.put_queue(fence, cfg, digest)
    await _apply_file_agents(state.store, fence, agents)


async def _apply_file_agents(store: QueueStore, fence: Fence, agents: dict[str, tuple[AgentConfig, str]]) -> None:
    """Log in the file's agents whose entry changed since last applied, like queues: an agent logged
    out or changed through the API stays so until its file entry is edited."""
    hashes = await store.load_agent_file_hashes()
    stored = await store.load_agents()
    for agent_id, (agent, digest) in agents.items():
        if hashes.get(agent_id) == digest:
            continue
        old = stored.get(agent_id)
        paused, reason = (old.paused, old.pause_reason) if old is not None else (False, "")
        log.info("queues file: applying agent %s", agent_id)
        await store.put_agent(fence, StoredAgent(agent, paused, reason), digest)


QUEUE_LOG_FLUSH = 0.5  # seconds between queue_log appends (lines are buffered in between)


async def _flush_every(queue_log: QueueLogFile, interval: float) -> None:
    while True:
        await asyncio.sleep(interval)
        queue_log.flush()


def _apply_stored(runtime: LeaderRuntime, event: QueueDefined | AgentLoggedIn, what: str) -> bool:
    """Apply a stored definition; one the engine refuses is logged and skipped (False)."""
    try:
        runtime.apply(event)
    except ValueError as exc:  # the engine validates before it changes any state
        log.error("stored %s skipped: %s", what, exc)
        return False
    return True


async def lead(state: ReplicaState, fence: Fence) -> None:
    """Leader-only work for one leadership term; cancelled the moment the lease is lost."""
    settings = state.settings
    clock = time.monotonic
    await apply_queues_file(state, fence)
    queues = await state.store.load_queues()
    mark = await state.store.load_seq_mark()
    await state.store.put_seq_mark(fence, mark + SEQ_BLOCK)

    async def reserve(upto: int) -> None:
        await state.store.put_seq_mark(fence, upto)

    engine = QueueEngine(offer_id_prefix=f"e{fence.epoch}-")
    runtime = LeaderRuntime(engine, fence.epoch, clock, SeqAllocator(mark, mark + SEQ_BLOCK, SEQ_BLOCK, reserve),
                            settings.node_ttl)
    queue_log = QueueLogFile(settings.queue_log) if settings.queue_log is not None else None
    if queue_log is not None:
        runtime.queue_log = QueueLogBook(queue_log.write)
    for cfg in queues.values():
        _apply_stored(runtime, QueueDefined(cfg), f"queue {cfg.name}")
    known_nodes = await state.store.load_nodes()
    for node in known_nodes:
        runtime.expect_node(node)
    # Settle: give known nodes time to re-report their callers (with original arrival sequences),
    # calls and device states before anything is offered, so no lower-ranked caller is offered first
    # and no agent still talking is rung. The agents are known before the nodes attach: a node's
    # re-report (a call adopted, a device in use) is about them.
    runtime.apply(Settling(True))
    agents = await state.store.load_agents()
    for stored in agents.values():
        if not _apply_stored(runtime, AgentLoggedIn(stored.config), f"agent {stored.config.agent_id}"):
            continue
        if stored.paused:
            runtime.apply(AgentPaused(stored.config.agent_id, stored.pause_reason))
    state.runtime, state.fence = runtime, fence
    await state.set_leading(True)
    log.info("leading with epoch %d: %d queues, %d known nodes", fence.epoch, len(queues), len(known_nodes))
    try:
        async with asyncio.TaskGroup() as tg:
            tg.create_task(runtime.run_timers())
            if queue_log is not None:
                tg.create_task(_flush_every(queue_log, QUEUE_LOG_FLUSH))
            deadline = clock() + settings.settle_time
            while clock() < deadline and not all(n in runtime.links for n in known_nodes):  # noqa: ASYNC110
                await asyncio.sleep(0.02)  # a bounded poll of a dict, at most settle_time
            runtime.apply(Settling(False))
            log.info("settled after %.2f s: %d nodes attached, %d agents", settings.settle_time - (deadline - clock()),
                     len(runtime.links), len(agents))
    finally:
        if queue_log is not None:
            queue_log.flush()
        runtime.close()
        state.runtime, state.fence = None, None
        await state.set_leading(False)
        log.warning("leadership of epoch %d ended", fence.epoch)

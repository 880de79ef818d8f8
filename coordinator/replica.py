"""What one coordinator replica knows: whether it leads, the runtime if so, and where the leader is."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field

from grpc_health.v1 import health, health_pb2

from coordinator.config import CoordinatorSettings
from coordinator.definitions import load_file
from coordinator.election.election import Fence
from coordinator.queue import AgentLoggedIn, AgentPaused, QueueDefined, QueueEngine
from coordinator.queue_log import QueueLogBook, QueueLogFile
from coordinator.runtime import LeaderRuntime, SeqAllocator
from coordinator.store.queue_store import QueueStore

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
        """Flip the named leadership health service (the overall status stays SERVING)."""
        status = health_pb2.HealthCheckResponse.SERVING if leading else health_pb2.HealthCheckResponse.NOT_SERVING
        await self.health.set(LEADERSHIP_SERVICE, status)


async def apply_queues_file(state: ReplicaState, fence: Fence) -> None:
    """Write file definitions whose text changed since last applied (the file then wins)."""
    path = state.settings.queues_file
    if path is None:
        return
    queues, agents = load_file(path)
    hashes = await state.store.load_file_hashes()
    stored_agents = await state.store.load_agents()
    for name, (cfg, digest) in queues.items():
        if hashes.get(name) != digest:
            log.info("queues file: applying queue %s", name)
            await state.store.put_queue(fence, cfg, digest)
    from coordinator.store.queue_store import StoredAgent

    for agent_id, agent in agents.items():
        if agent_id not in stored_agents:
            await state.store.put_agent(fence, StoredAgent(agent, False, ""))


QUEUE_LOG_FLUSH = 0.5  # seconds between queue_log appends (lines are buffered in between)


async def _flush_every(queue_log: QueueLogFile, interval: float) -> None:
    while True:
        await asyncio.sleep(interval)
        queue_log.flush()


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
        runtime.apply(QueueDefined(cfg))
    known_nodes = await state.store.load_nodes()
    for node in known_nodes:
        runtime.expect_node(node)
    state.runtime, state.fence = runtime, fence
    await state.set_leading(True)
    log.info("leading with epoch %d: %d queues, %d known nodes", fence.epoch, len(queues), len(known_nodes))
    try:
        async with asyncio.TaskGroup() as tg:
            tg.create_task(runtime.run_timers())
            if queue_log is not None:
                tg.create_task(_flush_every(queue_log, QUEUE_LOG_FLUSH))
            # Settle: give known nodes time to re-report their callers (with original arrival
            # sequences) before agents become available, so no lower-ranked caller is offered first.
            deadline = clock() + settings.settle_time
            while clock() < deadline and not all(n in runtime.links for n in known_nodes):  # noqa: ASYNC110
                await asyncio.sleep(0.02)  # a bounded poll of a dict, at most settle_time
            agents = await state.store.load_agents()
            for stored in agents.values():
                runtime.apply(AgentLoggedIn(stored.config))
                if stored.paused:
                    runtime.apply(AgentPaused(stored.config.agent_id, stored.pause_reason))
            log.info("settled after %.2f s: %d nodes attached, %d agents", settings.settle_time - (deadline - clock()),
                     len(runtime.links), len(agents))
    finally:
        if queue_log is not None:
            queue_log.flush()
        runtime.close()
        state.runtime, state.fence = None, None
        await state.set_leading(False)
        log.warning("leadership of epoch %d ended", fence.epoch)

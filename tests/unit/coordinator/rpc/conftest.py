"""An in-process replica for servicer tests: a real grpc.aio server on 127.0.0.1:0 over MemoryKv.

The replica leads from the start (a leader key is put in MemoryKv and its fence handed to the
state, as `coordinator.replica.lead` does); `lose_leadership` / `lead_again` do what the end and the
start of a leadership term do to the shared state, without the election machinery.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import grpc
import pytest

from coordinator.config import CoordinatorSettings
from coordinator.election.election import Fence
from coordinator.queue import QueueConfig, QueueDefined, QueueEngine
from coordinator.replica import ReplicaState
from coordinator.rpc.server import build_server, new_health
from coordinator.runtime import LeaderRuntime, SeqAllocator
from coordinator.store.memory_kv import MemoryKv
from coordinator.store.queue_store import QueueStore

LEADER_KEY = b"/t/election/1"


@dataclass
class Replica:
    """One serving replica and handles on what the tests manipulate."""

    state: ReplicaState
    kv: MemoryKv
    server: grpc.aio.Server
    address: str

    async def lead_again(self) -> LeaderRuntime:
        """Start a new term (new leader key, new runtime) with the queues stored in the KV."""
        await self.kv.delete(LEADER_KEY)
        rev = await self.kv.put(LEADER_KEY, self.address.encode())
        fence = Fence(LEADER_KEY, rev)

        async def reserve(_upto: int) -> None:
            return None

        rt = LeaderRuntime(QueueEngine(offer_id_prefix=f"e{rev}-"), rev, time.monotonic,
                           SeqAllocator(1, 100_000, 100_000, reserve), self.state.settings.node_ttl)
        for cfg in (await self.state.store.load_queues()).values():
            rt.apply(QueueDefined(cfg))
        self.state.runtime, self.state.fence = rt, fence
        return rt

    def attach_node(self, node: str = "a") -> None:
        """A node stream attached to this term (agents homed on a node never attached are unavailable)."""
        assert self.state.runtime is not None
        self.state.runtime.attach(node, f"instance-{node}")

    def lose_leadership(self) -> None:
        """What the end of a term does: the runtime closes, the state forgets it and its fence."""
        rt = self.state.runtime
        if rt is not None:
            rt.close()
        self.state.runtime, self.state.fence = None, None
        self.state.leader_address = "10.0.0.9:50051"


@pytest.fixture
async def replica() -> AsyncIterator[Replica]:
    """A leading replica with one queue, "support"."""
    kv = MemoryKv(time.monotonic)
    store = QueueStore(kv, "/t")
    settings = CoordinatorSettings(etcd_endpoints=("127.0.0.1:1",), etcd_prefix="/t", lease_ttl=2.0, node_ttl=4.0,
                                   listen="127.0.0.1:0", replica_id="unit")
    state = ReplicaState(settings, store, new_health())
    server, port = await build_server(state, "127.0.0.1:0")
    r = Replica(state, kv, server, f"127.0.0.1:{port}")
    rt = await r.lead_again()
    await store.put_queue(r.state.fence, QueueConfig(name="support"))  # type: ignore[arg-type]
    rt.apply(QueueDefined(QueueConfig(name="support")))
    try:
        yield r
    finally:
        await server.stop(None)
        await kv.close()


@pytest.fixture
async def channel(replica: Replica) -> AsyncIterator[grpc.aio.Channel]:
    """A client channel to the replica."""
    async with grpc.aio.insecure_channel(replica.address) as ch:
        yield ch

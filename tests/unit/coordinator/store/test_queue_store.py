"""QueueStore over MemoryKv: create-if-absent of queue definitions under the leader fence."""

from __future__ import annotations

import time

import pytest

from coordinator.election.election import Fence, FenceLost
from coordinator.queue import QueueConfig
from coordinator.store.memory_kv import MemoryKv
from coordinator.store.queue_store import QueueStore

LEADER_KEY = b"/t/election/1"


async def test_create_queue_writes_once_then_reports_the_name_taken() -> None:
    kv = MemoryKv(time.monotonic)
    store = QueueStore(kv, "/t")
    fence = Fence(LEADER_KEY, await kv.put(LEADER_KEY, b"me"))
    assert await store.create_queue(fence, QueueConfig(name="sales", wrapup_time=5))
    assert not await store.create_queue(fence, QueueConfig(name="sales", wrapup_time=9))
    assert (await store.load_queues())["sales"].wrapup_time == 5, "the second create changed nothing"


async def test_create_queue_without_the_fence_is_refused() -> None:
    kv = MemoryKv(time.monotonic)
    store = QueueStore(kv, "/t")
    fence = Fence(LEADER_KEY, await kv.put(LEADER_KEY, b"me"))
    await kv.delete(LEADER_KEY)
    with pytest.raises(FenceLost):
        await store.create_queue(fence, QueueConfig(name="sales"))
    assert await store.load_queues() == {}

"""MemoryKv: the KvPort contract suite (shared with real etcd) plus fake-clock specifics."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator

import pytest

from coordinator.store.kv import KvError, KvPort, KvUnavailable, Put, WatchEvent
from coordinator.store.memory_kv import MemoryKv
from tests.integration.coordinator import test_kv_contract as _contract

# The contract suite's tests, collected here too against the MemoryKv `kv` fixture below.
# Real-time lease expiry (2 s) stays in the integration run; the fake-clock version is below.
_REAL_TIME_ONLY = {"test_an_unrefreshed_lease_expires_and_its_keys_are_deleted"}
globals().update(
    {name: fn for name, fn in vars(_contract).items() if name.startswith("test_") and name not in _REAL_TIME_ONLY}
)


@pytest.fixture
async def kv() -> AsyncIterator[KvPort]:
    """MemoryKv on the real clock, as in the contract suite."""
    store = MemoryKv(now=time.monotonic, reap_interval=0.05)
    yield store
    await store.close()


@pytest.fixture
def ns() -> bytes:
    """A key prefix unique to the test."""
    return f"/t/{uuid.uuid4().hex[:12]}/".encode()


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def now(self) -> float:
        return self.t


async def test_leases_expire_exactly_at_ttl_on_the_injected_clock() -> None:
    clock = Clock()
    kv = MemoryKv(now=clock.now)
    lease, _ = await kv.lease_grant(3)
    await kv.put(b"/k", b"v", lease)
    clock.t = 2.99
    assert await kv.get(b"/k") is not None
    clock.t = 3.0
    kv.tick()
    assert await kv.get(b"/k") is None
    assert kv.lease_ttl(lease) is None


async def test_keepalive_restarts_the_full_ttl() -> None:
    clock = Clock()
    kv = MemoryKv(now=clock.now)
    lease, _ = await kv.lease_grant(2)
    clock.t = 1.5
    assert await kv.lease_keepalive(lease) == 2
    assert kv.lease_ttl(lease) == pytest.approx(2.0)


async def test_partition_fails_every_call_and_delays_but_keeps_watch_events() -> None:
    kv = MemoryKv(now=Clock().now)
    seen: list[WatchEvent] = []

    async def watch() -> None:
        async with contextlib.aclosing(kv.watch_prefix(b"/", 0)) as events:
            async for ev in events:
                seen.append(ev)

    task = asyncio.create_task(watch())
    await asyncio.sleep(0)
    await kv.put(b"/a", b"1")
    kv.set_partitioned(True)
    with pytest.raises(KvUnavailable):
        await kv.get(b"/a")
    with pytest.raises(KvUnavailable):
        await kv.txn([], [Put(b"/b", b"2")])
    await asyncio.sleep(0.01)
    kv.set_partitioned(False)
    await kv.put(b"/c", b"3")
    await asyncio.sleep(0.01)
    assert [e.kv.key for e in seen] == [b"/a", b"/c"]
    task.cancel()


async def test_close_ends_watches_with_an_error() -> None:
    kv = MemoryKv(now=Clock().now)

    async def watch() -> None:
        async for _ in kv.watch_prefix(b"/", 0):
            pass

    task = asyncio.create_task(watch())
    await asyncio.sleep(0)
    await kv.close()
    with pytest.raises(KvError):
        await task

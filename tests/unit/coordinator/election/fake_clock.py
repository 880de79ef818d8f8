"""A manual clock for election tests: time moves only when the test advances it."""

from __future__ import annotations

import asyncio
import heapq
import itertools

from coordinator.store.memory_kv import MemoryKv


class FakeClock:
    """Implements coordinator.election.session.Clock; sleepers wake when advance() passes them."""

    def __init__(self, start: float = 1000.0) -> None:
        self.t = start
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()

    def now(self) -> float:
        """Current fake time."""
        return self.t

    async def sleep(self, seconds: float) -> None:
        """Suspend until the clock has been advanced by `seconds`."""
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self.t + seconds, next(self._seq), fut))
        await fut

    def advance(self, seconds: float) -> None:
        """Move time forward and wake every sleeper whose deadline has come."""
        self.t += seconds
        while self._sleepers and self._sleepers[0][0] <= self.t:
            _, _, fut = heapq.heappop(self._sleepers)
            if not fut.done():
                fut.set_result(None)


async def settle(rounds: int = 30) -> None:
    """Let every runnable task run until things quiesce (MemoryKv never really blocks)."""
    for _ in range(rounds):
        await asyncio.sleep(0)


class TimeLine:
    """Fake clock + MemoryKv driven together: advance time in small steps, expiring leases."""

    def __init__(self) -> None:
        self.clock = FakeClock()
        self.kv = MemoryKv(now=self.clock.now)

    async def run_for(self, seconds: float, step: float = 0.05) -> None:
        """Advance `seconds` in steps of `step`, expiring leases and letting tasks run each step."""
        end = self.clock.t + seconds
        while self.clock.t < end - 1e-9:
            self.clock.advance(min(step, end - self.clock.t))
            self.kv.tick()
            await settle()

    async def run_until(self, predicate: object, limit: float, step: float = 0.05) -> float:
        """Advance until predicate() is true; returns the fake seconds it took (AssertionError past limit)."""
        assert callable(predicate)
        start = self.clock.t
        await settle()
        while not predicate():
            if self.clock.t - start > limit:
                raise AssertionError(f"condition not met within {limit} fake seconds")
            await self.run_for(step, step)
        return self.clock.t - start

"""Session: one etcd lease kept alive in the background, and the `lost` signal.

Guarantee: `lost` is set at once when etcd says the lease is gone, and otherwise no later than
90 % of the TTL after the send time of the last keepalive etcd acknowledged (local monotonic
clock). The server extends a lease only when it processes a refresh, which is after we sent
it, so the lease cannot expire before send time + TTL: whoever acts on `lost` has the last
10 % of the TTL (0.2 s at TTL 2 s; etcd adds 0 to 0.5 s more) to stop its work before another
candidate can take the lease's keys over. The margin also covers a clock rate skew < 10 %.
Non-guarantees: a process paused (GC, SIGSTOP) past the TTL learns of the loss only when it
runs again, so leader writes must still be fenced (see election.Fence).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from types import TracebackType
from typing import Protocol

from coordinator.store.kv import KvError, KvPort, LeaseNotFound

__all__ = ["LOST_AFTER", "MIN_TTL", "Clock", "MonotonicClock", "Session", "SessionLost"]

log = logging.getLogger(__name__)

# etcd never grants less than 2 s with default raft timings (a 1 s request gets 2 s).
MIN_TTL = 2.0
# `lost` fires this fraction of the TTL after the last acknowledged send (see module doc).
LOST_AFTER = 0.9


class SessionLost(Exception):
    """The session's lease expired, was revoked, or must be assumed expired."""


class Clock(Protocol):
    """Monotonic time and sleeping; injected so tests can advance time instead of waiting."""

    def now(self) -> float:
        """Seconds on a monotonic scale."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Return after `seconds` of this clock's time."""
        ...


class MonotonicClock:
    """The real clock: time.monotonic and asyncio.sleep."""

    def now(self) -> float:
        """time.monotonic()."""
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        """asyncio.sleep(seconds)."""
        await asyncio.sleep(max(seconds, 0.0))


class Session:
    """A lease of `ttl` seconds refreshed every `keepalive_interval` (default ttl/3)."""

    def __init__(
        self,
        kv: KvPort,
        ttl: float,
        *,
        keepalive_interval: float | None = None,
        clock: Clock | None = None,
    ) -> None:
        if ttl < MIN_TTL:
            raise ValueError(f"session ttl must be >= {MIN_TTL} s (etcd's minimum lease TTL)")
        interval = ttl / 3 if keepalive_interval is None else keepalive_interval
        if not 0 < interval < ttl / 2:
            # At least two refresh chances per TTL, so one lost refresh never costs the lease.
            raise ValueError("keepalive_interval must be in (0, ttl/2)")
        self._kv = kv
        self.ttl = ttl
        self.keepalive_interval = interval
        self._clock = clock or MonotonicClock()
        self.lost = asyncio.Event()
        self.lost_reason = ""
        self._lease_id: int | None = None
        self._effective_ttl = ttl
        self._deadline = 0.0
        self._tasks: list[asyncio.Task[None]] = []
        self._closed = False

    @property
    def lease_id(self) -> int:
        """The lease this session keeps alive; RuntimeError before start()."""
        if self._lease_id is None:
            raise RuntimeError("session not started")
        return self._lease_id

    @property
    def deadline(self) -> float:
        """Clock time at which `lost` fires unless a keepalive is acknowledged before."""
        return self._deadline

    async def start(self) -> None:
        """Grant the lease and start refreshing it; KvError if the grant fails."""
        if self._lease_id is not None:
            raise RuntimeError("session already started")
        sent = self._clock.now()
        lease_id, granted = await self._kv.lease_grant(math.ceil(self.ttl))
        self._lease_id = lease_id
        # Trust the smaller of what we asked and what etcd granted: never assume a longer life.
        self._effective_ttl = min(self.ttl, float(granted)) * LOST_AFTER
        self._deadline = sent + self._effective_ttl
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._keepalive_loop(), name=f"session-keepalive-{lease_id:x}"),
            loop.create_task(self._watchdog(), name=f"session-watchdog-{lease_id:x}"),
        ]

    def _mark_lost(self, reason: str) -> None:
        if self.lost.is_set():
            return
        self.lost_reason = reason
        self.lost.set()
        if not self._closed:
            log.warning("session %x lost: %s", self._lease_id or 0, reason)
        current = asyncio.current_task()
        for task in self._tasks:
            if task is not current:
                task.cancel()

    async def _watchdog(self) -> None:
        while True:
            wait = self._deadline - self._clock.now()
            if wait <= 0:
                self._mark_lost(f"no keepalive acknowledged for {self._effective_ttl:.2f} s")
                return
            await self._clock.sleep(wait)

    async def _keepalive_loop(self) -> None:
        assert self._lease_id is not None
        retry_interval = self.keepalive_interval / 3
        pause = self.keepalive_interval
        try:
            while not self.lost.is_set():
                await self._clock.sleep(pause)
                sent = self._clock.now()
                try:
                    await self._kv.lease_keepalive(self._lease_id)
                except LeaseNotFound:
                    self._mark_lost("etcd says the lease is gone")
                    return
                except KvError as e:
                    # Keep trying, faster, until the watchdog's deadline decides.
                    log.info("keepalive of lease %x failed: %s", self._lease_id, e)
                    pause = retry_interval
                    continue
                self._deadline = max(self._deadline, sent + self._effective_ttl)
                pause = self.keepalive_interval
        except Exception:  # a bug must not silently stop the refreshes: give the lease up loudly
            log.exception("keepalive loop crashed")
            self._mark_lost("keepalive loop crashed")

    async def close(self, revoke: bool = True) -> None:
        """Stop refreshing, optionally revoke the lease (deleting its keys); sets `lost`. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._mark_lost("session closed")
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if revoke and self._lease_id is not None:
            try:
                async with asyncio.timeout(max(self.ttl, 1.0)):
                    await self._kv.lease_revoke(self._lease_id)
            except LeaseNotFound:
                pass
            except (KvError, TimeoutError) as e:
                log.warning("revoke of lease %x failed (it expires by itself): %s", self._lease_id, e)

    async def __aenter__(self) -> Session:
        await self.start()
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

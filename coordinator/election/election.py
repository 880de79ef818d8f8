"""Election: campaign / proclaim / resign / observe over KvPort, like etcd's concurrency.Election.

Each candidate puts `prefix/<lease hex>` with its session's lease (create-if-absent); the key
with the lowest create_revision is the leader. A candidate waits until every key created before
its own is deleted (resigned or lease expired). No clocks are involved here.

Fencing: the leader's key create_revision is the epoch. It only grows across leaders and is
reused by nobody. Every leader write must be a txn guarded by `Fence.compare()`
(create_revision(key) == epoch): once the key is gone (lease expired, resigned) the guard fails
in etcd itself, so a deposed leader that has not noticed yet cannot write.
Non-guarantee: being leader is only known as of the last read; act through fenced writes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator, Coroutine, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

from coordinator.election.session import Session, SessionLost
from coordinator.store.kv import (
    Compare,
    Delete,
    Get,
    KeyValue,
    KvAmbiguous,
    KvError,
    KvPort,
    Put,
    RevisionCompacted,
)

__all__ = ["Election", "Fence", "FenceLost", "LeaderInfo"]

log = logging.getLogger(__name__)
T = TypeVar("T")

_CLEANUP_TIMEOUT = 2.0


class FenceLost(Exception):
    """A fenced operation found the leader key gone or re-created: leadership is over."""


@dataclass(frozen=True)
class Fence:
    """Proof of leadership as of election: the leader key and its create_revision (the epoch)."""

    key: bytes
    revision: int

    @property
    def epoch(self) -> int:
        """The leadership epoch (== create_revision of the leader key); grows across leaders."""
        return self.revision

    def compare(self) -> Compare:
        """The guard to put in front of every leader write."""
        return Compare.create(self.key, "=", self.revision)


@dataclass(frozen=True)
class LeaderInfo:
    """Who leads: the value it proclaimed and its epoch."""

    value: bytes
    epoch: int


def _lowest(kvs: Iterable[KeyValue]) -> LeaderInfo | None:
    best: KeyValue | None = None
    for kv in kvs:
        if best is None or kv.create_revision < best.create_revision:
            best = kv
    return None if best is None else LeaderInfo(best.value, best.create_revision)


async def _until_lost(session: Session, coro: Coroutine[Any, Any, T]) -> T:
    """Run coro; cancel it and raise SessionLost as soon as the session is lost."""
    work = asyncio.ensure_future(coro)
    lost = asyncio.ensure_future(session.lost.wait())
    try:
        await asyncio.wait({work, lost}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for t in (work, lost):
            t.cancel()
        await asyncio.gather(work, lost, return_exceptions=True)
    if session.lost.is_set():
        # Even if work finished at the same moment, its result is worthless without the lease.
        raise SessionLost(session.lost_reason)
    return work.result()


class Election:
    """Leader election among the keys under `prefix` (one key per candidate session)."""

    def __init__(self, kv: KvPort, prefix: bytes) -> None:
        self._kv = kv
        self.prefix = prefix.rstrip(b"/") + b"/"

    def key_for(self, lease_id: int) -> bytes:
        """The campaign key of a session's lease."""
        return self.prefix + f"{lease_id:x}".encode()

    def _lease_of(self, key: bytes) -> int:
        if not key.startswith(self.prefix):
            raise ValueError(f"{key!r} is not a key of election {self.prefix!r}")
        return int(key[len(self.prefix) :], 16)

    async def campaign(self, session: Session, value: bytes) -> Fence:
        """Block until this session leads; returns the fence. Raises SessionLost, KvError.

        On KvError the campaign key stays (retry with the same session, or close it); on
        cancellation the key is deleted, like etcd's Campaign.
        """
        if session.lost.is_set():
            raise SessionLost(session.lost_reason)
        key = self.key_for(session.lease_id)
        try:
            return await _until_lost(session, self._campaign(session, key, value))
        except asyncio.CancelledError:
            with contextlib.suppress(KvError, TimeoutError):
                async with asyncio.timeout(_CLEANUP_TIMEOUT):
                    await self._kv.delete(key)
            raise

    async def _campaign(self, session: Session, key: bytes, value: bytes) -> Fence:
        revision = await self._create_key(session.lease_id, key, value)
        await self._wait_predecessors(revision)
        mine = await self._kv.get(key)
        if mine is None or mine.create_revision != revision:
            raise SessionLost("campaign key vanished while waiting (lease expired?)")
        return Fence(key, revision)

    async def _create_key(self, lease_id: int, key: bytes, value: bytes) -> int:
        existing: KeyValue | None = None
        while existing is None:
            try:
                result = await self._kv.txn(
                    [Compare.create(key, "=", 0)], [Put(key, value, lease_id)], [Get(key)]
                )
            except KvAmbiguous:
                # Create-if-absent is not retry-safe by itself: read back. The key name is
                # unique to our lease, so if it exists it is ours (None: not applied, retry).
                existing = await self._kv.get(key)
                continue
            if result.succeeded:
                return result.revision
            existing = result.responses[0].kvs[0]
        if existing.value != value:
            await self.proclaim(Fence(key, existing.create_revision), value)
        return existing.create_revision

    async def _wait_predecessors(self, revision: int) -> None:
        # Wait for the newest older key to go, then look again (it may have been the only one,
        # or older ones may have resigned meanwhile): etcd's waitDeletes.
        while True:
            current = await self._kv.get_prefix(self.prefix)
            older = [kv for kv in current.kvs if kv.create_revision < revision]
            if not older:
                return
            newest = max(older, key=lambda kv: kv.create_revision)
            try:
                await self._wait_deleted(newest.key, current.revision + 1)
            except RevisionCompacted:
                continue

    async def _wait_deleted(self, key: bytes, start_revision: int) -> None:
        async with contextlib.aclosing(self._kv.watch_prefix(key, start_revision)) as events:
            async for ev in events:
                # A prefix watch on "p/1a" also sees "p/1ab": match the key exactly.
                if ev.type == "delete" and ev.kv.key == key:
                    return

    async def proclaim(self, fence: Fence, value: bytes) -> None:
        """Publish a new leader value (e.g. our gRPC address); raises FenceLost."""
        result = await self._kv.txn([fence.compare()], [Put(fence.key, value, self._lease_of(fence.key))])
        if not result.succeeded:
            raise FenceLost(f"proclaim refused: {fence.key!r} is no longer at epoch {fence.epoch}")

    async def resign(self, fence: Fence) -> bool:
        """Give up leadership (delete our key if it is still ours); True if we deleted it."""
        while True:
            try:
                result = await self._kv.txn([fence.compare()], [Delete(fence.key)])
                return result.succeeded
            except KvAmbiguous:
                current = await self._kv.get(fence.key)
                if current is None or current.create_revision != fence.revision:
                    return True  # gone: our delete (or the lease's expiry) did it

    async def leader(self) -> LeaderInfo | None:
        """The current leader (lowest create_revision under the prefix), or None."""
        return _lowest((await self._kv.get_prefix(self.prefix)).kvs)

    async def observe(self, retry_backoff: float = 0.5) -> AsyncGenerator[LeaderInfo | None, None]:
        """The current leader, then every change of leader or of its value (None: no leader).

        Never ends and never raises KvError: while etcd is unreachable it retries every
        `retry_backoff` s and yields again once it knows the leader (if it changed).
        """
        last: LeaderInfo | bool | None = False  # False: nothing yielded yet
        while True:
            try:
                current = await self._kv.get_prefix(self.prefix)
            except KvError as e:
                log.info("observe: cannot read %r (%s); retrying", self.prefix, e)
                await asyncio.sleep(retry_backoff)
                continue
            keys = {kv.key: kv for kv in current.kvs}
            now = _lowest(keys.values())
            if now != last:
                yield now
                last = now
            watch = self._kv.watch_prefix(self.prefix, current.revision + 1)
            try:
                async with contextlib.aclosing(watch) as events:
                    async for ev in events:
                        if ev.type == "put":
                            keys[ev.kv.key] = ev.kv
                        else:
                            keys.pop(ev.kv.key, None)
                        now = _lowest(keys.values())
                        if now != last:
                            yield now
                            last = now
            except KvError as e:  # compaction, or a closed store: start over from a fresh read
                log.info("observe: watch of %r ended (%s); re-reading", self.prefix, e)
                await asyncio.sleep(retry_backoff)

"""MemoryKv: a working in-memory KvPort with etcd's semantics, for unit tests and local runs.

Same rules as etcd v3 (see kv.py): one revision per write request, create/mod revisions and
versions, leases that delete their keys, txn compares (a value compare on a missing key fails),
duplicate keys in one txn rejected, prefix watches from any past revision.

Time comes from the injected `now` (seconds, monotonic). Leases expire when an operation or
`tick()` observes `now() >= expiry`; a test that advances a fake clock calls `tick()` to make
expirations (and their delete events) happen. With a real clock, pass `reap_interval` to get a
background reaper. Expiry is exact (etcd adds 0 to 0.5 s).

Fault injection: while `partitioned` is True every call raises KvUnavailable (all endpoints
down) and watches deliver nothing until it is cleared.
"""

from __future__ import annotations

import asyncio
import itertools
import random
from collections.abc import AsyncGenerator, Callable, Sequence
from dataclasses import dataclass, field

from coordinator.store.kv import (
    Compare,
    Delete,
    Get,
    KeyValue,
    KvError,
    KvUnavailable,
    LeaseNotFound,
    Op,
    OpResponse,
    Put,
    RangeResult,
    TxnResult,
    WatchEvent,
)

__all__ = ["MIN_LEASE_TTL", "MemoryKv"]

# etcd's minimum TTL with default raft timings (1.5 election timeouts, rounded up).
MIN_LEASE_TTL = 2


@dataclass
class _Lease:
    ttl: int
    expiry: float
    keys: set[bytes] = field(default_factory=set)


class MemoryKv:
    """In-memory KvPort; see the module doc for what is faithful and what is not."""

    def __init__(self, now: Callable[[], float], *, reap_interval: float | None = None) -> None:
        self._now = now
        self._revision = 1  # an empty etcd store is at revision 1; the first write makes 2
        self._data: dict[bytes, KeyValue] = {}
        self._leases: dict[int, _Lease] = {}
        self._lease_ids = itertools.count(random.randrange(1 << 40, 1 << 50))
        self._history: list[WatchEvent] = []
        self._watchers: set[asyncio.Queue[WatchEvent | None]] = set()
        self._closed = False
        self._resumed = asyncio.Event()
        self._resumed.set()
        self._reap_interval = reap_interval
        self._reaper: asyncio.Task[None] | None = None
        self.partitioned = False

    # ----------------------------------------------------------------- fault injection / time
    def set_partitioned(self, down: bool) -> None:
        """Make every call fail with KvUnavailable (True) or work again (False)."""
        self.partitioned = down
        if down:
            self._resumed.clear()
        else:
            self._resumed.set()

    @property
    def revision(self) -> int:
        """The current store revision."""
        return self._revision

    def tick(self) -> None:
        """Expire every lease whose TTL has run out (deleting its keys, one revision per lease)."""
        now = self._now()
        for lease_id in sorted(lid for lid, ls in self._leases.items() if ls.expiry <= now):
            self._drop_lease(lease_id)

    def _enter(self) -> None:
        if self._closed:
            raise KvError("MemoryKv is closed")
        if self.partitioned:
            raise KvUnavailable("MemoryKv is partitioned")
        if self._reap_interval is not None and self._reaper is None:
            self._reaper = asyncio.get_running_loop().create_task(self._reap())
        self.tick()

    async def _reap(self) -> None:
        assert self._reap_interval is not None
        while not self._closed:
            await asyncio.sleep(self._reap_interval)
            self.tick()

    # ----------------------------------------------------------------------------- reads
    async def get(self, key: bytes) -> KeyValue | None:
        """The key, or None when absent."""
        self._enter()
        return self._data.get(key)

    async def get_prefix(self, prefix: bytes) -> RangeResult:
        """Every key starting with prefix, sorted by key."""
        self._enter()
        return RangeResult(self._range(prefix, True), self._revision)

    def _range(self, key: bytes, prefix: bool) -> tuple[KeyValue, ...]:
        if not prefix:
            kv = self._data.get(key)
            return (kv,) if kv is not None else ()
        return tuple(self._data[k] for k in sorted(self._data) if k.startswith(key))

    # ---------------------------------------------------------------------------- writes
    async def put(self, key: bytes, value: bytes, lease: int = 0) -> int:
        """Set a key; returns the new revision."""
        return (await self.txn((), (Put(key, value, lease),))).revision

    async def delete(self, key: bytes, prefix: bool = False) -> int:
        """Delete a key or prefix; returns the number of keys deleted."""
        return (await self.txn((), (Delete(key, prefix),))).responses[0].deleted

    async def txn(
        self, compares: Sequence[Compare], success: Sequence[Op], failure: Sequence[Op] = ()
    ) -> TxnResult:
        """Atomically run success if every compare holds, else failure."""
        self._enter()
        self._check_duplicates(success)
        self._check_duplicates(failure)
        ok = all(self._holds(c) for c in compares)
        ops = success if ok else failure
        for op in ops:
            if isinstance(op, Put) and op.lease and op.lease not in self._leases:
                raise LeaseNotFound("requested lease not found")
        writes = any(self._writes(op) for op in ops)
        rev = self._revision + 1 if writes else self._revision
        events: list[WatchEvent] = []
        responses = tuple(self._apply(op, rev, events) for op in ops)
        if events:
            self._revision = rev
            self._publish(events)
        return TxnResult(ok, self._revision, responses)

    @staticmethod
    def _check_duplicates(ops: Sequence[Op]) -> None:
        seen: set[bytes] = set()
        for op in ops:
            if not op.key:
                raise KvError("empty key")
            if isinstance(op, Put):
                if op.key in seen:
                    raise KvError("duplicate key given in txn request")
                seen.add(op.key)

    def _writes(self, op: Op) -> bool:
        if isinstance(op, Put):
            return True
        if isinstance(op, Delete):
            return bool(self._range(op.key, op.prefix))
        return False

    def _holds(self, c: Compare) -> bool:
        kv = self._data.get(c.key)
        if c.target == "value":
            if kv is None:
                return False  # etcd: a value compare on a missing key always fails
            left: int | bytes = kv.value
        else:
            if kv is None:
                kv = KeyValue(c.key, b"", 0, 0, 0, 0)
            left = {"create": kv.create_revision, "mod": kv.mod_revision, "version": kv.version}[
                c.target
            ]
        right = c.operand
        if c.op == "=":
            return left == right
        if c.op == "!=":
            return left != right
        if c.op == ">":
            return left > right  # type: ignore[operator]
        return left < right  # type: ignore[operator]

    def _apply(self, op: Op, rev: int, events: list[WatchEvent]) -> OpResponse:
        if isinstance(op, Get):
            return OpResponse(kvs=self._range(op.key, op.prefix))
        if isinstance(op, Delete):
            doomed = self._range(op.key, op.prefix)
            for kv in doomed:
                self._remove(kv.key, rev, events)
            return OpResponse(deleted=len(doomed))
        old = self._data.get(op.key)
        if old is not None and old.lease and old.lease in self._leases:
            self._leases[old.lease].keys.discard(op.key)
        kv = KeyValue(
            key=op.key,
            value=op.value,
            create_revision=old.create_revision if old else rev,
            mod_revision=rev,
            version=old.version + 1 if old else 1,
            lease=op.lease,
        )
        self._data[op.key] = kv
        if op.lease:
            self._leases[op.lease].keys.add(op.key)
        events.append(WatchEvent("put", kv))
        return OpResponse()

    def _remove(self, key: bytes, rev: int, events: list[WatchEvent]) -> None:
        kv = self._data.pop(key)
        if kv.lease and kv.lease in self._leases:
            self._leases[kv.lease].keys.discard(key)
        events.append(WatchEvent("delete", KeyValue(key, b"", 0, rev, 0, 0)))

    # ---------------------------------------------------------------------------- leases
    async def lease_grant(self, ttl: int) -> tuple[int, int]:
        """Grant a lease of max(ttl, 2) seconds."""
        self._enter()
        granted = max(int(ttl), MIN_LEASE_TTL)
        lease_id = next(self._lease_ids)
        self._leases[lease_id] = _Lease(granted, self._now() + granted)
        return lease_id, granted

    async def lease_keepalive(self, lease_id: int) -> int:
        """Refresh the lease to its full TTL; raises LeaseNotFound once it is gone."""
        self._enter()
        lease = self._leases.get(lease_id)
        if lease is None:
            raise LeaseNotFound(f"lease {lease_id:x} not found")
        lease.expiry = self._now() + lease.ttl
        return lease.ttl

    async def lease_revoke(self, lease_id: int) -> None:
        """Revoke the lease and delete its keys."""
        self._enter()
        if lease_id not in self._leases:
            raise LeaseNotFound(f"lease {lease_id:x} not found")
        self._drop_lease(lease_id)

    def lease_ttl(self, lease_id: int) -> float | None:
        """Seconds left on a lease (test helper; not part of KvPort)."""
        lease = self._leases.get(lease_id)
        return None if lease is None else lease.expiry - self._now()

    def _drop_lease(self, lease_id: int) -> None:
        lease = self._leases.pop(lease_id)
        if not lease.keys:
            return
        rev = self._revision + 1
        events: list[WatchEvent] = []
        for key in sorted(lease.keys):
            self._remove(key, rev, events)
        self._revision = rev
        self._publish(events)

    # ----------------------------------------------------------------------------- watch
    def _publish(self, events: list[WatchEvent]) -> None:
        self._history.extend(events)
        for q in self._watchers:
            for ev in events:
                q.put_nowait(ev)

    async def watch_prefix(
        self, prefix: bytes, start_revision: int = 0
    ) -> AsyncGenerator[WatchEvent, None]:
        """Events under prefix from start_revision (0 = after the current revision), in order."""
        self._enter()
        queue: asyncio.Queue[WatchEvent | None] = asyncio.Queue()
        # Register and snapshot the history in one synchronous step: no event can fall between.
        self._watchers.add(queue)
        backlog = [ev for ev in self._history if start_revision and ev.kv.mod_revision >= start_revision]
        try:
            for ev in backlog:
                if ev.kv.key.startswith(prefix):
                    yield ev
            while True:
                item = await queue.get()
                if item is None:
                    raise KvError("MemoryKv closed")
                if not self._resumed.is_set():
                    await self._resumed.wait()  # a partition delays delivery, never loses events
                if item.kv.key.startswith(prefix) and item.kv.mod_revision >= start_revision:
                    yield item
        finally:
            self._watchers.discard(queue)

    async def close(self) -> None:
        """End watches and the reaper; later calls raise KvError."""
        self._closed = True
        for q in self._watchers:
            q.put_nowait(None)
        if self._reaper is not None:
            self._reaper.cancel()
            await asyncio.gather(self._reaper, return_exceptions=True)

    def snapshot(self) -> dict[bytes, KeyValue]:
        """A copy of every stored key (test helper)."""
        return dict(self._data)

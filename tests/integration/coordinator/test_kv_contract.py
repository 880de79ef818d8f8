"""The KvPort contract, run against MemoryKv and real etcd 3.4 (parametrized `kv` fixture).

If a test passes on one and fails on the other, the fake has drifted from etcd.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

import pytest

from coordinator.store.kv import (
    Compare,
    Delete,
    Get,
    KvError,
    KvPort,
    LeaseNotFound,
    Put,
    WatchEvent,
)

pytestmark = pytest.mark.integration


async def _collect(kv: KvPort, prefix: bytes, start: int, n: int, timeout: float = 5.0) -> list[WatchEvent]:
    out: list[WatchEvent] = []
    async with asyncio.timeout(timeout), contextlib.aclosing(kv.watch_prefix(prefix, start)) as events:
        async for ev in events:
            out.append(ev)
            if len(out) == n:
                break
    return out


async def test_put_get_revisions_and_versions(kv: KvPort, ns: bytes) -> None:
    assert await kv.get(ns + b"missing") is None
    r1 = await kv.put(ns + b"a", b"1")
    first = await kv.get(ns + b"a")
    assert first is not None
    assert (first.value, first.create_revision, first.mod_revision, first.version, first.lease) == (b"1", r1, r1, 1, 0)
    r2 = await kv.put(ns + b"a", b"2")
    assert r2 == r1 + 1
    second = await kv.get(ns + b"a")
    assert second is not None
    assert (second.value, second.create_revision, second.mod_revision, second.version) == (b"2", r1, r2, 2)


async def test_get_prefix_is_sorted_exact_and_carries_the_revision(kv: KvPort, ns: bytes) -> None:
    for k in (b"p/c", b"p/a", b"p/b", b"pq", b"p"):
        rev = await kv.put(ns + k, k)
    got = await kv.get_prefix(ns + b"p/")
    assert [x.key for x in got.kvs] == [ns + b"p/a", ns + b"p/b", ns + b"p/c"]
    assert got.revision == rev
    assert (await kv.get_prefix(ns + b"nothing/")).kvs == ()


async def test_delete_counts_and_no_op_deletes_do_not_bump_the_revision(kv: KvPort, ns: bytes) -> None:
    await kv.put(ns + b"d/1", b"x")
    await kv.put(ns + b"d/2", b"x")
    r = await kv.put(ns + b"e", b"x")
    assert await kv.delete(ns + b"missing") == 0
    assert await kv.put(ns + b"f", b"x") == r + 1
    assert await kv.delete(ns + b"d/", prefix=True) == 2
    assert await kv.delete(ns + b"e") == 1
    assert await kv.delete(ns + b"e") == 0
    assert (await kv.get_prefix(ns)).kvs[0].key == ns + b"f"
    recreated_rev = await kv.put(ns + b"e", b"again")
    again = await kv.get(ns + b"e")
    assert again is not None and again.create_revision == recreated_rev and again.version == 1


async def test_txn_create_if_absent_and_one_revision_per_txn(kv: KvPort, ns: bytes) -> None:
    k = ns + b"leader"
    won = await kv.txn([Compare.create(k, "=", 0)], [Put(k, b"me"), Put(ns + b"side", b"s")], [Get(k)])
    assert won.succeeded and won.responses[0].kvs == ()
    a, b = await kv.get(k), await kv.get(ns + b"side")
    assert a is not None and b is not None
    assert a.mod_revision == b.mod_revision == won.revision  # one revision for the whole txn
    lost = await kv.txn([Compare.create(k, "=", 0)], [Put(k, b"other")], [Get(k)])
    assert not lost.succeeded
    assert lost.revision == won.revision  # a read-only branch does not write
    assert lost.responses[0].kvs == (a,)


async def test_txn_compare_targets_and_operators(kv: KvPort, ns: bytes) -> None:
    k = ns + b"c"
    rev = await kv.put(k, b"m")
    await kv.put(k, b"m")  # version 2
    cases = [
        (Compare.value(k, "=", b"m"), True),
        (Compare.value(k, "!=", b"m"), False),
        (Compare.value(k, ">", b"a"), True),
        (Compare.value(k, "<", b"a"), False),
        (Compare.version(k, "=", 2), True),
        (Compare.version(k, ">", 2), False),
        (Compare.create(k, "=", rev), True),
        (Compare.create(k, "<", rev), False),
        (Compare.mod(k, ">", rev), True),
        (Compare.mod(k, "!=", rev + 1), False),
        # a missing key: revisions and version are 0, any value compare fails
        (Compare.create(ns + b"none", "=", 0), True),
        (Compare.version(ns + b"none", "<", 1), True),
        (Compare.value(ns + b"none", "!=", b"x"), False),
        (Compare.value(ns + b"none", "=", b""), False),
    ]
    for cmp, expected in cases:
        assert (await kv.txn([cmp], [])).succeeded is expected, cmp
    both = await kv.txn([cases[0][0], cases[1][0]], [Put(ns + b"never", b"x")])
    assert not both.succeeded and await kv.get(ns + b"never") is None


async def test_txn_delete_and_get_responses(kv: KvPort, ns: bytes) -> None:
    await kv.put(ns + b"x/1", b"1")
    await kv.put(ns + b"x/2", b"2")
    r = await kv.txn([], [Get(ns + b"x/", prefix=True), Delete(ns + b"x/", prefix=True), Get(ns + b"x/1")])
    assert r.succeeded
    assert [kv.value for kv in r.responses[0].kvs] == [b"1", b"2"]
    assert r.responses[1].deleted == 2
    assert r.responses[2].kvs == ()


async def test_txn_with_a_duplicate_put_is_refused(kv: KvPort, ns: bytes) -> None:
    with pytest.raises(KvError):
        await kv.txn([], [Put(ns + b"k", b"1"), Put(ns + b"k", b"2")])
    assert await kv.get(ns + b"k") is None


async def test_leases_grant_keepalive_revoke(kv: KvPort, ns: bytes) -> None:
    lease, ttl = await kv.lease_grant(1)
    assert ttl == 2  # etcd's minimum
    assert await kv.lease_keepalive(lease) == 2
    await kv.put(ns + b"owned/1", b"x", lease)
    await kv.txn([], [Put(ns + b"owned/2", b"y", lease)])
    await kv.put(ns + b"detached", b"x", lease)
    await kv.put(ns + b"detached", b"y")  # a put without lease detaches the key
    owned = await kv.get(ns + b"owned/1")
    assert owned is not None and owned.lease == lease
    await kv.lease_revoke(lease)
    assert (await kv.get_prefix(ns + b"owned/")).kvs == ()
    assert await kv.get(ns + b"detached") is not None
    with pytest.raises(LeaseNotFound):
        await kv.lease_keepalive(lease)
    with pytest.raises(LeaseNotFound):
        await kv.lease_revoke(lease)
    with pytest.raises(LeaseNotFound):
        await kv.put(ns + b"z", b"x", lease)
    with pytest.raises(LeaseNotFound):
        await kv.txn([], [Put(ns + b"z", b"x", lease)])


async def test_an_unrefreshed_lease_expires_and_its_keys_are_deleted(kv: KvPort, ns: bytes) -> None:
    lease, _ = await kv.lease_grant(2)
    rev = await kv.put(ns + b"ephemeral", b"x", lease)
    t0 = time.monotonic()
    events = await _collect(kv, ns, rev + 1, 1, timeout=2 + 3.0)
    took = time.monotonic() - t0
    assert events[0].type == "delete" and events[0].kv.key == ns + b"ephemeral"
    assert 2 - 0.2 <= took <= 2 + 1.5  # etcd: TTL + 0..0.5 s
    assert await kv.get(ns + b"ephemeral") is None
    with pytest.raises(LeaseNotFound):
        await kv.lease_keepalive(lease)


async def test_watch_replays_history_then_follows_live(kv: KvPort, ns: bytes) -> None:
    r1 = await kv.put(ns + b"w/a", b"1")
    await kv.put(ns + b"wx", b"not under w/")
    await kv.put(ns + b"w/b", b"2")
    await kv.delete(ns + b"w/a")

    async def later() -> None:
        await asyncio.sleep(0.1)
        await kv.txn([], [Put(ns + b"w/c", b"3"), Put(ns + b"w/d", b"4")])

    writer = asyncio.create_task(later())
    events = await _collect(kv, ns + b"w/", r1, 5)
    await writer
    assert [(e.type, e.kv.key[len(ns):], e.kv.value) for e in events] == [
        ("put", b"w/a", b"1"),
        ("put", b"w/b", b"2"),
        ("delete", b"w/a", b""),
        ("put", b"w/c", b"3"),
        ("put", b"w/d", b"4"),
    ]
    revs = [e.kv.mod_revision for e in events]
    assert revs == sorted(revs) and revs[0] == r1 and revs[3] == revs[4]
    assert events[2].kv.create_revision == 0 and events[2].kv.version == 0


async def test_watch_from_now_sees_only_new_events(kv: KvPort, ns: bytes) -> None:
    await kv.put(ns + b"old", b"x")

    async def later() -> None:
        await asyncio.sleep(0.2)
        await kv.put(ns + b"new", b"y")

    writer = asyncio.create_task(later())
    events = await _collect(kv, ns, 0, 1)
    await writer
    assert events[0].kv.key == ns + b"new"

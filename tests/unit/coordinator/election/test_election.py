"""Election on MemoryKv + fake clock: order, takeover on lease expiry, fencing, observe, resign."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence

import pytest

from coordinator.election import Election, Fence, FenceLost, LeaderInfo, Session, SessionLost, fenced_txn
from coordinator.store.kv import Compare, KvAmbiguous, Op, Put, TxnResult
from coordinator.store.memory_kv import MemoryKv
from tests.unit.coordinator.election.fake_clock import TimeLine, settle

PREFIX = b"/clusterq/election"


async def _session(tl: TimeLine, ttl: float = 2.0) -> Session:
    s = Session(tl.kv, ttl, clock=tl.clock)
    await s.start()
    return s


async def test_lowest_create_revision_wins_and_successors_follow_in_order(tl: TimeLine) -> None:
    election = Election(tl.kv, PREFIX)
    a, b, c = [await _session(tl) for _ in range(3)]
    fa = await election.campaign(a, b"a")
    tb = asyncio.create_task(election.campaign(b, b"b"))
    tc = asyncio.create_task(election.campaign(c, b"c"))
    await tl.run_for(1.0)
    assert not tb.done() and not tc.done()
    assert await election.leader() == LeaderInfo(b"a", fa.epoch)

    assert await election.resign(fa)
    await tl.run_until(tb.done, limit=0.5)
    fb = tb.result()
    assert fb.epoch > fa.epoch
    assert not tc.done()
    assert await election.leader() == LeaderInfo(b"b", fb.epoch)

    assert await election.resign(fb)
    fc = await asyncio.wait_for(tc, 1.0)
    assert fc.epoch > fb.epoch
    for s in (a, b, c):
        await s.close()


async def test_a_later_candidate_does_not_jump_the_queue_when_a_middle_one_leaves(tl: TimeLine) -> None:
    election = Election(tl.kv, PREFIX)
    a, b, c = [await _session(tl) for _ in range(3)]
    fa = await election.campaign(a, b"a")
    tb = asyncio.create_task(election.campaign(b, b"b"))
    await settle()
    tc = asyncio.create_task(election.campaign(c, b"c"))
    await settle()
    tb.cancel()  # b gives up: its key is deleted, c must still wait for a
    await asyncio.gather(tb, return_exceptions=True)
    await tl.run_for(0.5)
    assert not tc.done()
    await election.resign(fa)
    fc = await asyncio.wait_for(tc, 1.0)
    assert (await election.leader()) == LeaderInfo(b"c", fc.epoch)
    for s in (a, b, c):
        await s.close()


async def test_takeover_when_the_leader_lease_expires_and_the_old_fence_is_refused(tl: TimeLine) -> None:
    election = Election(tl.kv, PREFIX)
    a, b = await _session(tl), await _session(tl)
    fa = await election.campaign(a, b"a")
    assert (await fenced_txn(tl.kv, fa, [Put(b"/state", b"from-a")])).succeeded
    tb = asyncio.create_task(election.campaign(b, b"b"))
    await tl.run_for(0.5)
    await a.close(revoke=False)  # a "dies": no more keepalives, no revoke
    took = await tl.run_until(tb.done, limit=5.0)
    assert took <= 2.0 + 0.1  # the TTL (MemoryKv expires exactly on time)
    fb = tb.result()
    assert fb.epoch > fa.epoch

    before = tl.kv.snapshot()
    with pytest.raises(FenceLost):
        await fenced_txn(tl.kv, fa, [Put(b"/state", b"stale-a")])
    with pytest.raises(FenceLost):
        await election.proclaim(fa, b"stale-a")
    assert tl.kv.snapshot() == before, "a refused fenced write changed the store"
    assert (await fenced_txn(tl.kv, fb, [Put(b"/state", b"from-b")])).succeeded
    state = await tl.kv.get(b"/state")
    assert state is not None and state.value == b"from-b"
    await b.close()


async def test_campaign_raises_session_lost_when_the_lease_goes_while_waiting(tl: TimeLine) -> None:
    election = Election(tl.kv, PREFIX)
    a, b = await _session(tl), await _session(tl)
    await election.campaign(a, b"a")
    tb = asyncio.create_task(election.campaign(b, b"b"))
    await tl.run_for(0.3)
    tl.kv.set_partitioned(True)  # both stop refreshing; b's session must notice
    await tl.run_until(tb.done, limit=3.0)
    with pytest.raises(SessionLost):
        tb.result()
    tl.kv.set_partitioned(False)
    await a.close()
    await b.close()


async def test_cancelled_campaign_deletes_its_key(tl: TimeLine) -> None:
    election = Election(tl.kv, PREFIX)
    a, b = await _session(tl), await _session(tl)
    await election.campaign(a, b"a")
    tb = asyncio.create_task(election.campaign(b, b"b"))
    await settle()
    assert await tl.kv.get(election.key_for(b.lease_id)) is not None
    tb.cancel()
    await asyncio.gather(tb, return_exceptions=True)
    assert await tl.kv.get(election.key_for(b.lease_id)) is None
    await a.close()
    await b.close()


async def test_campaign_again_with_the_same_session_keeps_the_epoch_and_updates_the_value(tl: TimeLine) -> None:
    election = Election(tl.kv, PREFIX)
    a = await _session(tl)
    first = await election.campaign(a, b"addr-1")
    again = await election.campaign(a, b"addr-2")
    assert again == first
    assert await election.leader() == LeaderInfo(b"addr-2", first.epoch)
    await a.close()


async def test_proclaim_updates_the_value_and_keeps_the_lease(tl: TimeLine) -> None:
    election = Election(tl.kv, PREFIX)
    a = await _session(tl)
    fence = await election.campaign(a, b"old")
    await election.proclaim(fence, b"10.0.0.1:5000")
    kv = await tl.kv.get(fence.key)
    assert kv is not None and kv.value == b"10.0.0.1:5000" and kv.lease == a.lease_id
    assert kv.create_revision == fence.epoch
    await a.close()
    assert await election.leader() is None


async def test_observe_reports_leaders_and_values_in_order(tl: TimeLine) -> None:
    election = Election(tl.kv, PREFIX)
    seen: list[LeaderInfo | None] = []

    async def watch() -> None:
        async with contextlib.aclosing(election.observe()) as it:
            async for info in it:
                seen.append(info)

    watcher = asyncio.create_task(watch())
    await settle()
    a, b = await _session(tl), await _session(tl)
    fa = await election.campaign(a, b"a")
    tb = asyncio.create_task(election.campaign(b, b"b"))
    await settle()
    await election.proclaim(fa, b"a2")
    await settle()
    await election.resign(fa)
    fb = await asyncio.wait_for(tb, 1.0)
    await settle()
    await election.resign(fb)
    await settle()
    watcher.cancel()
    await asyncio.gather(watcher, return_exceptions=True)
    assert seen == [
        None,
        LeaderInfo(b"a", fa.epoch),
        LeaderInfo(b"a2", fa.epoch),
        LeaderInfo(b"b", fb.epoch),
        None,
    ]
    await a.close()
    await b.close()


class _LosesTheFirstTxnReply(MemoryKv):
    """Applies a txn, then reports KvAmbiguous once (a reply lost in transit)."""

    armed = True

    async def txn(self, compares: Sequence[Compare], success: Sequence[Op], failure: Sequence[Op] = ()) -> TxnResult:
        result = await super().txn(compares, success, failure)
        if self.armed:
            self.armed = False
            raise KvAmbiguous("reply lost")
        return result


async def test_ambiguous_create_is_resolved_by_reading_back() -> None:
    tl = TimeLine()
    tl.kv = _LosesTheFirstTxnReply(now=tl.clock.now)
    election = Election(tl.kv, PREFIX)
    a = await _session(tl)
    fence = await election.campaign(a, b"a")
    kv = await tl.kv.get(fence.key)
    assert kv is not None and kv.create_revision == fence.epoch and kv.lease == a.lease_id
    await a.close()


async def test_ambiguous_resign_is_resolved_by_reading_back() -> None:
    tl = TimeLine()
    kv = _LosesTheFirstTxnReply(now=tl.clock.now)
    tl.kv = kv
    election = Election(kv, PREFIX)
    a = await _session(tl)
    kv.armed = False
    fence = await election.campaign(a, b"a")
    kv.armed = True
    assert await election.resign(fence)
    assert await election.leader() is None
    await a.close()


async def test_resign_with_a_stale_fence_is_a_no_op(tl: TimeLine) -> None:
    election = Election(tl.kv, PREFIX)
    a = await _session(tl)
    fence = await election.campaign(a, b"a")
    stale = Fence(fence.key, fence.revision - 1)
    assert not await election.resign(stale)
    assert await election.leader() == LeaderInfo(b"a", fence.epoch)
    await a.close()


async def test_proclaim_refuses_a_foreign_key(tl: TimeLine) -> None:
    election = Election(tl.kv, PREFIX)
    with pytest.raises(ValueError):
        await election.proclaim(Fence(b"/elsewhere/1", 5), b"x")

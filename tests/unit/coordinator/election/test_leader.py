"""run_elected + fenced_txn on MemoryKv + fake clock: the leader TaskGroup lifecycle."""

from __future__ import annotations

import asyncio

import pytest

from coordinator.election import (
    Election,
    ElectionTiming,
    Fence,
    FenceLost,
    LeaderInfo,
    LeadershipLost,
    Session,
    fenced_txn,
    run_elected,
)
from coordinator.store.kv import Compare, Get, Put
from tests.unit.coordinator.election.fake_clock import TimeLine, settle

PREFIX = b"/clusterq/election"


class Recorder:
    """A lead() that runs until cancelled and records what happened to it."""

    def __init__(self) -> None:
        self.fences: list[Fence] = []
        self.cancelled: list[int] = []
        self.states: list[tuple[bool, int]] = []

    async def lead(self, fence: Fence) -> None:
        self.fences.append(fence)
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.cancelled.append(fence.epoch)
            raise

    def on_state(self, leading: bool, epoch: int) -> None:
        self.states.append((leading, epoch))


def _start(tl: TimeLine, rec: Recorder, value: bytes, **kw: object) -> asyncio.Task[None]:
    return asyncio.create_task(
        run_elected(tl.kv, PREFIX, value, 2.0, rec.lead, rec.on_state, clock=tl.clock, **kw)  # type: ignore[arg-type]
    )


async def test_lead_is_cancelled_when_the_session_is_lost_then_leadership_is_regained(tl: TimeLine) -> None:
    rec = Recorder()
    task = _start(tl, rec, b"me")
    await tl.run_until(lambda: bool(rec.fences), limit=1.0)
    first = rec.fences[0]
    assert rec.states == [(True, first.epoch)]

    lease = tl.kv.snapshot()[first.key].lease
    tl.kv.set_partitioned(True)
    cancelled_while_lease_alive = None
    while not rec.cancelled:
        await tl.run_for(0.01, 0.01)
        if rec.cancelled:
            cancelled_while_lease_alive = tl.kv.lease_ttl(lease) is not None
        assert tl.clock.t < 1100
    assert cancelled_while_lease_alive, "leader work must stop before the server-side lease expires"
    assert rec.cancelled == [first.epoch]
    assert rec.states[-1] == (False, first.epoch)

    tl.kv.set_partitioned(False)
    await tl.run_until(lambda: len(rec.fences) == 2, limit=5.0)
    assert rec.fences[1].epoch > first.epoch
    assert rec.states[-1] == (True, rec.fences[1].epoch)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def test_graceful_shutdown_cancels_work_resigns_and_the_standby_takes_over_at_once(tl: TimeLine) -> None:
    ra, rb = Recorder(), Recorder()
    ta = _start(tl, ra, b"a")
    await tl.run_until(lambda: bool(ra.fences), limit=1.0)
    tb = _start(tl, rb, b"b")
    await tl.run_for(3.0)
    assert not rb.fences, "two leaders at once"
    ta.cancel()
    await asyncio.gather(ta, return_exceptions=True)
    assert ra.cancelled == [ra.fences[0].epoch]
    assert ra.states == [(True, ra.fences[0].epoch), (False, ra.fences[0].epoch)]
    await settle()  # no clock advance needed: resign + revoke wake the standby's watch
    assert rb.fences and rb.fences[0].epoch > ra.fences[0].epoch
    election = Election(tl.kv, PREFIX)
    assert await election.leader() == LeaderInfo(b"b", rb.fences[0].epoch)
    tb.cancel()
    await asyncio.gather(tb, return_exceptions=True)
    assert await election.leader() is None
    assert tl.kv.snapshot() == {}


async def test_only_one_lead_runs_while_replicas_fail_over_repeatedly(tl: TimeLine) -> None:
    running: set[bytes] = set()
    overlaps: list[set[bytes]] = []
    epochs: list[int] = []

    def make_lead(name: bytes):  # type: ignore[no-untyped-def]
        async def lead(fence: Fence) -> None:
            running.add(name)
            if len(running) > 1:
                overlaps.append(set(running))
            epochs.append(fence.epoch)
            try:
                await tl.clock.sleep(1.0)  # lead for one fake second, then step down
            finally:
                running.discard(name)
            raise FenceLost("simulated loss")  # treated like a lost session: rejoin

        return lead

    tasks = [
        asyncio.create_task(run_elected(tl.kv, PREFIX, n, 2.0, make_lead(n), clock=tl.clock))
        for n in (b"a", b"b", b"c")
    ]
    await tl.run_for(15.0)
    assert not overlaps
    assert len(epochs) >= 5
    assert epochs == sorted(epochs) and len(set(epochs)) == len(epochs)
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def test_run_elected_returns_after_lead_returns_and_resigns(tl: TimeLine) -> None:
    async def lead(fence: Fence) -> None:
        await fenced_txn(tl.kv, fence, [Put(b"/done", b"1")])

    await asyncio.wait_for(run_elected(tl.kv, PREFIX, b"x", 2.0, lead, clock=tl.clock), 1.0)
    assert await Election(tl.kv, PREFIX).leader() is None
    assert (await tl.kv.get(b"/done")) is not None


async def test_an_error_in_lead_propagates_after_cleanup(tl: TimeLine) -> None:
    async def lead(fence: Fence) -> None:
        raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        await asyncio.wait_for(run_elected(tl.kv, PREFIX, b"x", 2.0, lead, clock=tl.clock), 1.0)
    assert tl.kv.snapshot() == {}


async def test_rejoin_false_raises_leadership_lost(tl: TimeLine) -> None:
    rec = Recorder()
    task = _start(tl, rec, b"me", rejoin=False)
    await tl.run_until(lambda: bool(rec.fences), limit=1.0)
    tl.kv.set_partitioned(True)
    await tl.run_until(task.done, limit=5.0)
    with pytest.raises(LeadershipLost):
        task.result()
    assert rec.cancelled == [rec.fences[0].epoch]


@pytest.mark.parametrize(
    "kwargs", [{"ttl": 1.0}, {"ttl": 2.0, "keepalive_interval": 1.0}, {"ttl": 3.0, "retry_backoff": -1.0}]
)
async def test_bad_timing_is_rejected_before_any_io(tl: TimeLine, kwargs: dict[str, float]) -> None:
    async def lead(fence: Fence) -> None:
        raise AssertionError("must not run")

    tl.kv.set_partitioned(True)  # any I/O would raise KvUnavailable instead of ValueError
    ttl = kwargs.pop("ttl")
    with pytest.raises(ValueError):
        await run_elected(tl.kv, PREFIX, b"x", ttl, lead, clock=tl.clock, **kwargs)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        ElectionTiming(ttl, **kwargs)


async def test_fenced_txn_always_guards_with_the_fence(tl: TimeLine) -> None:
    election = Election(tl.kv, PREFIX)
    s = Session(tl.kv, 2.0, clock=tl.clock)
    await s.start()
    fence = await election.campaign(s, b"me")
    await tl.kv.put(b"/cfg", b"v1")

    ok = await fenced_txn(tl.kv, fence, [Put(b"/cfg", b"v2")], [Compare.value(b"/cfg", "=", b"v1")])
    assert ok.succeeded
    # An extra compare failing with the fence intact: succeeded=False, caller's failure responses only.
    miss = await fenced_txn(
        tl.kv, fence, [Put(b"/cfg", b"v3")], [Compare.value(b"/cfg", "=", b"v1")], [Get(b"/cfg")]
    )
    assert not miss.succeeded and len(miss.responses) == 1
    assert miss.responses[0].kvs[0].value == b"v2"

    await election.resign(fence)
    with pytest.raises(FenceLost):
        await fenced_txn(tl.kv, fence, [Put(b"/cfg", b"v4")], [Compare.value(b"/cfg", "=", b"v2")])
    cfg = await tl.kv.get(b"/cfg")
    assert cfg is not None and cfg.value == b"v2"
    await s.close()


async def test_an_error_raised_by_lead_while_stepping_down_does_not_crash_the_replica(tl: TimeLine) -> None:
    terms: list[int] = []

    async def lead(fence: Fence) -> None:
        terms.append(fence.epoch)
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            raise RuntimeError("cleanup failed") from None

    task = asyncio.create_task(run_elected(tl.kv, PREFIX, b"x", 2.0, lead, clock=tl.clock))
    await tl.run_until(lambda: len(terms) == 1, limit=1.0)
    tl.kv.set_partitioned(True)
    await tl.run_for(2.5)
    tl.kv.set_partitioned(False)
    await tl.run_until(lambda: len(terms) == 2, limit=5.0)
    assert not task.done()
    assert terms[1] > terms[0]
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)

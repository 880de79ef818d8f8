"""Session: lease refresh, loss detection (missed keepalives / lease gone), close."""

from __future__ import annotations

import pytest

from coordinator.election.session import LOST_AFTER, Session
from tests.unit.coordinator.election.fake_clock import TimeLine


async def test_keeps_the_lease_alive_for_many_ttls(tl: TimeLine) -> None:
    session = Session(tl.kv, 2.0, clock=tl.clock)
    await session.start()
    await tl.run_for(20.0)
    assert not session.lost.is_set()
    ttl_left = tl.kv.lease_ttl(session.lease_id)
    assert ttl_left is not None and ttl_left > 2.0 - session.keepalive_interval - 0.1
    await session.close()


async def test_missed_keepalives_set_lost_by_the_deadline_and_not_after_server_expiry(tl: TimeLine) -> None:
    session = Session(tl.kv, 2.0, clock=tl.clock)
    await session.start()
    await tl.run_for(3.0)
    deadline = session.deadline
    lease = session.lease_id
    tl.kv.set_partitioned(True)  # every keepalive fails from now on
    await tl.run_for(deadline - tl.clock.now() - 0.1)
    assert not session.lost.is_set(), "lost too early: the lease still had time"
    # Step until the server-side lease is gone: the session must have given up by then.
    lost_at: float | None = None
    while tl.kv.lease_ttl(lease) is not None:
        assert tl.clock.now() < deadline + 1.0, "lease never expired"
        await tl.run_for(0.01, 0.01)
        if lost_at is None and session.lost.is_set():
            lost_at = tl.clock.now()
    gone_at = tl.clock.now()
    assert lost_at is not None and lost_at < gone_at - 0.1, "the session must give up before etcd does"
    assert lost_at <= deadline + 0.011
    assert "no keepalive" in session.lost_reason
    await session.close()


async def test_a_short_outage_is_survived(tl: TimeLine) -> None:
    session = Session(tl.kv, 2.0, clock=tl.clock)
    await session.start()
    await tl.run_for(1.0)
    tl.kv.set_partitioned(True)
    await tl.run_for(1.0)  # < ttl - interval: a retry lands in time
    tl.kv.set_partitioned(False)
    await tl.run_for(5.0)
    assert not session.lost.is_set()
    await session.close()


async def test_lease_revoked_elsewhere_is_lost_at_the_next_keepalive(tl: TimeLine) -> None:
    session = Session(tl.kv, 3.0, clock=tl.clock)
    await session.start()
    await tl.run_for(0.5)
    await tl.kv.lease_revoke(session.lease_id)
    took = await tl.run_until(session.lost.is_set, limit=2.0)
    assert took <= session.keepalive_interval + 0.1
    assert "gone" in session.lost_reason
    await session.close()


async def test_close_revokes_the_lease_and_sets_lost(tl: TimeLine) -> None:
    session = Session(tl.kv, 2.0, clock=tl.clock)
    await session.start()
    await tl.kv.put(b"/owned", b"x", session.lease_id)
    await session.close()
    assert session.lost.is_set()
    assert await tl.kv.get(b"/owned") is None
    assert tl.kv.lease_ttl(session.lease_id) is None
    await session.close()  # idempotent


async def test_close_without_revoke_leaves_the_lease_to_expire(tl: TimeLine) -> None:
    session = Session(tl.kv, 2.0, clock=tl.clock)
    await session.start()
    await tl.kv.put(b"/owned", b"x", session.lease_id)
    await session.close(revoke=False)
    assert await tl.kv.get(b"/owned") is not None
    await tl.run_for(2.1)
    assert await tl.kv.get(b"/owned") is None


async def test_uses_the_smaller_of_requested_and_granted_ttl(tl: TimeLine) -> None:
    session = Session(tl.kv, 2.5, clock=tl.clock)  # etcd grants whole seconds: 3
    start = tl.clock.now()
    await session.start()
    assert session.deadline == pytest.approx(start + 2.5 * LOST_AFTER)
    await session.close()


@pytest.mark.parametrize(("ttl", "interval"), [(1.0, None), (1.99, None), (2.0, 1.0), (2.0, 0.0), (3.0, 2.0)])
def test_rejects_bad_timing(tl: TimeLine, ttl: float, interval: float | None) -> None:
    with pytest.raises(ValueError):
        Session(tl.kv, ttl, keepalive_interval=interval, clock=tl.clock)


def test_lease_id_before_start_is_an_error(tl: TimeLine) -> None:
    with pytest.raises(RuntimeError):
        _ = Session(tl.kv, 2.0, clock=tl.clock).lease_id

"""Election on a real single-member etcd: takeover after a leader dies, fencing, failover times.

Bounds are loose on purpose (CI must not flake); the measured numbers are printed (-s) and
summarised in the helper report.
"""

from __future__ import annotations

import asyncio
import os
import signal
import statistics
import sys
import time
from pathlib import Path

import pytest

from clusterq_testing.etcd import EtcdCluster
from coordinator.election import Election, Fence, FenceLost, LeaderInfo, Session, fenced_txn, run_elected
from coordinator.store.etcd_kv import EtcdConfig, EtcdKv
from coordinator.store.kv import Put

pytestmark = pytest.mark.integration

TTL = 2.0
REPO = Path(__file__).resolve().parents[3]


def _kv(cluster: EtcdCluster) -> EtcdKv:
    return EtcdKv(EtcdConfig(tuple(cluster.endpoints)))


async def test_second_candidate_takes_over_when_the_leader_session_dies(etcd_single: EtcdCluster, ns: bytes) -> None:
    kv = _kv(etcd_single)
    election = Election(kv, ns + b"election")
    a, b = Session(kv, TTL), Session(kv, TTL)
    await a.start()
    await b.start()
    fa = await election.campaign(a, b"a")
    await fenced_txn(kv, fa, [Put(ns + b"state", b"a-1")])
    tb = asyncio.create_task(election.campaign(b, b"b"))
    await asyncio.sleep(1.0)
    assert not tb.done(), "second candidate won while the first was alive"
    assert await election.leader() == LeaderInfo(b"a", fa.epoch)

    t0 = time.monotonic()
    await a.close(revoke=False)  # the leader stops refreshing, like a SIGKILLed process
    fb = await asyncio.wait_for(tb, TTL + 1.5)
    took = time.monotonic() - t0
    print(f"takeover after leader session death: {took:.3f} s")
    assert fb.epoch > fa.epoch
    assert await election.leader() == LeaderInfo(b"b", fb.epoch)

    before = await kv.get_prefix(ns)
    with pytest.raises(FenceLost):
        await fenced_txn(kv, fa, [Put(ns + b"state", b"stale"), Put(ns + b"other", b"stale")])
    with pytest.raises(FenceLost):
        await election.proclaim(fa, b"stale")
    after = await kv.get_prefix(ns)
    assert after.kvs == before.kvs, "a write with a stale fence reached etcd"
    assert (await fenced_txn(kv, fb, [Put(ns + b"state", b"b-1")])).succeeded
    await b.close()
    assert await election.leader() is None
    await kv.close()


async def test_failover_time_after_session_death_ttl2(etcd_single: EtcdCluster, ns: bytes) -> None:
    """Measure: leader session stops (no revoke) -> standby campaign returns; and graceful handover."""
    kv = _kv(etcd_single)
    crash: list[float] = []
    graceful: list[float] = []
    for run in range(5):
        election = Election(kv, ns + f"e{run}".encode())
        a, b = Session(kv, TTL), Session(kv, TTL)
        await a.start()
        await b.start()
        fa = await election.campaign(a, b"a")
        tb = asyncio.create_task(election.campaign(b, b"b"))
        await asyncio.sleep(0.3 + 0.2 * run)  # vary the phase against the keepalive period
        t0 = time.monotonic()
        await a.close(revoke=False)
        fb = await asyncio.wait_for(tb, TTL + 1.5)
        crash.append(time.monotonic() - t0)
        # graceful: resign + revoke, the standby takes over at once
        c = Session(kv, TTL)
        await c.start()
        tc = asyncio.create_task(election.campaign(c, b"c"))
        await asyncio.sleep(0.2)
        t1 = time.monotonic()
        await election.resign(fb)
        await b.close()
        fc = await asyncio.wait_for(tc, 1.0)
        graceful.append(time.monotonic() - t1)
        assert fa.epoch < fb.epoch < fc.epoch
        await c.close()
    print(f"\nfailover, ttl=2, leader session stopped without revoke: {[round(x, 3) for x in crash]} "
          f"median {statistics.median(crash):.3f} s")
    print(f"graceful handover (resign + revoke): {[round(x * 1000, 1) for x in graceful]} ms")
    assert all(x < TTL + 1.5 for x in crash)
    assert all(x < 1.0 for x in graceful)
    await kv.close()


_CHILD = """
import asyncio, sys
from coordinator.election import run_elected
from coordinator.store.etcd_kv import EtcdConfig, EtcdKv

async def lead(fence):
    print(f"LEADING {fence.epoch}", flush=True)
    await asyncio.Event().wait()

async def main():
    kv = EtcdKv(EtcdConfig(tuple(sys.argv[1].split(","))))
    await run_elected(kv, sys.argv[2].encode(), b"child", 2.0, lead)

asyncio.run(main())
"""


@pytest.mark.chaos
async def test_failover_after_a_leader_process_is_sigkilled(etcd_single: EtcdCluster, ns: bytes) -> None:
    """A real leader process (run_elected) SIGKILLed; a standby run_elected in this process takes over."""
    kv = _kv(etcd_single)
    times: list[float] = []
    for run in range(4):
        prefix = ns + f"kill{run}".encode()
        child = await asyncio.create_subprocess_exec(
            sys.executable, "-c", _CHILD, ",".join(etcd_single.endpoints), prefix.decode(),
            stdout=asyncio.subprocess.PIPE, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)},
        )
        try:
            assert child.stdout is not None
            line = await asyncio.wait_for(child.stdout.readline(), 15)
            assert line.startswith(b"LEADING"), line
            child_epoch = int(line.split()[1])
            won = asyncio.Event()
            epochs: list[int] = []

            async def lead(fence: Fence, won: asyncio.Event = won, epochs: list[int] = epochs) -> None:
                epochs.append(fence.epoch)
                won.set()
                await asyncio.Event().wait()

            standby = asyncio.create_task(run_elected(kv, prefix, b"standby", TTL, lead))
            await asyncio.sleep(1.0 + 0.2 * run)
            assert not won.is_set(), "standby led while the child was alive"
            t0 = time.monotonic()
            child.send_signal(signal.SIGKILL)
            await asyncio.wait_for(won.wait(), TTL + 2.5)
            times.append(time.monotonic() - t0)
            assert epochs[0] > child_epoch
            standby.cancel()
            await asyncio.gather(standby, return_exceptions=True)
        finally:
            if child.returncode is None:
                child.kill()
            await child.wait()
    print(f"\nfailover, ttl=2, leader process SIGKILLed: {[round(x, 3) for x in times]} "
          f"median {statistics.median(times):.3f} s")
    await kv.close()


async def test_a_dead_first_endpoint_is_skipped(etcd_single: EtcdCluster, ns: bytes) -> None:
    from clusterq_testing.ports import free_tcp_port

    dead = f"127.0.0.1:{free_tcp_port()}"  # nothing listens there
    kv = EtcdKv(EtcdConfig((dead, *etcd_single.endpoints)))
    await kv.put(ns + b"k", b"v")
    got = await kv.get(ns + b"k")
    assert got is not None and got.value == b"v"
    assert kv.endpoint == etcd_single.endpoints[0]
    lease, _ = await kv.lease_grant(2)
    assert await kv.lease_keepalive(lease) == 2
    await kv.close()


async def test_keepalives_share_one_stream(etcd_single: EtcdCluster) -> None:
    """Measure the cost of one lease refresh on the shared stream (reported, loosely bounded)."""
    kv = _kv(etcd_single)
    lease, _ = await kv.lease_grant(5)
    await kv.lease_keepalive(lease)
    n = 200
    t0 = time.perf_counter()
    for _ in range(n):
        await kv.lease_keepalive(lease)
    per = (time.perf_counter() - t0) / n
    print(f"\nlease refresh on the shared stream: {per * 1000:.2f} ms")
    assert per < 0.05
    await kv.lease_revoke(lease)
    await kv.close()


async def test_etcd_start_time(tmp_path: Path) -> None:
    """Measure cluster start-up to healthy (1 and 3 members)."""
    for members in (1, 3):
        cluster = EtcdCluster(tmp_path / f"start{members}", members=members)
        try:
            await cluster.start()
            assert cluster.start_seconds is not None
            print(f"\netcd start, {members} member(s): {cluster.start_seconds:.3f} s")
            assert await cluster.raft_leader_index() is not None
        finally:
            await cluster.stop()
        assert all(pid is None for pid in cluster.member_pids)

"""clusterq_testing.etcd.EtcdCluster and EtcdKv across member restarts (real etcd)."""

from __future__ import annotations

import asyncio
import contextlib
import os
from pathlib import Path

import pytest

from clusterq_testing.etcd import EtcdCluster
from coordinator.store.etcd_kv import EtcdConfig, EtcdKv
from coordinator.store.kv import WatchEvent

pytestmark = pytest.mark.integration


async def test_etcd_variables_are_scrubbed_and_data_lives_in_shm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ETCD_QUOTA_BACKEND_BYTES", "not-a-number")  # etcd would refuse to start
    cluster = EtcdCluster(tmp_path, members=1)
    try:
        await cluster.start()
        pid = cluster.member_pids[0]
        assert pid is not None
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        data_dir = cmdline[cmdline.index(b"--data-dir") + 1].decode()
        if os.path.isdir("/dev/shm"):
            assert data_dir.startswith("/dev/shm/")
        assert (tmp_path / "etcd-m0.log").exists()
    finally:
        await cluster.stop()
    assert not os.path.exists(data_dir), "the data dir outlived stop()"
    assert cluster.member_pids == [None]


async def test_a_member_that_cannot_start_is_an_error_with_its_log(tmp_path: Path) -> None:
    cluster = EtcdCluster(tmp_path, members=1, etcd_binary=Path("/bin/false"))
    with pytest.raises(RuntimeError, match="exited"):
        await cluster.start(timeout=5)
    missing = EtcdCluster(tmp_path / "x", members=1, etcd_binary=tmp_path / "no-etcd")
    with pytest.raises(RuntimeError, match="not found"):
        await missing.start()


async def test_watch_resumes_without_loss_or_repeat_across_a_member_restart(tmp_path: Path) -> None:
    cluster = EtcdCluster(tmp_path, members=1)
    await cluster.start()
    kv = EtcdKv(EtcdConfig(tuple(cluster.endpoints)))
    try:
        seen: list[WatchEvent] = []

        async def watch() -> None:
            async with contextlib.aclosing(kv.watch_prefix(b"/w/", 0)) as events:
                async for ev in events:
                    seen.append(ev)

        watcher = asyncio.create_task(watch())
        await asyncio.sleep(0.2)
        await kv.put(b"/w/a", b"1")
        await kv.put(b"/w/b", b"2")
        old_pid = cluster.member_pids[0]
        cluster.kill_member(0)
        await cluster.restart_member(0)
        assert cluster.member_pids[0] not in (None, old_pid)
        await kv.put(b"/w/c", b"3")  # retried until the member is back
        async with asyncio.timeout(10):
            while len(seen) < 3:  # noqa: ASYNC110 (polls a plain list)
                await asyncio.sleep(0.05)
        await asyncio.sleep(0.3)
        assert [e.kv.key for e in seen] == [b"/w/a", b"/w/b", b"/w/c"]
        got = await kv.get(b"/w/b")
        assert got is not None and got.value == b"2", "data dir kept across the restart"
        watcher.cancel()
        await asyncio.gather(watcher, return_exceptions=True)
    finally:
        await kv.close()
        await cluster.stop()


async def test_three_members_report_one_raft_leader(tmp_path: Path) -> None:
    async with EtcdCluster(tmp_path, members=3) as cluster:
        leader = await cluster.raft_leader_index()
        assert leader in (0, 1, 2)
        assert len(set(cluster.endpoints)) == 3
        assert not {int(e.rsplit(":", 1)[1]) for e in cluster.endpoints} & {2379, 2380}
        cluster.kill_member(leader)
        async with asyncio.timeout(10):
            new = None
            while new in (None, leader):
                await asyncio.sleep(0.1)
                new = await cluster.raft_leader_index()
        await cluster.restart_member(leader)
        await cluster.wait_healthy()
        assert all(pid is not None for pid in cluster.member_pids)

"""Fixtures for coordinator integration tests on REAL etcd (the cached 3.4 binary).

`etcd_single` is one single-member cluster shared by the module's tests (each test works under
its own key prefix); 3-member clusters for chaos tests are started per test (`etcd3`).
A cluster that cannot start makes the test ERROR.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import time
import uuid
from collections.abc import AsyncIterator, Coroutine, Iterator
from pathlib import Path
from typing import Any

import pytest

from clusterq_testing.etcd import EtcdCluster
from coordinator.store.etcd_kv import EtcdConfig, EtcdKv
from coordinator.store.kv import KvPort
from coordinator.store.memory_kv import MemoryKv


def _run_off_loop(coro: Coroutine[Any, Any, None]) -> None:
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, coro).result()


@pytest.fixture(scope="module")
def etcd_single(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EtcdCluster]:
    """A started 1-member etcd cluster, shared by one test module."""
    cluster = EtcdCluster(tmp_path_factory.mktemp("etcd1"), members=1)
    # The cluster is Popen-based, so it can be started and stopped on short-lived loops of
    # their own (in a worker thread: this fixture may be requested from inside a running loop).
    _run_off_loop(cluster.start())
    try:
        yield cluster
    finally:
        _run_off_loop(cluster.stop())


@pytest.fixture
async def etcd3(tmp_path: Path) -> AsyncIterator[EtcdCluster]:
    """A fresh started 3-member etcd cluster (chaos tests kill its members)."""
    cluster = EtcdCluster(tmp_path / "etcd3", members=3)
    try:
        await cluster.start()
        yield cluster
    finally:
        await cluster.stop()


@pytest.fixture
def ns() -> bytes:
    """A key prefix unique to the test."""
    return f"/t/{uuid.uuid4().hex[:12]}/".encode()


@pytest.fixture(params=["memory", "etcd"])
async def kv(request: pytest.FixtureRequest) -> AsyncIterator[KvPort]:
    """The same KvPort contract, once on MemoryKv (real clock) and once on real etcd."""
    store: MemoryKv | EtcdKv
    if request.param == "memory":
        store = MemoryKv(now=time.monotonic, reap_interval=0.05)
    else:
        cluster: EtcdCluster = request.getfixturevalue("etcd_single")
        store = EtcdKv(EtcdConfig(tuple(cluster.endpoints)))
    try:
        yield store
    finally:
        await store.close()

"""CPU pinning of the load scenarios: the split, and masks really applied to and restored on processes."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from clusterq_testing.bench.pinning import CpuSplit, pin_process, pinned, split_cpus

TWO_CPUS = pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2,
                              reason="needs 2 CPUs: with one, pinning cannot change any mask")


def _start_child() -> subprocess.Popen[bytes]:
    code = "import threading, time; threading.Thread(target=time.sleep, args=(60,), daemon=True).start(); time.sleep(60)"
    proc = subprocess.Popen([sys.executable, "-c", code])
    deadline = time.monotonic() + 10
    while len(os.listdir(f"/proc/{proc.pid}/task")) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    return proc


@pytest.fixture
def children() -> Iterator[list[int]]:
    """Two sleeping child processes, each with a second thread (pinning must reach every thread)."""
    procs = [_start_child(), _start_child()]
    try:
        yield [p.pid for p in procs]
    finally:
        for p in procs:
            p.kill()
            p.wait()


@pytest.fixture
def child(children: list[int]) -> int:
    """One of them."""
    return children[0]


def _masks(pid: int) -> list[set[int]]:
    return [os.sched_getaffinity(int(tid)) for tid in os.listdir(f"/proc/{pid}/task")]


@pytest.mark.parametrize(("available", "expected"), [
    ([0], None),
    ([0, 1], CpuSplit(frozenset({1}), frozenset({0}))),
    ([3, 0, 2], CpuSplit(frozenset({3}), frozenset({0, 2}))),
])
def test_split_gives_the_last_cpu_to_the_leader(available: list[int], expected: CpuSplit | None) -> None:
    assert split_cpus(available) == expected


def test_describe_names_both_sides() -> None:
    assert CpuSplit(frozenset({3}), frozenset({0, 1})).describe() == \
        "leader on CPU 3; bench client (simulated nodes) and etcd on CPU 0,1"


@TWO_CPUS
def test_pin_process_reaches_every_thread(child: int) -> None:
    cpu = min(os.sched_getaffinity(0))
    pin_process(child, {cpu})
    masks = _masks(child)
    assert len(masks) >= 2
    assert all(m == {cpu} for m in masks)


@TWO_CPUS
def test_pinned_applies_and_restores(children: list[int]) -> None:
    leader, load = children
    own_before = os.sched_getaffinity(0)
    load_before = _masks(load)
    cpus = sorted(own_before)
    split = CpuSplit(frozenset(cpus[-1:]), frozenset(cpus[:1]))
    with pinned(split, leader_pid=leader, load_pids=[load]):
        assert all(m == set(split.leader) for m in _masks(leader))
        assert all(m == set(split.others) for m in _masks(load))
        assert os.sched_getaffinity(0) == set(split.others)  # the bench process is load too
    # The leader keeps its CPU (it is the process under test); the load gets its masks back.
    assert all(m == set(split.leader) for m in _masks(leader))
    assert _masks(load) == load_before
    assert os.sched_getaffinity(0) == own_before


def test_pinned_without_split_changes_nothing(child: int) -> None:
    before, own = _masks(child), os.sched_getaffinity(0)
    with pinned(None, leader_pid=child, load_pids=[os.getpid()]):
        assert _masks(child) == before
        assert os.sched_getaffinity(0) == own


def test_pinning_a_process_that_has_exited_is_harmless() -> None:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    pin_process(proc.pid, os.sched_getaffinity(0))  # no exception: /proc/<pid> is gone


@TWO_CPUS
def test_threads_started_while_pinning_are_pinned_too() -> None:
    # A process that keeps starting threads: every thread that exists once pin_process returns
    # has the new mask (threads started later inherit it from a pinned thread).
    code = ("import threading, time\n"
            "def spawn(n):\n"
            "    if n: threading.Thread(target=spawn, args=(n - 1,), daemon=True).start()\n"
            "    time.sleep(60)\n"
            "spawn(30)\n")
    proc = subprocess.Popen([sys.executable, "-c", code])
    try:
        cpu = min(os.sched_getaffinity(0))
        time.sleep(0.05)  # some threads exist, more are being started
        pin_process(proc.pid, {cpu})
        deadline = time.monotonic() + 10
        while len(os.listdir(f"/proc/{proc.pid}/task")) < 31 and time.monotonic() < deadline:
            time.sleep(0.01)
        masks = _masks(proc.pid)
        assert len(masks) == 31
        assert all(m == {cpu} for m in masks)
    finally:
        proc.kill()
        proc.wait()

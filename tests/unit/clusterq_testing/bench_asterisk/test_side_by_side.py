"""The side-by-side CPU figures: per-thread CPU from /proc and the per-caller arithmetic."""

from __future__ import annotations

import os
import threading
import time

from clusterq_testing.bench_asterisk import procstat
from clusterq_testing.bench_asterisk.side_by_side import SideBySide, thread_cpu


def test_thread_cpu_sees_a_busy_thread_of_this_process() -> None:
    done = threading.Event()
    tid: list[int] = []

    def spin() -> None:
        # Busy until told to stop (bounded by wall time): the thread must still exist when it is read.
        # (Bounding it by process CPU time let it end before the read when other threads were busy.)
        tid.append(threading.get_native_id())
        deadline = time.monotonic() + 10
        while not done.is_set() and time.monotonic() < deadline:
            pass

    t = threading.Thread(target=spin)
    t.start()
    try:
        while not tid:
            time.sleep(0.001)
        deadline = time.monotonic() + 10
        while (seen := thread_cpu(os.getpid())).get(tid[0], 0.0) <= 0.0:
            assert time.monotonic() < deadline, "the busy thread never showed CPU time"
            time.sleep(0.01)
    finally:
        done.set()
        t.join()
    assert os.getpid() in seen  # the main thread's tid is the pid


def test_per_caller_figures_add_the_stasis_app_to_clusterq_only() -> None:
    usage = procstat.Usage(0.0, 0)
    window = procstat.Window(10.0, usage, usage, usage, 0.0, 0.0)
    sb = SideBySide(callers=100, seconds=10.0, cq_threads=200, aq_threads=200, cq_asterisk_cores=0.25,
                    aq_asterisk_cores=0.3, stasis_cores=0.01, shared_cores=0.05, window=window)
    assert round(sb.cq_ms_per_caller, 6) == 2.6
    assert round(sb.aq_ms_per_caller, 6) == 3.0

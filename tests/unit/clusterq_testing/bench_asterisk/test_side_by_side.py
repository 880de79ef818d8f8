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
        tid.append(threading.get_native_id())
        end = time.process_time() + 0.3
        while time.process_time() < end and not done.is_set():
            pass

    t = threading.Thread(target=spin)
    t.start()
    while not tid:
        time.sleep(0.001)
    before = thread_cpu(os.getpid())
    t.join()
    assert tid[0] in before and os.getpid() in before  # the main thread's tid is the pid


def test_per_caller_figures_add_the_stasis_app_to_clusterq_only() -> None:
    usage = procstat.Usage(0.0, 0)
    window = procstat.Window(10.0, usage, usage, usage, 0.0, 0.0)
    sb = SideBySide(callers=100, seconds=10.0, cq_threads=200, aq_threads=200, cq_asterisk_cores=0.25,
                    aq_asterisk_cores=0.3, stasis_cores=0.01, shared_cores=0.05, window=window)
    assert round(sb.cq_ms_per_caller, 6) == 2.6
    assert round(sb.aq_ms_per_caller, 6) == 3.0

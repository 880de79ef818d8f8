"""`python -m clusterq_testing.bench_asterisk [--callers N] [--agents N] [--markdown PATH] ...`

Starts etcd, one coordinator, ONE Asterisk node (app_queue loaded beside clusterq) and its stasis app
on 127.0.0.1, then for clusterq and for app_queue, in this order:

1. CPU / RSS: idle window, then N callers waiting with music (no agent), steady window;
2. latency: N callers wait, the agents start and drain the queue (announcements off, then on; each
   run stops after --drain-cap seconds).

Asterisk is restarted between the two implementations (so each memory figure starts from a fresh
heap). Prints clusterq beside app_queue with ratios and the targets; the observer's raw events of
each latency run are kept as JSON lines in the printed work directory. Exit status 0 when every
part ran (whether or not the targets are met), 1 otherwise. Everything started is stopped by PID.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
import traceback
from collections.abc import Awaitable
from pathlib import Path
from typing import TypeVar

from clusterq_testing.bench_asterisk import report
from clusterq_testing.bench_asterisk.calls import Impl
from clusterq_testing.bench_asterisk.rig import BenchSettings, Rig, start_rig
from clusterq_testing.bench_asterisk.scenarios import CpuResult, RunResult, cpu_phase, latency_run
from clusterq_testing.bench_asterisk.side_by_side import SideBySide, side_by_side

T = TypeVar("T")


def _args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m clusterq_testing.bench_asterisk", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    d = BenchSettings()
    p.add_argument("--callers", type=int, default=d.callers, help="waiting callers (CPU and latency)")
    p.add_argument("--agents", type=int, default=d.agents, help="agents draining the queue")
    p.add_argument("--cpu-window", type=float, default=d.cpu_window, help="steady CPU window, seconds")
    p.add_argument("--idle-window", type=float, default=d.idle_window, help="idle CPU window, seconds")
    p.add_argument("--talk-ms", default=f"{d.talk_min_ms}-{d.talk_max_ms}", help="agent talk time range, ms")
    p.add_argument("--ring", type=float, default=d.ring, help="seconds an agent phone rings before answering")
    p.add_argument("--announce-frequency", type=float, default=d.announce_frequency)
    p.add_argument("--min-announce-frequency", type=float, default=d.min_announce_frequency)
    p.add_argument("--drain-cap", type=float, default=d.drain_cap, help="longest latency run, seconds")
    p.add_argument("--music", choices=("shared", "channel"), default="shared",
                   help="clusterq's waiting-caller music: one stream per class (default) or one per caller")
    p.add_argument("--markdown", type=Path, help="also write machine, command and table as markdown here")
    return p.parse_args(argv)


def _settings(a: argparse.Namespace) -> BenchSettings:
    low, _, high = str(a.talk_ms).partition("-")
    return BenchSettings(callers=a.callers, agents=a.agents, cpu_window=a.cpu_window, idle_window=a.idle_window,
                         ring=a.ring, talk_min_ms=int(low), talk_max_ms=int(high or low),
                         announce_frequency=a.announce_frequency, min_announce_frequency=a.min_announce_frequency,
                         drain_cap=a.drain_cap, shared_music=a.music == "shared")


def _say(text: str) -> None:
    print(f"{time.strftime('%H:%M:%S')}  {text}", flush=True)


class _Bench:
    """Runs the parts in order, keeping what succeeded and the failures."""

    def __init__(self, rig: Rig) -> None:
        self.rig = rig
        self.failures: list[str] = []

    async def step(self, name: str, aw: Awaitable[T]) -> T | None:
        t0 = time.monotonic()
        try:
            result = await aw
        except Exception as exc:  # one failed part must not hide the others' figures
            self.failures.append(f"{name}: {exc!r}")
            _say(f"FAILED {name} after {time.monotonic() - t0:.1f} s:\n{traceback.format_exc()}")
            return None
        _say(f"done   {name} in {time.monotonic() - t0:.1f} s{_brief(result)}")
        return result

    async def latency(self, impl: Impl, announcements: bool) -> RunResult | None:
        mark = self.rig.observer.mark()
        name = f"{impl.value} latency, announcements {'on' if announcements else 'off'}"
        run = await self.step(name, latency_run(self.rig, impl, announcements))
        path = self.rig.work / f"events-{impl.value}-{'ann' if announcements else 'plain'}.jsonl"
        with path.open("w") as f:
            for e in self.rig.observer.events[mark:]:
                f.write(json.dumps(dict(e.raw)) + "\n")
        return run


def _brief(result: object) -> str:
    if isinstance(result, CpuResult):
        return (f": {result.cpu_ms_per_caller:.2f} ms CPU/s and "
                f"{result.rss_kib_per_caller(result.own_processes):.0f} KiB per caller")
    if isinstance(result, SideBySide):
        return (f": clusterq {result.cq_ms_per_caller:.2f}, app_queue {result.aq_ms_per_caller:.2f} ms CPU/s "
                f"per caller ({result.cq_threads} + {result.aq_threads} caller threads)")
    if isinstance(result, RunResult):
        return (f": {result.connected}/{result.callers} connected, p50 {result.latency.p(50):.0f} ms, "
                f"p99 {result.latency.p(99):.0f} ms, {result.by_bridge.callers} inversions")
    return ""


async def _run(settings: BenchSettings, work: Path) -> tuple[report.Results, str, list[str]]:
    _say(f"work dir {work}")
    rig = await start_rig(settings, work)
    _say(f"up: etcd {rig.etcd.member_pids}, asterisk {rig.node.pid}, coordinator {rig.coordinator.pid}, "
         f"stasis app {rig.stasis.pid}")
    b = _Bench(rig)
    version = "Asterisk ?"
    try:
        version = (await rig.node.async_cli("core show version")).strip()
        cq_cpu = await b.step("clusterq CPU/RSS", cpu_phase(rig, Impl.CLUSTERQ))
        cq_plain = await b.latency(Impl.CLUSTERQ, False)
        cq_ann = await b.latency(Impl.CLUSTERQ, True)
        await rig.restart_asterisk()  # fresh heap for app_queue's memory figure
        aq_cpu = await b.step("app_queue CPU/RSS", cpu_phase(rig, Impl.APP_QUEUE))
        aq_plain = await b.latency(Impl.APP_QUEUE, False)
        aq_ann = await b.latency(Impl.APP_QUEUE, True)
        side = await b.step("CPU of both at once", side_by_side(rig))
    finally:
        await rig.stop()
    results = report.Results(settings, cq_cpu, aq_cpu, cq_plain, aq_plain, cq_ann, aq_ann, side)
    return results, version, b.failures


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    args = _args(argv)
    settings = _settings(args)
    work = Path(tempfile.mkdtemp(prefix="clusterq-bench-asterisk-"))
    t0 = time.monotonic()
    try:
        results, version, failures = asyncio.run(_run(settings, work))
    except Exception:
        _say(f"FAILED to start or stop the parts:\n{traceback.format_exc()}")
        return 1
    m = report.machine(version)
    print()
    print(report.text_table(results, m))
    print(f"\ntotal {time.monotonic() - t0:.0f} s; logs and events in {work}")
    if args.markdown is not None:
        args.markdown.write_text(report.markdown(results, m, report.command_line()))
    for f in failures:
        print(f"FAILED: {f}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

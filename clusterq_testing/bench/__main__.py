"""`make bench`: `python -m clusterq_testing.bench [--quick] [--only ...] [--markdown PATH]`.

Starts one etcd member (temp dir, stopped by PID), then per scenario its own coordinator replica
subprocess(es) and simulated nodes on loopback gRPC; prints one table with the figures and their
targets. Exit status 0 when every scenario ran (whether or not targets are met), 1 otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
import tempfile
import time
import traceback
from pathlib import Path

from clusterq_testing.bench import report
from clusterq_testing.bench.agents import AgentScalePoint, agent_scale
from clusterq_testing.bench.failover import failover
from clusterq_testing.bench.floor import FloorPoint, measure_floor
from clusterq_testing.bench.pinning import split_cpus
from clusterq_testing.bench.results import FailoverResult, LatencyPoint, MemoryResult, ThroughputResult
from clusterq_testing.bench.scenarios import LoadSettings, latency_points, load_cluster, memory, throughput
from clusterq_testing.bench.waiting import ABANDON_MODELS
from clusterq_testing.etcd import EtcdCluster

SCENARIOS = ("latency", "throughput", "memory", "failover", "agents")
_ABANDON_TEXT = {"random": "a random waiting caller hangs up (Erlang A)",
                 "oldest": "the longest-waiting caller hangs up (--abandon oldest)"}


def _args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m clusterq_testing.bench", description=__doc__)
    p.add_argument("--only", default=",".join(SCENARIOS), help=f"comma-separated subset of {','.join(SCENARIOS)}")
    p.add_argument("--rates", default="500,2000,5000,10000,20000", help="offered loads for latency, events/s")
    p.add_argument("--duration", type=float, default=5.0, help="seconds measured per load point")
    p.add_argument("--repeat", type=int, default=1,
                   help="run the sweep of latency points this many times on the same leader; with 2 or more the "
                        "table adds, per rate, p99's min / median / max over the runs")
    p.add_argument("--kills", type=int, default=10, help="leader kills in the failover scenario")
    p.add_argument("--callers", type=int, default=10_000, help="waiting callers in the memory scenario")
    p.add_argument("--quick", action="store_true", help="short smoke run (2 s points, 3 kills)")
    p.add_argument("--markdown", type=Path, help="also write the machine and the table as markdown here")
    p.add_argument("--abandon", choices=ABANDON_MODELS, default="random",
                   help="which waiting caller hangs up in the load scenarios: a random one (Erlang A, default) or "
                        "the longest-waiting one (the model before 2026-11-27)")
    p.add_argument("--no-pin", action="store_true", help="do not pin the load scenarios' leader to a CPU of its own "
                                                          "(default: pinned when there are 2 CPUs or more)")
    p.add_argument("--profile", type=Path, help="run the load scenarios' leader under cProfile, stats to this file "
                                                "(slows the leader down: not for the figures)")
    args = p.parse_args(argv)
    if args.repeat < 1:
        p.error("--repeat must be at least 1")
    unknown = set(args.only.split(",")) - set(SCENARIOS)
    if unknown:
        p.error(f"unknown scenario(s): {', '.join(sorted(unknown))}")
    if args.quick:
        args.duration, args.kills, args.callers = 2.0, 3, 2_000
    return args


class Run:
    """Results gathered so far (a failed scenario leaves its slot empty and adds an error)."""

    def __init__(self) -> None:
        self.throughput: ThroughputResult | None = None
        self.floor: list[FloorPoint] = []
        self.latency: list[LatencyPoint] = []
        self.memory: MemoryResult | None = None
        self.failover: FailoverResult | None = None
        self.agents: list[AgentScalePoint] = []
        self.errors: list[str] = []
        self.loop_errors: dict[str, int] = {}
        self.pinning = "off"


def _say(text: str) -> None:
    print(f"{time.strftime('%H:%M:%S')}  {text}", flush=True)


def _count_loop_errors(run: Run) -> None:
    """Count asyncio's unhandled-error reports (e.g. tasks of a dead stream destroyed while pending)."""

    def handler(loop: asyncio.AbstractEventLoop, context: dict[str, object]) -> None:
        key = str(context.get("message", "unknown"))
        exc = context.get("exception")
        if exc is not None:
            key += f" ({type(exc).__name__}: {exc})"
        task = context.get("task") or context.get("future")
        if task is not None:
            key += f" [{re.sub(r'Task-[0-9]+', 'Task-N', repr(task))[:160]}]"
        run.loop_errors[key] = run.loop_errors.get(key, 0) + 1

    asyncio.get_running_loop().set_exception_handler(handler)


async def _scenarios(args: argparse.Namespace, work: Path, run: Run) -> None:
    _count_loop_errors(run)
    only = set(args.only.split(","))
    settings = LoadSettings(duration=args.duration, warmup=0.5 if args.quick else 1.0, abandon=args.abandon)
    logs = work / "logs"
    (work / "etcd").mkdir(parents=True, exist_ok=True)
    etcd = EtcdCluster(work / "etcd", members=1)
    await etcd.start()
    _say(f"etcd up at {etcd.endpoints[0]} (pid {etcd.member_pids[0]})")
    try:
        if only & {"latency", "throughput"}:
            try:
                split = None if args.no_pin else split_cpus()
                run.pinning = split.describe() if split is not None else (
                    "off (--no-pin)" if args.no_pin else "off (fewer than 2 CPUs)")
                async with load_cluster(etcd, logs, "/bench-load", settings, profile=args.profile, pin=split) as lc:
                    _say(f"leader pid {lc.leader_pid}; 4 simulated nodes, {settings.agents_per_node * 4} agents")
                    if "latency" in only:
                        # The whole sweep is repeated, so each repetition of a rate follows the same
                        # lower rates as a single sweep does.
                        for sweep in range(1, args.repeat + 1):
                            for rate in sorted(float(r) for r in args.rates.split(",")):
                                _say(f"latency: offering {rate:,.0f} events/s for {settings.duration:.0f} s"
                                     + (f" (sweep {sweep} of {args.repeat})" if args.repeat > 1 else ""))
                                run.latency += await latency_points(lc, [rate], settings)
                    if "throughput" in only:
                        _say(f"throughput: saturating the leader for {settings.duration:.0f} s")
                        run.throughput = await throughput(lc, settings)
                    gaps = sum(n.seq_gaps for n in lc.nodes)
                    refused = sum(n.client.refused for n in lc.nodes)
                    if gaps or refused:
                        run.errors.append(f"load: {gaps} gaps in decision stamp sequences, "
                                          f"{refused} decisions of a stale epoch refused")
            except Exception as exc:
                run.errors.append(f"load scenarios: {exc!r}")
                traceback.print_exc()
        if "throughput" in only:
            _say("gRPC floor: bare grpc.aio echo server, 1- and 64-event messages")
            try:
                run.floor = await measure_floor(logs)
            except Exception as exc:
                run.errors.append(f"gRPC floor: {exc!r}")
                traceback.print_exc()
        if "memory" in only:
            _say(f"memory: {args.callers:,} waiting callers over 4 nodes")
            try:
                run.memory = await memory(etcd, logs, "/bench-memory", args.callers)
            except Exception as exc:
                run.errors.append(f"memory scenario: {exc!r}")
                traceback.print_exc()
        if "failover" in only:
            _say(f"failover: {args.kills} leader kills, lease TTL 2 s")
            try:
                run.failover = await failover(etcd, logs, "/bench-failover", args.kills)
            except Exception as exc:
                run.errors.append(f"failover scenario: {exc!r}")
                traceback.print_exc()
        if "agents" in only:
            _say("agents: the engine with 10, 500 and 2,000 free agents (in-process)")
            try:
                run.agents = await asyncio.to_thread(agent_scale)
            except Exception as exc:
                run.errors.append(f"agents scenario: {exc!r}")
                traceback.print_exc()
    finally:
        await etcd.stop()


def _log_problems(log_dir: Path) -> list[str]:
    """Tracebacks and ERROR lines in the coordinators' logs (SIGKILLed replicas leave none)."""
    found = []
    for path in sorted(log_dir.glob("*.log")):
        text = path.read_text(errors="replace")
        tracebacks = text.count("Traceback (most recent call last)")
        errors = len(re.findall(r" ERROR ", text))
        if tracebacks or errors:
            found.append(f"{path}: {tracebacks} traceback(s), {errors} ERROR line(s)")
    return found


def main(argv: list[str] | None = None) -> int:
    """Run the selected scenarios, print the table, optionally write markdown."""
    args = _args(argv)
    work = Path(tempfile.mkdtemp(prefix="clusterq-bench-"))
    load_before = report.loadavg()
    _say(f"work dir {work} (coordinator logs in {work / 'logs'}); load average {load_before}")
    run = Run()
    started = time.monotonic()
    asyncio.run(_scenarios(args, work, run))
    elapsed = time.monotonic() - started
    table = report.rows(run.throughput, run.floor, run.latency, run.memory, run.failover, run.agents)
    problems = _log_problems(work / "logs") if (work / "logs").is_dir() else []
    info = [*report.machine(), ("load average before / after", f"{load_before} / {report.loadavg()}"),
            ("load scenarios' CPU pinning", run.pinning),
            ("load scenarios' abandonment", _ABANDON_TEXT[args.abandon]),
            ("bench wall time", f"{elapsed:.0f} s"), ("command", "make bench  (python -m clusterq_testing.bench "
                                                       + " ".join(argv if argv is not None else sys.argv[1:]) + ")")]
    print("\nMachine:")
    for k, v in info:
        print(f"  {k:<28} {v}")
    print(report.render_text(table))
    problems += [f"bench process asyncio: {n} x {key}" for key, n in run.loop_errors.items()]
    for line in [*run.errors, *problems]:
        print(f"PROBLEM: {line}")
    if args.markdown is not None:
        md = ["| machine | |", "|---|---|", *[f"| {k} | {v} |" for k, v in info], "", report.render_markdown(table)]
        md += [f"\nPROBLEM: {line}" for line in [*run.errors, *problems]]
        args.markdown.write_text("\n".join(md) + "\n")
    return 1 if run.errors else 0


if __name__ == "__main__":
    sys.exit(main())

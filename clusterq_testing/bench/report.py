"""The benchmark's output: machine description and one table of figures with their targets.

Score column: figure / target for "at least" targets, target / figure for "at most" targets, so a
score >= 1.00 always means the target is met.
"""

from __future__ import annotations

import math
import os
import platform
import statistics
import subprocess
from dataclasses import dataclass

import grpc
from google.protobuf import __version__ as protobuf_version

from clusterq_testing.bench.agents import AgentScalePoint
from clusterq_testing.bench.floor import FloorPoint
from clusterq_testing.bench.results import (
    FailoverResult,
    LatencyPoint,
    MemoryResult,
    ThroughputResult,
)
from clusterq_testing.etcd import default_etcd_binary

__all__ = ["Row", "machine", "render_markdown", "render_text", "rows"]


@dataclass(frozen=True)
class Row:
    """One line of the results table."""

    section: str
    metric: str
    value: str
    target: str = ""
    score: float | None = None


# The latency target: JoinAck p99 at most _P99_TARGET_MS from _P99_TARGET_RATE offered events/s on.
_P99_TARGET_RATE = 20_000
_P99_TARGET_MS = 10.0
_P99_TARGET = f"p99 <= {_P99_TARGET_MS:.0f} ms"


def _score(value: float, target: float, at_least: bool) -> float:
    if at_least:
        return value / target
    return target / value if value > 0 else math.inf


def _ms(v: float) -> str:
    return "never" if math.isinf(v) else f"{v:,.2f} ms"


def _s(v: float) -> str:
    return "never" if math.isinf(v) else f"{v:.2f} s"


def _throughput_rows(t: ThroughputResult) -> list[Row]:
    sec = "1 throughput"
    return [
        Row(sec, "events/s applied by the leader (saturated)", f"{t.events_per_second:,.0f}", ">= 50,000",
            _score(t.events_per_second, 50_000, True)),
        Row(sec, "events per leader CPU-second (one core)", f"{t.events_per_core_second:,.0f}", ">= 50,000",
            _score(t.events_per_core_second, 50_000, True)),
        Row(sec, "leader CPU (cores) / bench client CPU (cores)",
            f"{t.leader_cpu_share:.2f} / {t.client_cpu_share:.2f}"),
        Row(sec, "decisions/s received by the nodes", f"{t.decisions_per_second:,.0f}"),
        Row(sec, "JoinAck latency p50 while saturated", _ms(t.latency_p50_ms)),
        Row(sec, "in-process: QueueEngine.apply only (events/s)", f"{t.engine_events_per_second:,.0f}"),
        Row(sec, "in-process: LeaderRuntime.handle_batch, no gRPC (events/s)",
            f"{t.runtime_events_per_second:,.0f}"),
    ]


def _latency_rows(points: list[LatencyPoint]) -> list[Row]:
    out = []
    for p in points:
        target, score = "", None
        if p.offered >= _P99_TARGET_RATE:
            target, score = _P99_TARGET, _score(p.p99_ms, _P99_TARGET_MS, False)
        per_event = p.leader_cpu_share * 1e6 / p.achieved if p.achieved else math.inf
        detail = (f"sent {p.achieved:,.0f}/s, p50 {_ms(p.p50_ms)}, p99 {_ms(p.p99_ms)}, max {_ms(p.max_ms)}, "
                  f"leader CPU {p.leader_cpu_share:.2f} ({per_event:,.0f} us/event), bench client CPU "
                  f"{p.client_cpu_share:.2f}, "
                  f"{p.sent / max(1, p.messages_in):.1f} events per node message, "
                  f"{p.messages_out / p.seconds:,.0f} leader messages/s")
        if p.skipped or p.unanswered:
            detail += f", skipped {p.skipped:,} (too many in flight), unanswered {p.unanswered:,}"
        out.append(Row("2 latency", f"offered {p.offered:,.0f} events/s ({p.joins:,} joins timed)", detail,
                       target, score))
    return out + _repeat_rows(points)


def _repeat_rows(points: list[LatencyPoint]) -> list[Row]:
    """Per offered rate measured more than once: p99's spread over the runs (target scored on the median)."""
    by_rate: dict[float, list[float]] = {}
    for p in points:
        by_rate.setdefault(p.offered, []).append(p.p99_ms)
    out = []
    for rate, p99s in sorted(by_rate.items()):
        if len(p99s) < 2:
            continue
        ordered = sorted(p99s)
        median = statistics.median(ordered)
        value = f"min {_ms(ordered[0])}, median {_ms(median)}, max {_ms(ordered[-1])}"
        target, score = "", None
        if rate >= _P99_TARGET_RATE:
            met = sum(1 for v in ordered if v <= _P99_TARGET_MS)
            value += f"; <= {_P99_TARGET_MS:.0f} ms in {met} of {len(ordered)}"
            target, score = f"{_P99_TARGET} (median)", _score(median, _P99_TARGET_MS, False)
        out.append(Row("2 latency", f"offered {rate:,.0f} events/s: p99 over {len(ordered)} runs", value,
                       target, score))
    return out


def _memory_rows(m: MemoryResult) -> list[Row]:
    sec = "3 memory/lookup"
    snap = (f"p50 {_ms(m.snapshot_with_callers_ms_p50)}, max {_ms(m.snapshot_with_callers_ms_max)}, "
            f"{m.snapshot_callers:,} callers listed")
    if m.snapshot_error:
        snap = f"FAILED: {m.snapshot_error}"
    return [
        Row(sec, f"leader RSS before / after {m.callers:,} waiting callers",
            f"{m.rss_before / 2**20:,.1f} MiB / {m.rss_after / 2**20:,.1f} MiB (queue reports {m.waiting_reported:,})"),
        Row(sec, "leader RSS per waiting caller", f"{m.bytes_per_caller:,.0f} B"),
        Row(sec, "engine memory per waiting caller (tracemalloc)", f"{m.engine_bytes_per_caller:,.0f} B"),
        Row(sec, "Stats.Snapshot (no callers) round trip",
            f"p50 {_ms(m.snapshot_ms_p50)}, max {_ms(m.snapshot_ms_max)}"),
        Row(sec, "Stats.Snapshot include_callers round trip", snap),
        Row(sec, "QueueEngine.position() on 10k callers", f"{m.position_us:.2f} us"),
        Row(sec, "QueueEngine.estimated_wait() / caller() on 10k", f"{m.estimated_wait_us:.2f} us / "
            f"{m.caller_view_us:.2f} us"),
    ]


def _failover_rows(f: FailoverResult) -> list[Row]:
    sec = "4 failover"
    n = len(f.samples)
    out = [Row(sec, "kills measured / failed", f"{n} / {len(f.errors)}")]
    if n:
        out += [
            Row(sec, "SIGKILL -> first new-epoch Offer at a node",
                f"min {_s(f.stat('to_offer', 0))}, median {_s(f.median_offer)}, "
                f"p90 {_s(f.stat('to_offer', 0.9))}, max {_s(f.stat('to_offer', 1.0))}",
                "~TTL + 1 s = 3.0 s (README)", _score(f.median_offer, 3.0, False)),
            Row(sec, "  SIGKILL -> node registered at the new leader (median / max)",
                f"{_s(f.stat('to_reregistered', 0.5))} / {_s(f.stat('to_reregistered', 1.0))}"),
            Row(sec, "  SIGKILL -> Unpause accepted by the new leader (median / max)",
                f"{_s(f.stat('to_unpaused', 0.5))} / {_s(f.stat('to_unpaused', 1.0))}"),
        ]
    out += [Row(sec, "error", e) for e in f.errors]
    return out


def _floor_rows(floor: list[FloorPoint]) -> list[Row]:
    return [Row("1 throughput", f"gRPC floor: bare grpc.aio echo, {p.events}-event messages (ping-pong)",
                f"{p.messages_per_second:,.0f} msg/s, server CPU {p.server_cpu_us_per_message:,.0f} us/message "
                f"= {p.server_cpu_us_per_event:,.1f} us/event") for p in floor]


def _agent_rows(points: list[AgentScalePoint]) -> list[Row]:
    sec = "5 agents (engine, in-process)"
    out = []
    for p in points:
        out.append(Row(sec, f"{p.agents:,} agents: log all in / NOT_INUSE report of each",
                       f"{p.login_all_ms:,.1f} ms / {p.device_reports_ms:,.1f} ms"))
        out.append(Row(sec, f"{p.agents:,} free agents: join + answer + end, line empty / behind an unservable caller",
                       f"{p.cycle_us / 1e3:,.2f} ms / {p.cycle_behind_unservable_us / 1e3:,.2f} ms"))
    return out


def rows(throughput: ThroughputResult | None, floor: list[FloorPoint], latency: list[LatencyPoint],
         memory: MemoryResult | None, failover: FailoverResult | None,
         agents: list[AgentScalePoint] | None = None) -> list[Row]:
    """Every row, in section order (sections that did not run are left out)."""
    out: list[Row] = []
    if throughput is not None:
        out += _throughput_rows(throughput)
    out += _floor_rows(floor)
    out += _latency_rows(latency)
    if memory is not None:
        out += _memory_rows(memory)
    if failover is not None:
        out += _failover_rows(failover)
    return out + _agent_rows(agents or [])


def _fmt_score(score: float | None) -> str:
    if score is None:
        return ""
    mark = "meets" if score >= 1.0 else "misses"
    return f"{score:.2f} {mark}"


def render_text(table: list[Row]) -> str:
    """A fixed-width table for the terminal."""
    w_metric = max((len(r.metric) for r in table), default=10)
    lines = []
    section = ""
    for r in table:
        if r.section != section:
            section = r.section
            lines.append(f"\n== {section}")
        target = f"  [target {r.target}: {_fmt_score(r.score)}]" if r.target else ""
        lines.append(f"  {r.metric:<{w_metric}}  {r.value}{target}")
    return "\n".join(lines)


def render_markdown(table: list[Row]) -> str:
    """A markdown table (docs/benchmarks.md)."""
    lines = ["| section | metric | figure | target | score (>= 1 meets) |", "|---|---|---|---|---|"]
    for r in table:
        score = f"{r.score:.2f}" if r.score is not None else ""
        lines.append(f"| {r.section} | {r.metric} | {r.value.replace('|', '/')} | {r.target} | {score} |")
    return "\n".join(lines)


def _cpuinfo_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _mem_total() -> str:
    with open("/proc/meminfo", encoding="ascii") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                return f"{int(line.split()[1]) / 2**20:.1f} GiB"
    return "unknown"


def _etcd_version() -> str:
    try:
        out = subprocess.run([str(default_etcd_binary()), "--version"], capture_output=True, text=True,
                             timeout=10, check=False).stdout
    except OSError as exc:
        return f"unavailable ({exc})"
    return next((line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("etcd Version")),
                "unknown")


def loadavg() -> str:
    """The 1/5/15-minute load averages (other work on the machine skews every figure)."""
    with open("/proc/loadavg", encoding="ascii") as f:
        return " ".join(f.read().split()[:3])


def machine() -> list[tuple[str, str]]:
    """What the figures were measured on."""
    return [
        ("nproc", f"{len(os.sched_getaffinity(0))} (os.cpu_count {os.cpu_count()})"),
        ("CPU", _cpuinfo_model()),
        ("RAM", _mem_total()),
        ("kernel", platform.release()),
        ("python", platform.python_version()),
        ("grpcio / protobuf", f"{grpc.__version__} / {protobuf_version}"),
        ("etcd", _etcd_version()),
    ]

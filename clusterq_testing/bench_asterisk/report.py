"""The bench's table: clusterq beside app_queue with ratios and targets, as text and as markdown."""

from __future__ import annotations

import math
import os
import platform
import sys
from collections.abc import Callable
from dataclasses import dataclass

from clusterq_testing.bench_asterisk.rig import BenchSettings
from clusterq_testing.bench_asterisk.scenarios import CpuResult, RunResult
from clusterq_testing.bench_asterisk.side_by_side import SideBySide

__all__ = ["FOREIGN_LOAD_LIMIT", "Machine", "Results", "Row", "foreign_load", "machine", "markdown", "rows",
           "text_table", "verdicts"]

FOREIGN_LOAD_LIMIT = 0.2  # cores of other load above which a run's figures are flagged as not clean


@dataclass(frozen=True)
class Machine:
    """Where the bench ran."""

    cpus: int
    cpu_model: str
    ram_gib: float
    asterisk: str
    python: str
    kernel: str

    def line(self) -> str:
        """One line for the console."""
        return (f"{self.cpus} CPUs ({self.cpu_model}), {self.ram_gib:.0f} GiB RAM, {self.asterisk}, "
                f"Python {self.python}, Linux {self.kernel}")


def _proc_field(path: str, key: str) -> str:
    try:
        with open(path, encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith(key):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "?"


def machine(asterisk_version: str) -> Machine:
    """The machine as seen from /proc, plus the given Asterisk version line."""
    mem = _proc_field("/proc/meminfo", "MemTotal")
    ram = int(mem.split()[0]) / 1024 / 1024 if mem != "?" else math.nan
    return Machine(os.cpu_count() or 0, _proc_field("/proc/cpuinfo", "model name"), ram,
                   asterisk_version.strip().split(" built by")[0], platform.python_version(), platform.release())


@dataclass(frozen=True)
class Results:
    """Everything one bench run measured (None: that part did not run or failed)."""

    settings: BenchSettings
    cq_cpu: CpuResult | None = None
    aq_cpu: CpuResult | None = None
    cq_plain: RunResult | None = None
    aq_plain: RunResult | None = None
    cq_ann: RunResult | None = None
    aq_ann: RunResult | None = None
    side: SideBySide | None = None


@dataclass(frozen=True)
class Row:
    """One line of the table: clusterq, app_queue, ratio (cq / aq) and the target, as text."""

    metric: str
    clusterq: str
    app_queue: str
    ratio: str
    target: str = ""


def _num(v: float | None, digits: int = 1) -> str:
    return "-" if v is None or math.isnan(v) else f"{v:.{digits}f}"


def _ratio(a: float | None, b: float | None) -> str:
    if a is None or b is None or math.isnan(a) or math.isnan(b) or b == 0:
        return "-"
    return f"{a / b:.2f}"


def _pair(metric: str, cq: float | None, aq: float | None, digits: int = 1, target: str = "") -> Row:
    return Row(metric, _num(cq, digits), _num(aq, digits), _ratio(cq, aq), target)


def _run_value(run: RunResult | None, get: Callable[[RunResult], float]) -> float | None:
    return None if run is None else get(run)


def rows(r: Results) -> list[Row]:
    """The table rows, main figures first, then diagnostics."""
    cc, ac = r.cq_cpu, r.aq_cpu
    out = [
        Row("waiting callers' music", "shared stream per class" if r.settings.shared_music else "one per caller",
            "one per caller", ""),
        _pair("CPU per waiting caller, ms CPU / s", _cpu_value(cc, lambda c: c.cpu_ms_per_caller),
              _cpu_value(ac, lambda c: c.cpu_ms_per_caller), 2, "cq <= aq"),
        _cpu_row("  noise (half the difference of the two halves)", cc, ac,
                 lambda x: f"{x.noise_ms_per_caller:.2f}"),
        _cpu_row("  of which Asterisk / stasis app", cc, ac, lambda x: _split(x.cores(False), x.cores(True), x)),
        _cpu_row("  Asterisk cores idle / loaded halves", cc, ac,
                 lambda x: " / ".join(f"{w.asterisk.cores:.2f}" for w in (x.idle, *x.halves))),
        _pair("RSS per waiting caller, KiB", _cpu_value(cc, lambda c: c.rss_kib_per_caller(True)),
              _cpu_value(ac, lambda c: c.rss_kib_per_caller(False)), 0),
        _cpu_row("  of which Asterisk / stasis app", cc, ac, _rss_split),
    ]
    sb = r.side
    if sb is not None:
        out += [
            _pair(f"CPU per waiting caller, both at once ({sb.callers} + {sb.callers} callers), ms CPU / s",
                  sb.cq_ms_per_caller, sb.aq_ms_per_caller, 2, "cq <= aq"),
            Row("  of which Asterisk caller threads / stasis app",
                f"{sb.cq_asterisk_cores * 1000 / sb.callers:.2f} / {sb.stasis_cores * 1000 / sb.callers:.2f}",
                f"{sb.aq_asterisk_cores * 1000 / sb.callers:.2f} / -", ""),
            Row("  caller threads (2 per caller expected); Asterisk shared threads, cores",
                f"{sb.cq_threads}; {sb.shared_cores:.2f}", f"{sb.aq_threads}", ""),
        ]
    for label, cq, aq, target in (("off", r.cq_plain, r.aq_plain, ""), ("on", r.cq_ann, r.aq_ann, "cq <= 100")):
        out += [
            _pair(f"free -> bridged p50, announcements {label}, ms", _run_value(cq, lambda x: x.latency.p(50)),
                  _run_value(aq, lambda x: x.latency.p(50)), 0),
            _pair(f"free -> bridged p99, announcements {label}, ms", _run_value(cq, lambda x: x.latency.p(99)),
                  _run_value(aq, lambda x: x.latency.p(99)), 0, target),
            _pair(f"order inversions (callers), announcements {label}",
                  _run_value(cq, lambda x: x.by_bridge.callers), _run_value(aq, lambda x: x.by_bridge.callers), 0,
                  "cq = 0"),
        ]
    out.append(Row("diagnostics", "", "", ""))
    for label, cq, aq in (("off", r.cq_plain, r.aq_plain), ("on", r.cq_ann, r.aq_ann)):
        out += [
            _both(f"  free -> agent leg created p50 / p99 ({label}), ms", cq, aq,
                  lambda y: f"{_num(y.latency.rung_p(50), 0)} / {_num(y.latency.rung_p(99), 0)}"),
            _both(f"  free -> bridged max ({label}), ms", cq, aq, lambda y: _num(y.latency.p(100), 0)),
            _both(f"  inversions by bridge, pairs ({label})", cq, aq, lambda y: str(y.by_bridge.pairs)),
            _both(f"  inversions by leg creation, callers / pairs ({label})", cq, aq,
                  lambda y: f"{y.by_assignment.callers} / {y.by_assignment.pairs}"),
            _both(f"  inversions by clusterq offer order, connected callers ({label})", cq, aq,
                  lambda y: "-" if y.by_decision is None else str(y.by_decision.callers)),
            _both(f"  connected / latencies / callers ({label})", cq, aq,
                  lambda y: f"{y.connected} / {len(y.latency.free_to_bridged)} / {y.callers}"),
            _both(f"  agent rung while in a call ({label})", cq, aq, lambda y: str(y.latency.ringinuse_violations)),
            _both(f"  drain, s ({label})", cq, aq,
                  lambda y: f"{y.drain_seconds:.1f}{' (cap)' if y.capped else ''}"),
            _both(f"  cores during drain ast / stasis / coord ({label})", cq, aq,
                  lambda y: f"{y.cpu.asterisk.cores:.2f}/{y.cpu.stasis.cores:.2f}/{y.cpu.coordinator.cores:.2f}"),
            _both(f"  back in the dialplan with ({label})", cq, aq,
                  lambda y: " ".join(f"{k}:{v}" for k, v in y.statuses) or "-"),
            _both(f"  failed ARI actions in the stasis app log ({label})", cq, aq, lambda y: str(y.stasis_failures)),
            _both(f"  other load during the drain: foreign processes / steal ({label}), cores", cq, aq,
                  lambda y: f"{y.cpu.foreign_cores:.2f} / {y.cpu.steal_cores:.2f}"),
        ]
    out.append(_cpu_row("  other load (foreign processes + steal), idle / halves, cores", cc, ac,
                        lambda x: " / ".join(f"{w.foreign_cores + w.steal_cores:.2f}" for w in (x.idle, *x.halves))))
    out.append(_cpu_row("  channels up during the CPU window (2 per caller)", cc, ac,
                        lambda x: str(x.channels_during)))
    out.append(_cpu_row("  failed ARI actions in the stasis app log (CPU phase)", cc, ac,
                        lambda x: str(x.stasis_failures)))
    return out


def _split(ast_cores: float, all_cores: float, c: CpuResult) -> str:
    per = 1000 / c.callers
    return f"{ast_cores * per:.2f} / {(all_cores - ast_cores) * per:.2f}"


def _rss_split(c: CpuResult) -> str:
    ast = c.rss_kib_per_caller(False)
    return f"{ast:.0f} / {c.rss_kib_per_caller(True) - ast:.0f}"


def _cpu_row(metric: str, cq: CpuResult | None, aq: CpuResult | None, show: Callable[[CpuResult], str]) -> Row:
    return Row(metric, "-" if cq is None else show(cq), "-" if aq is None else show(aq), "")


def _both(metric: str, cq: RunResult | None, aq: RunResult | None, show: Callable[[RunResult], str]) -> Row:
    return Row(metric, "-" if cq is None else show(cq), "-" if aq is None else show(aq), "")


def _cpu_value(c: CpuResult | None, get: Callable[[CpuResult], float]) -> float | None:
    return None if c is None else get(c)


def verdicts(r: Results) -> list[tuple[str, bool | None]]:
    """The targets of the brief (CPU measured two ways): (description, met?), None when not measured."""
    cpu = None if r.cq_cpu is None or r.aq_cpu is None else (
        r.cq_cpu.cpu_ms_per_caller <= r.aq_cpu.cpu_ms_per_caller)
    diff = "" if r.cq_cpu is None or r.aq_cpu is None or r.aq_cpu.cpu_ms_per_caller <= 0 else (
        f" ({(r.cq_cpu.cpu_ms_per_caller / r.aq_cpu.cpu_ms_per_caller - 1) * 100:+.0f} %; runs on 2 shared vCPUs"
        " spread by about +-15 %)")
    p99 = None if r.cq_ann is None else r.cq_ann.latency.p(99) <= 100.0
    runs = [x for x in (r.cq_plain, r.cq_ann) if x is not None]
    order = None if not runs else all(x.by_bridge.callers == 0 and x.connected == x.callers for x in runs)
    both = None if r.side is None else r.side.cq_ms_per_caller <= r.side.aq_ms_per_caller
    both_diff = "" if r.side is None or r.side.aq_ms_per_caller <= 0 else (
        f" ({(r.side.cq_ms_per_caller / r.side.aq_ms_per_caller - 1) * 100:+.0f} %)")
    return [(f"clusterq CPU per waiting caller <= app_queue's, one after the other{diff}", cpu),
            (f"clusterq CPU per waiting caller <= app_queue's, both at once on one Asterisk{both_diff}", both),
            ("clusterq free-to-bridged p99 <= 100 ms with announcements on", p99),
            ("clusterq: zero order inversions, every caller connected", order)]


def foreign_load(r: Results) -> float:
    """The largest other load (foreign processes + steal, in cores) seen in any window of the run."""
    windows = [w for c in (r.cq_cpu, r.aq_cpu) if c is not None for w in (c.idle, *c.halves)]
    windows += [x.cpu for x in (r.cq_plain, r.aq_plain, r.cq_ann, r.aq_ann) if x is not None]
    windows += [r.side.window] if r.side is not None else []
    return max((w.foreign_cores + w.steal_cores for w in windows), default=0.0)


def _load_warning(r: Results) -> list[str]:
    load = foreign_load(r)
    if load <= FOREIGN_LOAD_LIMIT:
        return []
    return [f"WARNING: other load on this machine reached {load:.2f} cores during the run "
            "(other processes or hypervisor steal): the figures are not clean; rerun on a quiet machine."]


def text_table(r: Results, m: Machine | None) -> str:
    """The console form."""
    s = r.settings
    head = (f"clusterq vs app_queue on one Asterisk node: {s.callers} callers with music, {s.agents} agents "
            f"(talk {s.talk_min_ms}-{s.talk_max_ms} ms, ring {s.ring:g} s), announcements every "
            f"{s.announce_frequency:g} s (min {s.min_announce_frequency:g} s), drain cap {s.drain_cap:g} s")
    lines = [head] + ([m.line()] if m else []) + [""]
    w = max(len(x.metric) for x in rows(r))
    lines.append(f"{'metric':<{w}}  {'clusterq':>14}  {'app_queue':>14}  {'cq/aq':>6}  target")
    for row in rows(r):
        lines.append(f"{row.metric:<{w}}  {row.clusterq:>14}  {row.app_queue:>14}  {row.ratio:>6}  {row.target}")
    lines.append("")
    for text, ok in verdicts(r):
        lines.append(f"{'MET    ' if ok else 'NOT MET' if ok is not None else 'n/a    '}  {text}")
    return "\n".join(lines + _load_warning(r))


def markdown(r: Results, m: Machine | None, command: str) -> str:
    """The markdown form (machine, command, table, targets)."""
    out = []
    if m is not None:
        out += [f"Machine: {m.cpus} CPUs ({m.cpu_model}), {m.ram_gib:.0f} GiB RAM; {m.asterisk}; "
                f"Python {m.python}; Linux {m.kernel}.", ""]
    out += [f"Command: `{command}`", "", "| metric | clusterq | app_queue | clusterq / app_queue | target |",
            "|---|---:|---:|---:|---|"]
    out += [f"| {x.metric.strip()} | {x.clusterq} | {x.app_queue} | {x.ratio} | {x.target} |" for x in rows(r)]
    out += ["", *(f"- {'met' if ok else 'NOT met' if ok is not None else 'not measured'}: {t}"
                  for t, ok in verdicts(r)), *(f"- {w}" for w in _load_warning(r))]
    return "\n".join(out) + "\n"


def command_line() -> str:
    """How this process was started (for the report)."""
    return " ".join(["python -m clusterq_testing.bench_asterisk", *sys.argv[1:]])

"""Prometheus metrics of one replica: what is exported, collected from the replica's state and
rendered in the text exposition format 0.0.4 (pure: figures in, text out; served by metrics_http).

Every replica exports `clusterq_leader` (1 on the leader, else 0) and `clusterq_build_info`. The
leader alone has queues, so it alone exports `clusterq_leader_epoch`, the per-queue figures and the
runtime counters; a follower exports none of them, not even as 0: a follower's "0 answered" would be
a figure of a term it does not run. All counters count since the current leadership term began
(the engine's statistics live in the leader's memory): each term restarts them at 0 on another
replica, and Prometheus sees a new series, or a counter reset when the same replica leads again, so
`rate()` / `increase()` stay right; aggregate across replicas with `sum without (instance, pod)`.
A queue's counters also restart at 0 when it is deleted and defined again within a term.

Cost, for 1,000 queues x 20 member agents (tests/unit/coordinator/test_metrics.py times it):
`collect` ~15-20 ms, almost all of it the engine's own snapshot (the same call Stats.Watch makes),
on the event loop; `render` ~10 ms for 0.85 MB of text, run by metrics_http in a worker thread
(its input is immutable) so the loop is not held for it in one piece.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from clusterq_common.prometheus import CONTENT_TYPE, build_version, escape_label, number
from clusterq_common.prometheus import header as _header
from coordinator.queue import QueueStats
from coordinator.runtime import LeaderRuntime

__all__ = ["CONTENT_TYPE", "LeaderFigures", "QueueFigures", "ReplicaFigures", "build_version", "collect", "render"]


@dataclass(frozen=True, slots=True)
class QueueFigures:
    """One queue's engine statistics and its service-level threshold (seconds)."""

    stats: QueueStats
    service_level: float


@dataclass(frozen=True, slots=True)
class LeaderFigures:
    """What only the leader knows, as of one moment of its term."""

    epoch: int
    queues: tuple[QueueFigures, ...]
    events_applied: int
    decisions_sent: int
    nodes_attached: int


@dataclass(frozen=True, slots=True)
class ReplicaFigures:
    """Everything one scrape exports; `leader` is None on a follower."""

    version: str | None
    leader: LeaderFigures | None


def collect(rt: LeaderRuntime | None, version: str | None) -> ReplicaFigures:
    """The figures of this replica now: `rt` is its runtime while it leads (ReplicaState.runtime),
    read without an await in between, as the Stats service reads it."""
    if rt is None or rt.closed:
        return ReplicaFigures(version, None)
    configs = rt.queues
    queues = tuple(QueueFigures(s, cfg.service_level if (cfg := configs.get(s.queue)) is not None else math.nan)
                   for s in rt.engine.snapshot(rt.clock()))
    return ReplicaFigures(version, LeaderFigures(rt.epoch, queues, rt.events_applied, rt.decisions_sent,
                                                 len(rt.links)))


# ---- rendering -------------------------------------------------------------------------------------
def _ratio(part: float, counted: int) -> float:
    # The engine says 0 % when nothing was counted yet; NaN keeps a quiet queue out of `< 0.8` alerts.
    return part / 100.0 if counted else math.nan


TERM = " Restarts at 0 with each leadership term (a counter reset)."

# Per-queue families, in output order: (name, type, HELP, value of one queue).
QUEUE_FAMILIES: tuple[tuple[str, str, str, Callable[[QueueFigures], float]], ...] = (
    ("clusterq_queue_callers_waiting", "gauge", "Callers waiting in the queue.", lambda q: q.stats.waiting),
    ("clusterq_queue_longest_wait_seconds", "gauge", "How long the longest-waiting caller has waited.",
     lambda q: q.stats.longest_wait),
    ("clusterq_queue_answered_total", "counter", "Callers connected to an agent." + TERM,
     lambda q: q.stats.answered),
    ("clusterq_queue_abandoned_total", "counter",
     "Callers who hung up (or left on their own) while waiting or ringing." + TERM, lambda q: q.stats.abandoned),
    ("clusterq_queue_timed_out_total", "counter", "Callers who left because the queue's max wait passed." + TERM,
     lambda q: q.stats.timed_out),
    ("clusterq_queue_service_level_ratio", "gauge",
     "Answered within the service level threshold / answered, as app_queue's SL (0..1; NaN before the first "
     "answer). Counted since the current leadership term began.",
     lambda q: _ratio(q.stats.service_level_pct, q.stats.answered)),
    ("clusterq_queue_service_level2_ratio", "gauge",
     "(Answered + abandoned within the service level threshold) / (answered + abandoned), as app_queue's SL2 "
     "(0..1; NaN before the first answer or abandon). Counted since the current leadership term began.",
     lambda q: _ratio(q.stats.service_level2_pct, q.stats.answered + q.stats.abandoned)),
    ("clusterq_queue_service_level_threshold_seconds", "gauge",
     "The queue's service level threshold (its servicelevel setting).", lambda q: q.service_level),
    ("clusterq_queue_asa_seconds", "gauge",
     "Average speed of answer: mean wait of answered callers this leadership term (0 before the first answer).",
     lambda q: q.stats.asa),
    ("clusterq_queue_talk_time_average_seconds", "gauge",
     "Mean talk time of calls ended this leadership term (0 before the first).", lambda q: q.stats.avg_talk_time),
    ("clusterq_queue_holdtime_seconds", "gauge",
     "Exponentially weighted average wait of answered callers, as app_queue's holdtime.",
     lambda q: q.stats.holdtime_ewma),
    ("clusterq_queue_agents_logged_in", "gauge", "Agents who are members of the queue.",
     lambda q: q.stats.agents_logged_in),
    ("clusterq_queue_agents_available", "gauge", "Member agents who can be offered a call now.",
     lambda q: q.stats.agents_available),
    ("clusterq_queue_agents_paused", "gauge", "Member agents who are paused (a paused agent may also be busy).",
     lambda q: q.stats.agents_paused),
    ("clusterq_queue_agents_busy", "gauge", "Member agents in a call or being rung.", lambda q: q.stats.agents_busy),
)


def _queue_families(out: list[str], queues: Iterable[QueueFigures]) -> None:
    rows = [(f'{{queue="{escape_label(q.stats.queue)}"}} ', q) for q in queues]
    if not rows:
        return
    for name, kind, help_text, value in QUEUE_FAMILIES:
        _header(out, name, kind, help_text)
        out.extend([f"{name}{labels}{number(value(q))}" for labels, q in rows])


def render(figures: ReplicaFigures) -> str:
    """The exposition text of `figures` (format 0.0.4; one family's samples together, after its
    HELP and TYPE lines; the text ends with a line feed)."""
    out: list[str] = []
    lead = figures.leader
    _header(out, "clusterq_leader", "gauge", "1 on the replica that leads the cluster, else 0.")
    out.append(f"clusterq_leader {int(lead is not None)}")
    if figures.version is not None:
        _header(out, "clusterq_build_info", "gauge", "Always 1; the label carries the clusterq version.")
        out.append(f'clusterq_build_info{{version="{escape_label(figures.version)}"}} 1')
    if lead is not None:
        _header(out, "clusterq_leader_epoch", "gauge",
                "The epoch of the current leadership term (grows with each term); exported by the leader only.")
        out.append(f"clusterq_leader_epoch {lead.epoch}")
        _header(out, "clusterq_events_applied_total", "counter", "Events the leader's engine applied." + TERM)
        out.append(f"clusterq_events_applied_total {lead.events_applied}")
        _header(out, "clusterq_decisions_sent_total", "counter", "Decisions the leader sent to nodes." + TERM)
        out.append(f"clusterq_decisions_sent_total {lead.decisions_sent}")
        _header(out, "clusterq_nodes_attached", "gauge", "Stasis app nodes with a stream to the leader.")
        out.append(f"clusterq_nodes_attached {lead.nodes_attached}")
        _queue_families(out, lead.queues)
    out.append("")
    return "\n".join(out)

"""Result values of the benchmark scenarios (frozen) and the percentile helper they share."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = [
    "FailoverResult",
    "FailoverSample",
    "LatencyPoint",
    "MemoryResult",
    "ThroughputResult",
    "percentile",
]


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..1) of values; inf for an empty sequence."""
    if not values:
        return math.inf
    ordered = sorted(values)
    rank = max(1, math.ceil(q * len(ordered)))
    return ordered[rank - 1]


@dataclass(frozen=True)
class ThroughputResult:
    """Saturation run: events the leader provably applied per wall second and per CPU second."""

    events: int
    seconds: float
    leader_cpu_seconds: float
    client_cpu_share: float
    decisions_per_second: float
    latency_p50_ms: float
    engine_events_per_second: float
    runtime_events_per_second: float

    @property
    def events_per_second(self) -> float:
        """Applied events per wall-clock second."""
        return self.events / self.seconds

    @property
    def leader_cpu_share(self) -> float:
        """Leader CPU seconds per wall second (1.0 = one core busy)."""
        return self.leader_cpu_seconds / self.seconds

    @property
    def events_per_core_second(self) -> float:
        """Applied events per second of leader CPU: the one-core capacity."""
        return self.events / self.leader_cpu_seconds if self.leader_cpu_seconds else math.inf


@dataclass(frozen=True)
class LatencyPoint:
    """One fixed offered load: CallJoined sent -> JoinAck received, as the simulated nodes saw it."""

    offered: float
    sent: int
    skipped: int
    seconds: float
    joins: int
    unanswered: int
    p50_ms: float
    p99_ms: float
    max_ms: float
    leader_cpu_share: float
    client_cpu_share: float
    messages_in: int
    """EventBatch messages the nodes sent during the measured run."""
    messages_out: int
    """Decision messages the nodes received during the measured run."""

    @property
    def achieved(self) -> float:
        """Events actually sent (and applied: the run drained) per second."""
        return self.sent / self.seconds


@dataclass(frozen=True)
class MemoryResult:
    """10k waiting callers: leader RSS growth and lookup costs."""

    callers: int
    rss_before: int
    rss_after: int
    waiting_reported: int
    snapshot_ms_p50: float
    snapshot_ms_max: float
    snapshot_error: str
    snapshot_callers: int
    snapshot_with_callers_ms_p50: float
    snapshot_with_callers_ms_max: float
    position_us: float
    estimated_wait_us: float
    caller_view_us: float
    engine_bytes_per_caller: float

    @property
    def bytes_per_caller(self) -> float:
        """RSS growth per waiting caller (whole leader process)."""
        return (self.rss_after - self.rss_before) / self.callers


@dataclass(frozen=True)
class FailoverSample:
    """One leader kill: seconds from SIGKILL to each milestone (inf when it never happened)."""

    old_epoch: int
    new_epoch: int
    to_reregistered: float
    to_unpaused: float
    to_offer: float


@dataclass(frozen=True)
class FailoverResult:
    """Every kill of a failover run."""

    samples: tuple[FailoverSample, ...]
    errors: tuple[str, ...]

    def stat(self, attr: str, q: float) -> float:
        """Percentile q of one milestone over all kills."""
        return percentile([getattr(s, attr) for s in self.samples], q)

    @property
    def median_offer(self) -> float:
        """Median kill -> first new-epoch Offer, seconds."""
        vals = [s.to_offer for s in self.samples]
        return statistics.median(vals) if vals else math.inf

"""Leader election over etcd: Session (lease), Election (campaign/fence), run_elected (lifecycle)."""

from coordinator.election.election import Election, Fence, FenceLost, LeaderInfo
from coordinator.election.leader import ElectionTiming, LeadershipLost, fenced_txn, run_elected
from coordinator.election.session import MIN_TTL, Clock, MonotonicClock, Session, SessionLost

__all__ = [
    "MIN_TTL",
    "Clock",
    "Election",
    "ElectionTiming",
    "Fence",
    "FenceLost",
    "LeaderInfo",
    "LeadershipLost",
    "MonotonicClock",
    "Session",
    "SessionLost",
    "fenced_txn",
    "run_elected",
]

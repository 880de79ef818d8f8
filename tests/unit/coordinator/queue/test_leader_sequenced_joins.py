"""Live joins sequenced by the leader (arrival_seq given, re_report False) still get admission checks,
position overrides and arrival statistics; re-reports do not."""

from __future__ import annotations

from coordinator.queue import (
    CallerJoined,
    CallerStatus,
    JoinAccepted,
    JoinRejected,
    QueueConfig,
    QueueDefined,
    QueueEngine,
)


def _engine(**cfg: object) -> QueueEngine:
    e = QueueEngine()
    e.apply(QueueDefined(QueueConfig(name="q", **cfg)), 0.0)  # type: ignore[arg-type]
    return e


def test_maxlen_applies_to_leader_sequenced_live_joins() -> None:
    e = _engine(maxlen=1)
    first = e.apply(CallerJoined("c1", "q", "a", arrival_seq=10, re_report=False), 1.0)
    second = e.apply(CallerJoined("c2", "q", "a", arrival_seq=11, re_report=False), 1.0)
    assert isinstance(first[0], JoinAccepted) and first[0].arrival_seq == 10
    assert isinstance(second[0], JoinRejected) and second[0].status is CallerStatus.FULL


def test_re_reports_skip_admission_and_keep_their_sequence() -> None:
    e = _engine(maxlen=1)
    e.apply(CallerJoined("c1", "q", "a", arrival_seq=10, re_report=False), 1.0)
    again = e.apply(CallerJoined("c2", "q", "a", arrival_seq=5, re_report=True), 2.0)
    assert isinstance(again[0], JoinAccepted) and again[0].arrival_seq == 5
    assert e.position("c2") == 1 and e.position("c1") == 2


def test_position_override_applies_to_live_joins() -> None:
    e = _engine()
    for i in range(1, 4):
        e.apply(CallerJoined(f"c{i}", "q", "a", arrival_seq=i, re_report=False), 1.0)
    e.apply(CallerJoined("vip", "q", "a", position=1, arrival_seq=4, re_report=False), 1.0)
    assert e.position("vip") == 1 and e.position("c1") == 2

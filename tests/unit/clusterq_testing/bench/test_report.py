"""The latency rows of the bench table, and the spread rows added when a rate was measured more than once."""

from __future__ import annotations

import math

from clusterq_testing.bench.report import rows
from clusterq_testing.bench.results import LatencyPoint


def _point(offered: float, p99: float) -> LatencyPoint:
    return LatencyPoint(offered=offered, sent=int(offered * 5), skipped=0, seconds=5.0, joins=1000, unanswered=0,
                        p50_ms=p99 / 2, p99_ms=p99, max_ms=p99 * 1.5, leader_cpu_share=0.8, client_cpu_share=0.8,
                        messages_in=100, messages_out=100)


def test_one_sweep_has_one_row_per_point_and_no_spread_rows() -> None:
    table = rows(None, [], [_point(10_000, 5.0), _point(20_000, 12.0)], None, None)
    assert [r.metric.split(" (")[0] for r in table] == ["offered 10,000 events/s", "offered 20,000 events/s"]
    assert table[1].target == "p99 <= 10 ms" and table[1].score is not None
    assert math.isclose(table[1].score, 10 / 12)


def test_repeated_rates_get_their_p99_spread_scored_on_the_median() -> None:
    points = [_point(10_000, 5.0), _point(20_000, 8.0), _point(10_000, 6.0), _point(20_000, 13.0),
              _point(10_000, 7.0), _point(20_000, 9.0)]
    table = rows(None, [], points, None, None)
    spread = {r.metric: r for r in table if "over" in r.metric}
    assert set(spread) == {"offered 10,000 events/s: p99 over 3 runs", "offered 20,000 events/s: p99 over 3 runs"}
    low = spread["offered 10,000 events/s: p99 over 3 runs"]
    assert low.value == "min 5.00 ms, median 6.00 ms, max 7.00 ms" and low.score is None
    high = spread["offered 20,000 events/s: p99 over 3 runs"]
    assert high.value == "min 8.00 ms, median 9.00 ms, max 13.00 ms; <= 10 ms in 2 of 3"
    assert high.target == "p99 <= 10 ms (median)"
    assert high.score is not None and math.isclose(high.score, 10 / 9)
    assert len(table) == 6 + 2  # every run keeps its own row

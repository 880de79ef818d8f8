"""Connections, latencies and inversions from ARI events (pure)."""

from __future__ import annotations

import math
from typing import Any

import pytest

from clusterq_testing.bench_asterisk import analysis as an


def _ts(ms: int) -> str:
    return f"2026-11-26T12:00:{ms // 1000:02d}.{ms % 1000:03d}+0000"


def _ev(kind: str, ms: int, cid: str, name: str, bridge: list[str] | None = None) -> dict[str, Any]:
    e: dict[str, Any] = {"type": kind, "timestamp": _ts(ms), "channel": {"id": cid, "name": name}}
    if bridge is not None:
        e["bridge"] = {"id": "b", "channels": bridge}
    return e


def _call(agent: str, uid: str, leg: str, caller: str, created: int, bridged: int, ended: int) -> list[dict[str, Any]]:
    n1, n2 = f"Local/{agent}@clusterq-agents-bench-{uid};1", f"Local/{agent}@clusterq-agents-bench-{uid};2"
    return [
        _ev("ChannelCreated", created, leg, n1),
        _ev("ChannelCreated", created, leg + ";2", n2),
        _ev("ChannelEnteredBridge", bridged - 1, caller, "Local/q@x-1;2", [caller]),
        _ev("ChannelEnteredBridge", bridged, leg, n1, [caller, leg]),
        _ev("ChannelHangupRequest", ended, leg + ";2", n2),
        _ev("ChannelDestroyed", ended + 2, leg, n1),
    ]


def test_latency_is_from_the_end_of_the_previous_call_to_the_next_bridge() -> None:
    events = [*_call("agent1", "0001", "a-ag-e2-1_", "q0", 1000, 1010, 2000),
              *_call("agent1", "0002", "a-ag-e2-2_", "q1", 2030, 2045, 3000)]
    conns = an.connections(events, {"q0": 0, "q1": 1})
    assert [(c.agent, c.caller_index) for c in conns] == [("agent1", 0), ("agent1", 1)]
    lat = an.latencies(conns)
    assert lat.free_to_bridged == pytest.approx((45.0,)) and lat.free_to_rung == pytest.approx((30.0,))
    assert lat.ringinuse_violations == 0
    assert an.offer_sequence(conns[1].leg_id) == 2


def test_a_leg_rung_before_the_previous_call_ended_is_a_ringinuse_violation() -> None:
    events = [*_call("agent1", "0001", "a-ag-e2-1_", "q0", 1000, 1010, 2000),
              *_call("agent1", "0002", "a-ag-e2-2_", "q1", 1500, 2045, 3000)]
    lat = an.latencies(an.connections(events, {"q0": 0, "q1": 1}))
    assert lat.ringinuse_violations == 1 and lat.free_to_bridged == ()


def test_inversions_count_callers_served_before_an_earlier_caller_and_skipped_ones() -> None:
    assert an.inversions([(1.0, 0), (2.0, 1), (3.0, 2)]) == an.Inversions(0, 0)
    assert an.inversions([(1.0, 1), (2.0, 0), (3.0, 2)]) == an.Inversions(1, 1)
    assert an.inversions([(1.0, 0), (1.0, 1)]) == an.Inversions(0, 0)  # equal times never count
    assert an.inversions([(1.0, 1), (2.0, 2)], unserved=[0]) == an.Inversions(2, 2)


def test_callers_that_joined_in_the_same_millisecond_are_a_tie() -> None:
    joined = [10.001, 10.001, 10.002]
    assert an.inversions([(1.0, 1), (2.0, 0), (3.0, 2)], joined=joined) == an.Inversions(0, 0)
    assert an.inversions([(1.0, 2), (2.0, 0), (3.0, 1)], joined=joined) == an.Inversions(1, 2)
    assert an.inversions([(1.0, 1)], unserved=[0], joined=joined) == an.Inversions(0, 0)


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert an.percentile(values, 50) == 50.0 and an.percentile(values, 99) == 99.0
    assert an.percentile(values, 100) == 100.0
    assert math.isnan(an.percentile([], 50))

"""The agents bench runs its scenario as described (each join offered to exactly one free agent, also
behind a caller nobody can take) and reports a row pair per size."""

from __future__ import annotations

import pytest

from clusterq_testing.bench import agents as agents_bench
from clusterq_testing.bench.agents import agent_scale
from clusterq_testing.bench.report import rows


def test_each_size_is_measured_and_reported() -> None:
    points = agent_scale(sizes=(3, 7), cycles=4)
    assert [p.agents for p in points] == [3, 7]
    table = rows(None, [], [], None, None, points)
    assert [r.metric.split(":")[0] for r in table] == ["3 agents", "3 free agents", "7 agents", "7 free agents"]


def test_a_join_that_is_not_offered_to_exactly_one_agent_stops_the_scenario(monkeypatch: pytest.MonkeyPatch) -> None:
    # ringall would ring every free agent: not the scenario the figures describe.
    monkeypatch.setattr(agents_bench, "Strategy", type("S", (), {"LEASTRECENT": agents_bench.Strategy.RINGALL}))
    with pytest.raises(RuntimeError, match="one offer per join"):
        agent_scale(sizes=(3,), cycles=2)

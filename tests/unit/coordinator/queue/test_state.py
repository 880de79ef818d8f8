"""QueueRec.caller_timers, the shortcut a join takes past schedule_caller_timers, agrees with it."""

from __future__ import annotations

import itertools

import pytest

from coordinator.queue.model import PenaltyRule, QueueConfig
from coordinator.queue.ranking import QueueLine
from coordinator.queue.state import CallerRec, EngineState, QueueRec
from coordinator.queue.timers import schedule_caller_timers

KNOBS = {
    "max_wait": 30.0,
    "penalty_rules": (PenaltyRule(after_seconds=10.0, max_penalty=5),),
    "announce_frequency": 20.0,
    "periodic_announce": ("queue-periodic-announce",),
    "periodic_announce_frequency": 40.0,
}


@pytest.mark.parametrize("knobs", [dict(c) for r in range(len(KNOBS) + 1)
                                   for c in itertools.combinations(KNOBS.items(), r)])
def test_caller_timers_is_true_exactly_when_a_join_would_arm_a_timer(knobs: dict[str, object]) -> None:
    cfg = QueueConfig("q", **knobs)  # type: ignore[arg-type]
    st = EngineState()
    st.queues["q"] = rec = QueueRec(cfg, QueueLine(st.lines))
    caller = CallerRec(1, "c1", "q", "n1", 0, 1, (0, 1, 1), (), "", "", 0.0)
    before = (caller.next_announce, caller.next_periodic)
    schedule_caller_timers(st, caller, 0.0)
    armed = bool(st.timers) or (caller.next_announce, caller.next_periodic) != before
    assert rec.caller_timers == armed
    rec.set_config(QueueConfig("q"))
    assert not rec.caller_timers

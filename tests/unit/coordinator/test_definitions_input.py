"""Hostile or out-of-date input to the definitions: duration bounds, and stored records written
before a bound existed."""

from __future__ import annotations

import json
import logging

import pytest

from coordinator.definitions import (
    DefinitionError,
    agent_from_json,
    agent_from_mapping,
    agent_json,
    queue_from_json,
    queue_from_mapping,
    queue_json,
)
from coordinator.queue import AgentConfig, Membership, QueueConfig


@pytest.mark.parametrize(("raw", "fragment"), [
    ({"ring_timeout": 1e-6}, "ring_timeout must be at least 1 s"),
    ({"announce_frequency": 1e-12, "min_announce_frequency": 0}, "announce_frequency must be 0 .off. or at least"),
    ({"periodic_announce": ["hello"], "periodic_announce_frequency": 1e-12}, "periodic_announce_frequency"),
    ({"timeout": 0.5}, "ring_timeout"),  # app_queue's name for it
])
def test_a_timer_below_a_second_is_refused_in_the_file_and_the_api(raw: dict[str, object], fragment: str) -> None:
    with pytest.raises(DefinitionError, match=fragment):
        queue_from_mapping("support", raw)


def test_a_stored_queue_an_older_leader_accepted_loads_within_the_bounds(caplog: pytest.LogCaptureFixture) -> None:
    record = json.loads(queue_json(QueueConfig("support")))
    record |= {"ring_timeout": 0.5, "announce_frequency": 1e-12, "min_announce_frequency": 0.0,
               "retry": 0.25, "max_wait": 1e300, "wrapup_time": 0.2}
    with caplog.at_level(logging.WARNING, logger="coordinator.definitions"):
        cfg = queue_from_json(json.dumps(record).encode())
    assert (cfg.ring_timeout, cfg.announce_frequency, cfg.min_announce_frequency, cfg.retry) == (1.0, 1.0, 0.0, 1.0)
    assert cfg.max_wait == 31_536_000.0 and cfg.wrapup_time == 0.2  # one-shot timers keep small values
    assert "ring_timeout 0.5 is out of bounds" in caplog.text
    # A value never accepted is still refused: it is no record of an older leader.
    with pytest.raises(DefinitionError, match="ring_timeout"):
        queue_from_json(json.dumps(record | {"ring_timeout": -1.0}).encode())



def test_a_stored_penalty_rule_after_more_than_the_bound_is_dropped_not_the_queue() -> None:
    record = json.loads(queue_json(QueueConfig("support")))
    record["penalty_rules"] = [{"after_seconds": 30.0, "max_penalty": 2, "min_penalty": 0},
                               {"after_seconds": 4e8, "max_penalty": 9, "min_penalty": 0}]  # "never"
    cfg = queue_from_json(json.dumps(record).encode())
    assert [(r.after_seconds, r.max_penalty) for r in cfg.penalty_rules] == [(30.0, 2)]


BIG = "x" * 20_000


@pytest.mark.parametrize("raw", [
    {"strategy": BIG}, {"ewt_method": BIG}, {"announce_position": BIG}, {"announce_holdtime": BIG},
    {"joinempty": [BIG]}, {"leavewhenempty": BIG}, {"maxlen": BIG}, {"ring_timeout": BIG},
    {"penalty_rules": [f"{BIG},1"]}, {BIG: 1}, {"leavewhenempty": [f"c{i:05d}" * 10 for i in range(500)]},
    {"leavewhenempty": [f"c{i:05d}" * 10 for i in range(60)]}, {"announce_position": [BIG]},
], ids=lambda raw: next(iter(raw))[:20])
def test_a_refusal_quotes_at_most_a_short_piece_of_the_input(raw: dict[str, object]) -> None:
    """Past about 16 KB a status message cannot be delivered (RESOURCE_EXHAUSTED instead)."""
    with pytest.raises(DefinitionError) as err:
        queue_from_mapping("support", raw)
    assert len(str(err.value)) < 500 and str(err.value).startswith("queue support: ")


def test_a_long_name_and_a_long_list_of_bad_conditions_are_cut_in_the_message() -> None:
    with pytest.raises(DefinitionError, match=r"^queue name 'x{70}'\.\.\. must match"):
        queue_from_mapping(BIG, {})
    with pytest.raises(DefinitionError, match=r"unknown conditions \['k1', 'k2', 'k3', 'k4', 'k5'\] and 3 more;"):
        queue_from_mapping("support", {"joinempty": [f"k{i}" for i in range(1, 9)]})


def test_stored_records_accepted_before_the_text_checks_still_load() -> None:
    """A next leader must not drop a queue or an agent an older one accepted."""
    record = json.loads(queue_json(QueueConfig("support")))
    cfg = queue_from_json(json.dumps(record | {"music_class": "a\nb", "exit_context": "c\x00"}).encode())
    assert (cfg.music_class, cfg.exit_context) == ("a\nb", "c\x00")
    stored = agent_json(AgentConfig("alice", "PJSIP/x\n|y", "a", (Membership("support"),)), False, "")
    assert agent_from_json(stored)[0].endpoint == "PJSIP/x\n|y"
    with pytest.raises(DefinitionError, match="endpoint"):
        agent_from_mapping("alice", {"endpoint": "PJSIP/x\n|y", "home_node": "a", "queues": ["support"]})

"""Queue definitions: file form, etcd JSON and protobuf round trips, and clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from clusterq_proto.v1 import admin_pb2
from coordinator.definitions import (
    DefinitionError,
    agent_from_json,
    agent_json,
    load_file,
    queue_from_json,
    queue_from_mapping,
    queue_from_pb,
    queue_json,
    queue_to_pb,
)
from coordinator.queue import PenaltyRule, Strategy


def test_file_form_with_dashes_lists_and_rules_round_trips() -> None:
    cfg = queue_from_mapping("support", {
        "strategy": "rrmemory", "wrapup-time": 5, "joinempty": "paused, unavailable", "ringinuse": "yes",
        "penalty_rules": [{"after_seconds": 30, "max_penalty": 2}]})
    assert cfg.strategy is Strategy.RRMEMORY and cfg.wrapup_time == 5.0 and cfg.ringinuse
    assert cfg.joinempty == frozenset({"paused", "unavailable"})
    assert cfg.penalty_rules == (PenaltyRule(30.0, 2, 0),)
    assert queue_from_json(queue_json(cfg)) == cfg
    assert queue_from_pb(queue_to_pb(cfg)) == cfg


@pytest.mark.parametrize(("raw", "fragment"), [
    ({"strategy": "fastest"}, "strategy"),
    ({"ring_timeout": -1}, "ring_timeout"),
    ({"colour": "blue"}, "unknown setting"),
    ({"maxlen": "many"}, "maxlen"),
])
def test_bad_definitions_name_the_field(raw: dict[str, object], fragment: str) -> None:
    with pytest.raises(DefinitionError, match=fragment):
        queue_from_mapping("support", raw)


def test_proto_zero_values_mean_defaults() -> None:
    cfg = queue_from_pb(admin_pb2.QueueDefinition(name="q1"))
    assert cfg.ring_timeout == 15.0 and cfg.service_level == 60.0 and cfg.strategy is Strategy.RINGALL


def test_load_file_and_agents(tmp_path: Path) -> None:
    f = tmp_path / "q.yaml"
    f.write_text("queues:\n  support: {strategy: linear}\nagents:\n  alice: {endpoint: PJSIP/alice, home_node: a, "
                 "queues: {support: {penalty: 1}}, skills: {language: de}}\n")
    queues, agents = load_file(f)
    assert queues["support"][0].strategy is Strategy.LINEAR
    alice = agents["alice"]
    assert alice.memberships[0].penalty == 1 and alice.skills == (("language", "de"),)
    cfg, paused, reason = agent_from_json(agent_json(alice, True, "lunch"))
    assert cfg == alice and paused and reason == "lunch"


def test_file_hash_changes_only_when_the_queue_text_changes(tmp_path: Path) -> None:
    f = tmp_path / "q.yaml"
    f.write_text("queues:\n  a: {strategy: linear}\n  b: {strategy: ringall}\n")
    first, _ = load_file(f)
    f.write_text("queues:\n  a: {strategy: linear}\n  b: {strategy: leastrecent}\n")
    second, _ = load_file(f)
    assert first["a"][1] == second["a"][1]
    assert first["b"][1] != second["b"][1]

"""Queue definitions: file form, etcd JSON and protobuf round trips, and clear errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from clusterq_proto.v1 import admin_pb2, common_pb2
from coordinator.definitions import (
    DefinitionError,
    agent_from_json,
    agent_from_mapping,
    agent_from_pb,
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
    alice, _digest = agents["alice"]
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


def _login(**kw: object) -> admin_pb2.LoginRequest:
    fields: dict[str, object] = {"agent_id": "alice", "endpoint": "PJSIP/alice", "home_node": "a",
                                 "queues": [admin_pb2.QueueMembership(queue="support")]}
    fields.update(kw)
    return admin_pb2.LoginRequest(**fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(("login", "fragment"), [
    (_login(queues=[admin_pb2.QueueMembership(queue="support", penalty=-1)]), "negative penalty"),
    (_login(queues=[admin_pb2.QueueMembership(queue="support"), admin_pb2.QueueMembership(queue="support")]),
     "duplicate membership"),
    (_login(queues=[admin_pb2.QueueMembership(queue=f"q{i}") for i in range(65)]), "at most 64"),
    (_login(skills=[common_pb2.Skill(key=f"k{i}", value="x") for i in range(65)]), "at most 64"),
    (_login(endpoint="PJSIP/" + "x" * 300), "endpoint"),
    (_login(state_interface="PJSIP/" + "x" * 300), "state_interface"),
    (_login(state_interface="PJSIP/al ice"), "state_interface"),
    (_login(state_interface="PJSIP/alice\t"), "state_interface"),
    (_login(state_interface="PJSIP/\x00alice"), "state_interface"),
    (_login(state_interface="PJSIP/al\u200bice"), "state_interface"),
    (_login(state_interface="PJSIP/a,PJSIP/b"), "state_interface"),
    (_login(state_interface="hint:1001@ext-local"), "hint form.*PJSIP/1001"),  # FreePBX's usual member line
    (_login(state_interface="HINT:1001@ext-local"), "hint form"),
])
def test_a_login_the_engine_would_refuse_is_a_definition_error(login: admin_pb2.LoginRequest, fragment: str) -> None:
    # Written to etcd first, it would fail the Login after the write and every later leader's start.
    with pytest.raises(DefinitionError, match=fragment):
        agent_from_pb(login)


@pytest.mark.parametrize(("raw", "fragment"), [
    ({"endpoint": "PJSIP/a", "home_node": "a", "queues": {"support": {"penalty": -2}}}, "negative penalty"),
    ({"endpoint": "PJSIP/a", "home_node": "a", "queues": {"support": {"penalty": "high"}}}, "bad queues"),
    ({"endpoint": "PJSIP/a", "home_node": "a", "queues": [f"q{i}" for i in range(65)]}, "more than 64"),
    ({"endpoint": "PJSIP/a", "home_node": "a", "queues": ["support"], "skills": {"k": "v" * 65}}, "invalid skill"),
    ({"endpoint": "PJSIP/a", "home_node": "a", "queues": ["bad name"]}, "invalid queue name"),
    ({"endpoint": "PJSIP/a", "home_node": "a"}, "at least one queue"),
    ({"endpoint": "alice", "home_node": "a", "queues": ["support"]}, "endpoint"),
    ({"endpoint": "PJSIP/a", "home_node": "a", "queues": ["support"], "state_interface": "PJSIP/a b"},
     "state_interface"),
])
def test_file_and_stored_agents_are_validated(raw: dict[str, object], fragment: str) -> None:
    with pytest.raises(DefinitionError, match=fragment):
        agent_from_mapping("alice", raw)


@pytest.mark.parametrize("data", [b"not json", b"[1, 2]", b'{"endpoint": "PJSIP/a"}', b'"text"'])
def test_a_corrupt_stored_record_is_a_definition_error(data: bytes) -> None:
    with pytest.raises(DefinitionError):
        agent_from_json(data)
    with pytest.raises(DefinitionError):
        queue_from_json(data)


@pytest.mark.parametrize(("raw", "fragment"), [
    ({"music_class": "m" * 257}, "music_class longer than 256"),
    ({"exit_context": "c" * 257}, "exit_context longer than 256"),
    ({"periodic_announce": ["p"] * 65, "periodic_announce_frequency": 30}, "more than 64 periodic_announce"),
    ({"periodic_announce": ["p" * 257], "periodic_announce_frequency": 30}, "prompt is longer than 256"),
    ({"penalty_rules": [{"after_seconds": i, "max_penalty": 1} for i in range(65)]}, "more than 64 penalty_rules"),
])
def test_queue_definitions_are_bounded_in_the_file_and_in_the_api(raw: dict[str, Any], fragment: str) -> None:
    with pytest.raises(DefinitionError, match=fragment):
        queue_from_mapping("support", raw)
    pb = admin_pb2.QueueDefinition(name="support", music_class=raw.get("music_class", ""),
                                   exit_context=raw.get("exit_context", ""),
                                   periodic_announce=raw.get("periodic_announce", []),
                                   periodic_announce_frequency=raw.get("periodic_announce_frequency", 0),
                                   penalty_rules=[admin_pb2.PenaltyRule(**r) for r in raw.get("penalty_rules", [])])
    with pytest.raises(DefinitionError, match=fragment):
        queue_from_pb(pb)


def test_a_state_interface_rides_in_the_file_the_login_and_the_stored_record(tmp_path: Path) -> None:
    f = tmp_path / "q.yaml"
    f.write_text("queues:\n  support: {}\nagents:\n  bob: {endpoint: Local/bob@agents/n, home_node: b, "
                 "queues: [support], state_interface: PJSIP/bob}\n  carol: {endpoint: Local/carol@agents/n, "
                 "home_node: b, queues: [support]}\n")
    _, agents = load_file(f)
    bob, carol = agents["bob"][0], agents["carol"][0]
    assert (bob.state_interface, bob.device) == ("PJSIP/bob", "PJSIP/bob")
    assert (carol.state_interface, carol.device) == ("", "Local/carol@agents")
    assert agent_from_json(agent_json(bob, False, ""))[0] == bob
    # Without one, the stored record is what it was before state interfaces existed.
    assert b"state_interface" not in agent_json(carol, False, "")
    assert agent_from_json(agent_json(carol, False, ""))[0] == carol
    assert agent_from_pb(_login(state_interface="Custom:alice")).state_interface == "Custom:alice"
    assert agent_from_pb(_login()).state_interface == ""


@pytest.mark.parametrize("name", ["agentleg", "inbound", "trunk", "agent-login", "agent-logout", "agent-pause",
                                  "agent-unpause"])
def test_a_queue_cannot_take_a_name_the_dialplan_reserves(name: str) -> None:
    """Stasis(clusterq,<name>,...) is a leg or an agent's feature code: no caller could join such a queue."""
    with pytest.raises(DefinitionError, match="reserved"):
        queue_from_pb(admin_pb2.QueueDefinition(name=name))
    with pytest.raises(DefinitionError, match="reserved"):
        queue_from_mapping(name, {})
    assert queue_from_mapping(name.upper(), {}).name == name.upper()  # the stasis app matches them exactly


def test_a_name_with_a_trailing_newline_is_refused() -> None:
    """Python's "$" also matches before a final newline; names end exactly where they end."""
    with pytest.raises(DefinitionError):
        queue_from_mapping("support\n", {})
    with pytest.raises(DefinitionError):
        queue_from_pb(admin_pb2.QueueDefinition(name="support\n"))


def test_a_stored_agent_with_a_hint_state_interface_still_loads() -> None:
    """Refused for new logins and files since; an agent already stored with one must not vanish from
    the next leader (Logout and Pause would answer NOT_FOUND)."""
    record = json.dumps({"agent_id": "old", "endpoint": "PJSIP/old", "home_node": "a", "queues": ["support"],
                         "state_interface": "hint:1001@ext-local"}).encode()
    agent, paused, _ = agent_from_json(record)
    assert agent.state_interface == "hint:1001@ext-local" and not paused


@pytest.mark.parametrize(("rules", "expected"), [
    # queuerules.conf: an omitted minimum is "no change" (kept from the rule before), not 0
    ([{"after_seconds": 30, "max_penalty": 5, "min_penalty": 2}, {"after_seconds": 60, "max_penalty": 10}],
     [(30.0, 5, 2), (60.0, 10, 2)]),
    # relative values, and penaltychange's own text; rules apply in order of their time
    (["60,+5,-1", "30,5,2"], [(30.0, 5, 2), (60.0, 10, 1)]),
    (["20,3", {"after_seconds": 40, "max_penalty": "+2", "min_penalty": "+1"}], [(20.0, 3, 0), (40.0, 5, 1)]),
    (["10,2,-5"], [(10.0, 2, 0)]),  # a relative minimum never goes below 0
])
def test_penalty_rules_read_like_queuerules_conf(rules: list[object], expected: list[tuple[float, int, int]]) -> None:
    cfg = queue_from_mapping("q", {"penalty_rules": rules})
    assert [(r.after_seconds, r.max_penalty, r.min_penalty) for r in cfg.penalty_rules] == expected


@pytest.mark.parametrize("rule", ["30", "30,1,2,3", {"max_penalty": 2}, "x,1"])
def test_a_malformed_penalty_rule_is_refused_with_the_setting_named(rule: object) -> None:
    with pytest.raises(DefinitionError, match="penalty_rules"):
        queue_from_mapping("q", {"penalty_rules": [rule]})


def test_announce_position_only_up_takes_app_queues_name_and_round_trips() -> None:
    cfg = queue_from_mapping("q", {"announce-position-only-up": "yes", "announce_frequency": 30})
    assert cfg.announce_position_only_up
    assert queue_from_json(queue_json(cfg)) == cfg and queue_from_pb(queue_to_pb(cfg)) == cfg

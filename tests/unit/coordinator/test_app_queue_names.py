"""A queues.conf section written with app_queue's names and words loads as the same queue."""

from __future__ import annotations

import pytest
import yaml

from coordinator.definitions import DefinitionError, queue_from_mapping
from coordinator.queue import QueueConfig


def _queue(text: str) -> QueueConfig:
    return queue_from_mapping("support", yaml.safe_load(text))


def test_app_queue_option_names_are_accepted() -> None:
    cfg = _queue("{musicclass: jazz, wrapuptime: 5, timeout: 20, servicelevel: 30, context: cq-exit, "
                 "announce-frequency: 45, announce-position: more, periodic-announce-frequency: 60}")
    assert (cfg.music_class, cfg.wrapup_time, cfg.ring_timeout, cfg.service_level, cfg.exit_context) == (
        "jazz", 5.0, 20.0, 30.0, "cq-exit")
    assert (cfg.announce_frequency, cfg.announce_position, cfg.periodic_announce_frequency) == (45.0, "more", 60.0)


@pytest.mark.parametrize(("text", "expected"), [
    ("announce_position: yes", "yes"),  # YAML reads an unquoted yes as True
    ("announce_position: no", "no"),
    ("announce_position: 'limit'", "limit"),
])
def test_yaml_booleans_are_app_queues_yes_and_no(text: str, expected: str) -> None:
    assert _queue("{" + text + "}").announce_position == expected


@pytest.mark.parametrize(("field", "value", "conditions"), [
    # app_queue's parse_empty_options (Asterisk 22's queues.conf.sample: strict and loose are the same
    # for both options)
    ("joinempty", "yes", set()),
    ("joinempty", "no", {"penalty", "paused", "invalid"}),
    ("joinempty", "strict", {"penalty", "paused", "invalid", "unavailable"}),
    ("joinempty", "loose", {"penalty", "invalid"}),
    ("leavewhenempty", "yes", {"penalty", "paused", "invalid"}),
    ("leavewhenempty", "no", set()),
    ("leavewhenempty", "strict", {"penalty", "paused", "invalid", "unavailable"}),
    ("leavewhenempty", "loose", {"penalty", "invalid"}),
    ("joinempty", "'paused,inuse'", {"paused", "inuse"}),
    ("joinempty", "[paused, unavailable]", {"paused", "unavailable"}),
])
def test_empty_conditions_take_app_queues_words(field: str, value: str, conditions: set[str]) -> None:
    assert set(getattr(_queue("{" + f"{field}: {value}" + "}"), field)) == conditions


def test_an_unknown_name_or_condition_is_still_an_error() -> None:
    with pytest.raises(DefinitionError, match="unknown setting 'frobnicate'"):
        _queue("{frobnicate: 1}")
    with pytest.raises(DefinitionError):
        _queue("{joinempty: sometimes}")

"""events.decode over real Asterisk 22 samples, plus the pure helpers next to it."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from stasis_app.ari import events as ev

SAMPLES = Path(__file__).parent / "samples"
# Types the app does not use: decode drops them (None) on purpose.
UNUSED_TYPES = {"ChannelVarset", "ChannelConnectedLine", "BridgeDestroyed", "ChannelDialplan", "ChannelCallerId"}


def _load(name: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (SAMPLES / name).read_text().splitlines() if line.strip()]


ALL = [raw for name in sorted(p.name for p in SAMPLES.glob("*.jsonl")) for raw in _load(name)]


def _first(raws: list[dict[str, Any]], kind: str, **match: object) -> dict[str, Any]:
    for raw in raws:
        chan = raw.get("channel") or raw.get("peer") or {}
        if raw["type"] == kind and all(chan.get(k) == v or raw.get(k) == v for k, v in match.items()):
            return raw
    raise AssertionError(f"no {kind} {match} in samples")


DECODED_AS: dict[str, type] = {
    "StasisStart": ev.StasisStart, "StasisEnd": ev.StasisEnd, "ChannelStateChange": ev.ChannelStateChanged,
    "ChannelHangupRequest": ev.ChannelHangupRequested, "ChannelDestroyed": ev.ChannelDestroyed,
    "ChannelDtmfReceived": ev.DtmfReceived, "PlaybackStarted": ev.PlaybackStarted,
    "PlaybackFinished": ev.PlaybackFinished, "ChannelEnteredBridge": ev.ChannelEnteredBridge,
    "ChannelLeftBridge": ev.ChannelLeftBridge, "Dial": ev.Dial, "ApplicationReplaced": ev.ApplicationReplaced,
    "DeviceStateChanged": ev.DeviceStateChanged,
}


def test_every_sample_decodes_to_its_typed_event_or_is_an_unused_type() -> None:
    assert len(ALL) > 80
    assert {raw["type"] for raw in ALL} <= UNUSED_TYPES | DECODED_AS.keys()
    assert {raw["type"] for raw in ALL} >= DECODED_AS.keys()  # the samples cover every decoded type
    for raw in ALL:
        event = ev.decode(raw)
        if raw["type"] in UNUSED_TYPES:
            assert event is None, raw["type"]
        else:
            assert isinstance(event, DECODED_AS[raw["type"]]), raw["type"]


def test_device_state_changed_of_a_local_agent_device() -> None:
    decoded = [ev.decode(raw) for raw in _load("devicestate-events.jsonl")]
    device = "Local/alice@clusterq-agents-test"
    assert decoded == [ev.DeviceStateChanged(device, "INUSE")] * 3 + [ev.DeviceStateChanged(device, "NOT_INUSE")] * 2


def test_stasis_start_of_a_dialplan_caller() -> None:
    event = ev.decode(_first(_load("smoke-events.jsonl"), "StasisStart"))
    assert event == ev.StasisStart(
        channel=ev.ChannelInfo(
            id="a-1795699267.13", name="Local/100@stasis-ctx-00000006;2", state="Ring", caller_number="100",
            caller_name="Alice", dialplan_context="stasis-ctx", dialplan_exten="100", app_data="myapp,100",
            creation_time=datetime(2026, 11, 26, 13, 21, 7, 680000, tzinfo=UTC),
        ),
        args=("100",),
        replace_channel_id=None,
    )


def test_stasis_start_of_an_originated_leg_carries_the_originate_args() -> None:
    event = ev.decode(_first(_load("originate-events.jsonl"), "StasisStart", id="cap-a"))
    assert isinstance(event, ev.StasisStart)
    assert event.args == ("agent", "7")
    assert event.channel.state == "Up"
    assert event.channel.app_data == "clusterq,agent,7"


def test_stasis_start_over_a_trunk_has_two_args() -> None:
    event = ev.decode(_first(_load("crossnode-events.jsonl"), "StasisStart", id="b-1795699281.0"))
    assert isinstance(event, ev.StasisStart)
    assert event.args == ("inbound", "300")
    assert (event.channel.caller_number, event.channel.dialplan_context) == ("100", "from-node")


def test_busy_leg_sequence() -> None:
    raws = [r for r in _load("originate-events.jsonl")
            if (r.get("channel") or r.get("peer") or {}).get("id") == "cap-b"]
    assert [ev.decode(r) for r in raws] == [
        ev.Dial("cap-b", "", "busy@agents/n", None),
        ev.Dial("cap-b", "BUSY", "busy@agents/n", None),
        ev.ChannelDestroyed("cap-b", 0, "Unknown"),
    ]


def test_no_answer_leg_is_destroyed_with_cause_19() -> None:
    event = ev.decode(_first(_load("originate-events.jsonl"), "ChannelDestroyed", id="cap-n"))
    assert event == ev.ChannelDestroyed("cap-n", 19, "User alerting, no answer")


def test_dtmf_hangup_bridge_and_playback_events() -> None:
    origin = _load("originate-events.jsonl")
    smoke = _load("smoke-events.jsonl")
    assert ev.decode(_first(origin, "ChannelDtmfReceived")) == ev.DtmfReceived("cap-a2", "5", 100)
    assert ev.decode(_first(origin, "ChannelHangupRequest", id="cap-a")) == ev.ChannelHangupRequested("cap-a", 32)
    assert ev.decode(_first(smoke, "StasisEnd")) == ev.StasisEnd("a-1795699267.13")
    started = ev.decode(_first(smoke, "PlaybackStarted"))
    assert started == ev.PlaybackStarted("a2c78c9b-4daf-4503-92f8-990669df70bd", "a-1795699267.13")
    assert isinstance(ev.decode(_first(smoke, "PlaybackFinished")), ev.PlaybackFinished)
    entered = ev.decode(_first(smoke, "ChannelEnteredBridge"))
    assert entered == ev.ChannelEnteredBridge("501c9788-fd25-40ee-ab36-14e9b8d9555c", "a-1795699267.13")
    assert isinstance(ev.decode(_first(smoke, "ChannelLeftBridge")), ev.ChannelLeftBridge)
    assert ev.decode(_first(origin, "ApplicationReplaced")) == ev.ApplicationReplaced()


def test_bridge_playback_has_no_target_channel() -> None:
    raw = dict(_first(_load("smoke-events.jsonl"), "PlaybackStarted"))
    raw["playback"] = {**raw["playback"], "target_uri": "bridge:b1"}
    assert ev.decode(raw) == ev.PlaybackStarted("a2c78c9b-4daf-4503-92f8-990669df70bd", None)


def test_unknown_type_is_dropped_at_debug(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, logger="stasis_app.ari.events"):
        assert ev.decode({"type": "ChannelTalkingStarted", "channel": {}}) is None
    assert [r.levelno for r in caplog.records] == [logging.DEBUG]


def test_malformed_known_type_is_dropped_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, logger="stasis_app.ari.events"):
        assert ev.decode({"type": "StasisStart", "args": []}) is None
        assert ev.decode({"type": "ChannelDestroyed", "channel": {"id": "x"}, "cause": "abc"}) is None
        assert ev.decode({"no": "type"}) is None
    assert [r.levelno for r in caplog.records] == [logging.WARNING, logging.WARNING, logging.DEBUG]


@pytest.mark.parametrize(
    ("app_name", "app_data", "expected"),
    [
        ("Stasis", "clusterq,q1", True),
        ("Stasis", "clusterq", True),
        ("Stasis", "clusterq,agent,7", True),
        ("Stasis", "clusterq2,q1", False),
        ("Stasis", "cqtest,agent,1", False),
        ("AppDial2", "(Outgoing Line)", False),
        ("Wait", "86400", False),
        ("", "", False),
    ],
)
def test_in_stasis_app(app_name: str, app_data: str, expected: bool) -> None:
    assert ev.in_stasis_app(app_name, app_data, "clusterq") is expected


@pytest.mark.parametrize(
    ("dialstatus", "cause", "expected"),
    [("BUSY", 0, "BUSY"), ("CONGESTION", 0, "CONGESTION"), ("NOANSWER", 21, "NOANSWER"), (None, 19, "NOANSWER"),
     ("", 17, "BUSY"), (None, 34, "CONGESTION"), (None, 0, "CHANUNAVAIL"), ("ANSWER", 16, "CHANUNAVAIL")],
)
def test_failure_reason(dialstatus: str | None, cause: int, expected: str) -> None:
    assert ev.failure_reason(dialstatus, cause) == expected

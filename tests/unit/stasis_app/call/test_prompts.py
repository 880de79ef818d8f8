"""Which prompts an announcement plays."""

from __future__ import annotations

from stasis_app.call.prompts import announcement


def test_next_in_line() -> None:
    assert announcement(1, 0, True, False) == ["sound:queue-youarenext", "sound:queue-thankyou"]


def test_position_and_minutes() -> None:
    assert announcement(4, 150, True, True) == [
        "sound:queue-thereare", "number:4", "sound:queue-callswaiting",
        "sound:queue-holdtime", "number:2", "sound:queue-minutes", "sound:queue-thankyou"]


def test_less_than_a_minute() -> None:
    assert announcement(3, 20, False, True)[:3] == ["sound:queue-holdtime", "sound:queue-less-than", "number:1"]


def test_nothing_to_say() -> None:
    assert announcement(0, 0, True, True) == []

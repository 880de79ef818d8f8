"""Which prompts an announcement plays."""

from __future__ import annotations

from stasis_app.call.prompts import announcement


def test_next_in_line() -> None:
    assert announcement(1, 0, True, False) == ["sound:queue-youarenext", "sound:queue-thankyou"]


def test_position_and_minutes() -> None:
    assert announcement(4, 150, True, True) == [
        "sound:queue-thereare", "sound:digits/4", "sound:queue-callswaiting",
        "sound:queue-holdtime", "sound:digits/2", "sound:queue-minutes", "sound:queue-thankyou"]


def test_less_than_a_minute() -> None:
    assert announcement(3, 20, False, True) == [
        "sound:queue-holdtime", "sound:queue-less-than", "sound:digits/1", "sound:queue-minute", "sound:queue-thankyou"]


def test_one_minute_is_said_in_the_singular_like_app_queue() -> None:
    assert announcement(3, 70, False, True) == [
        "sound:queue-holdtime", "sound:digits/1", "sound:queue-minute", "sound:queue-thankyou"]


def test_an_estimate_that_is_not_a_finite_number_says_no_hold_time() -> None:
    for bad in (float("nan"), float("inf"), -float("inf")):
        assert announcement(2, bad, True, True) == [
            "sound:queue-thereare", "sound:digits/2", "sound:queue-callswaiting", "sound:queue-thankyou"]


def test_nothing_to_say() -> None:
    assert announcement(0, 0, True, True) == []


def test_numbers_are_stoppable_sound_files() -> None:
    from stasis_app.call.prompts import say_number

    assert say_number(7) == ["sound:digits/7"]
    assert say_number(20) == ["sound:digits/20"]
    assert say_number(42) == ["sound:digits/40", "sound:digits/2"]
    assert say_number(305) == ["sound:digits/3", "sound:digits/hundred", "sound:digits/5"]
    assert say_number(2000) == ["sound:digits/2", "sound:digits/thousand"]
    assert say_number(1999) == ["sound:digits/1", "sound:digits/thousand", "sound:digits/9", "sound:digits/hundred",
                                "sound:digits/90", "sound:digits/9"]


def test_more_than_the_limit_is_said_like_app_queue_announce_position_more() -> None:
    assert announcement(7, 0.0, True, False, more_than=5) == [
        "sound:queue-quantity1", "sound:digits/5", "sound:queue-quantity2", "sound:queue-thankyou"]

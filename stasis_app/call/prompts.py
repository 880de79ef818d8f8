"""Which prompts a caller hears for a position / hold-time announcement (pure).

Uses Asterisk's core sounds like app_queue's say_position(): queue-youarenext, queue-thereare,
queue-callswaiting, queue-holdtime, queue-minute / queue-minutes (1 / more), queue-less-than,
queue-thankyou.
"""

from __future__ import annotations

import math

# Numbers are said with sound:digits/* files (as Asterisk's English ast_say_number does) rather than
# ARI's number: media: a playback stopped while a number: item plays does not stop on Asterisk 22.10
# (measured: 5-7 s until it ends), and an announcement must never delay a connection.


def say_number(n: int) -> list[str]:
    """English number prompts for 0 <= n < 1,000,000 as stoppable sound: media."""
    if n < 0 or n >= 1_000_000:
        return [f"number:{n}"]
    if n == 0:
        return ["sound:digits/0"]
    out: list[str] = []
    if n >= 1000:
        out += [*say_number(n // 1000), "sound:digits/thousand"]
        n %= 1000
    if n >= 100:
        out += [f"sound:digits/{n // 100}", "sound:digits/hundred"]
        n %= 100
    if n > 20:
        out.append(f"sound:digits/{n - n % 10}")
        n %= 10
    if n:
        out.append(f"sound:digits/{n}")
    return out


def announcement(position: int, estimated_wait: float, say_position: bool, say_holdtime: bool,
                 more_than: int = 0) -> list[str]:
    """Media URIs for one announcement (empty when there is nothing to say); `more_than` (app_queue's
    announce-position=more past its limit) says "more than N callers waiting" instead of the position."""
    media: list[str] = []
    if say_position and more_than >= 1:
        media += ["sound:queue-quantity1", *say_number(more_than), "sound:queue-quantity2"]
    elif say_position and position >= 1:
        if position == 1:
            media.append("sound:queue-youarenext")
        else:
            media += ["sound:queue-thereare", *say_number(position), "sound:queue-callswaiting"]
    # Not finite (a NaN or an infinite estimate from a leader): nothing is said about the hold time.
    if say_holdtime and 0 < estimated_wait < math.inf:
        minutes = round(estimated_wait / 60)
        if minutes < 1:
            media += ["sound:queue-holdtime", "sound:queue-less-than", *say_number(1), "sound:queue-minute"]
        else:
            unit = "sound:queue-minute" if minutes == 1 else "sound:queue-minutes"
            media += ["sound:queue-holdtime", *say_number(minutes), unit]
    if media:
        media.append("sound:queue-thankyou")
    return media

"""Which prompts a caller hears for a position / hold-time announcement (pure).

Uses Asterisk's core sounds like app_queue's say_position(): queue-youarenext, queue-thereare,
queue-callswaiting, queue-holdtime, queue-minutes, queue-less-than, queue-thankyou.
"""

from __future__ import annotations


def announcement(position: int, estimated_wait: float, say_position: bool, say_holdtime: bool) -> list[str]:
    """Media URIs for one announcement (empty when there is nothing to say)."""
    media: list[str] = []
    if say_position and position >= 1:
        if position == 1:
            media.append("sound:queue-youarenext")
        else:
            media += ["sound:queue-thereare", f"number:{position}", "sound:queue-callswaiting"]
    if say_holdtime and estimated_wait > 0:
        minutes = round(estimated_wait / 60)
        if minutes < 1:
            media += ["sound:queue-holdtime", "sound:queue-less-than", "number:1", "sound:queue-minutes"]
        else:
            media += ["sound:queue-holdtime", f"number:{minutes}", "sound:queue-minutes"]
    if media:
        media.append("sound:queue-thankyou")
    return media

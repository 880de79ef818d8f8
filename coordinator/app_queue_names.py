"""app_queue's queues.conf spellings in the queues file: option names, yes/no words, and
queuerules.conf's penaltychange rules.

An operator moving a queues.conf section into the queues file may keep app_queue's names
(`musicclass`, `wrapuptime`, `timeout`, `context`, ...) and its yes/no/strict/loose words; they are
translated to clusterq's own settings here, before validation. Anything else is left for the
definition's own checks (an unknown name is still an error, never ignored).
"""

from __future__ import annotations

from typing import Any

from clusterq_common.text import clip
from coordinator.queue.model import PenaltyRule

__all__ = ["ALIASES", "MAX_CONDITIONS", "empty_conditions", "penalty_rules", "yes_no_word"]

# app_queue option (after '-' -> '_') -> clusterq setting; the same name in both needs no entry.
ALIASES = {
    "musicclass": "music_class",
    "wrapuptime": "wrapup_time",
    "timeout": "ring_timeout",
    "servicelevel": "service_level",
    "context": "exit_context",
}

MAX_CONDITIONS = 64
_TRUE = frozenset({"yes", "true", "y", "t", "1", "on"})
_FALSE = frozenset({"no", "false", "n", "f", "0", "off"})

# app_queue's parse_empty_options: what yes / no / strict / loose mean for each option (queues.conf.sample
# of Asterisk 22: strict and loose mean the same for both options; only yes / no are mirrored).
_EMPTY_WORDS = {
    "joinempty": {
        True: frozenset(),
        False: frozenset({"penalty", "paused", "invalid"}),
        "strict": frozenset({"penalty", "paused", "invalid", "unavailable"}),
        "loose": frozenset({"penalty", "invalid"}),
    },
    "leavewhenempty": {
        True: frozenset({"penalty", "paused", "invalid"}),
        False: frozenset(),
        "strict": frozenset({"penalty", "paused", "invalid", "unavailable"}),
        "loose": frozenset({"penalty", "invalid"}),
    },
}


def _truth(value: Any) -> bool | None:
    if isinstance(value, bool):
        return value
    word = str(value).strip().lower()
    return True if word in _TRUE else False if word in _FALSE else None


def empty_conditions(field: str, value: Any) -> frozenset[str]:
    """joinempty / leavewhenempty from a list of conditions or app_queue's words (YAML may have
    turned an unquoted yes/no into a boolean)."""
    words = _EMPTY_WORDS[field]
    items = [value] if isinstance(value, bool) else value.split(",") if isinstance(value, str) else list(value)
    # There are eight conditions: a longer list is no list of them (its refusal would list them all).
    if len(items) > MAX_CONDITIONS:
        raise ValueError(f"more than {MAX_CONDITIONS} conditions")
    out: set[str] = set()
    for item in items:
        word = item.strip().lower() if isinstance(item, str) else item
        if word in ("strict", "loose"):
            out |= words[word]
        elif (truth := _truth(word)) is not None:
            out |= words[truth]
        elif str(word).strip():
            out.add(str(word).strip())
    return frozenset(out)


def yes_no_word(value: Any) -> str:
    """A text setting whose values include yes / no (announce_position, announce_holdtime): YAML's
    booleans become those words again."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if not isinstance(value, (str, int, float)):  # a YAML list or mapping: its text is no word
        raise ValueError(f"want one word, got a {type(value).__name__}")
    return str(value)


def _penalty_value(value: Any, previous: int) -> int:
    """One penalty of a rule as queuerules.conf writes it: N (absolute), "+N" / "-N" (relative to the
    previous rule's, 0 before the first rule), empty or absent (no change)."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return previous
    if isinstance(value, str) and value.strip()[0] in "+-":
        return max(0, previous + int(value.strip()))
    return int(value)


def penalty_rules(value: Any) -> tuple[PenaltyRule, ...]:
    """penalty_rules from the queues file: mappings (after_seconds, max_penalty, min_penalty) or
    queuerules.conf's `penaltychange` text ("30,+2" or "60,10,2"), in order of after_seconds; like
    app_queue, an omitted or relative minimum / maximum is taken from the rule before."""
    items = []
    for r in value:
        if isinstance(r, str):
            parts = [p.strip() for p in r.split(",")]
            if not 2 <= len(parts) <= 3:
                raise ValueError(f"penalty rule {clip(r)}: want 'seconds,max[,min]'")
            items.append((float(parts[0]), parts[1], parts[2] if len(parts) == 3 else None))
        else:
            items.append((float(r["after_seconds"]), r.get("max_penalty"), r.get("min_penalty")))
    rules = []
    max_penalty = min_penalty = 0
    for after, max_raw, min_raw in sorted(items, key=lambda item: item[0]):
        max_penalty = _penalty_value(max_raw, max_penalty)
        min_penalty = _penalty_value(min_raw, min_penalty)
        rules.append(PenaltyRule(after, max_penalty, min_penalty))
    return tuple(rules)

"""Parsing of the dialplan's Stasis arguments (pure).

Syntax (documented in docs/dialplan.md):

    Stasis(clusterq,<queue>[,priority=N][,timeout=S][,position=N][,skills=K:V[+K:V...]][,skill=K:V]
           [,ringing=yes])

- <queue>: [A-Za-z0-9_.-]{1,64}
- priority: integer -1000000..1000000, higher served first (like QUEUE_PRIO)
- timeout: seconds (0 < S <= 86400) the caller may wait; overrides a longer queue max wait
- position: 1-based position override within the caller's priority band (like Queue()'s position)
- skills: requirements matched against agent skills; several with '+', or repeat skill=K:V;
  V may be '*' (any value of K)
- ringing: yes = indicate ringing instead of answering with music (like Queue()'s r option)

Reserved first arguments, never queues: agentleg, inbound, trunk (clusterq's own legs, resync.py)
and agent-login, agent-logout, agent-pause, agent-unpause (agent operations, agent_args.py).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass

from clusterq_common.dialplan import MAX_PRIORITY

NAME_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}\Z")  # \Z: "$" would also match before a final newline
SKILL_VALUE_RE = re.compile(r"^[A-Za-z0-9_.*-]{1,64}\Z")
MAX_ARG_LEN = 512
MAX_SKILLS = 16


@dataclass(frozen=True)
class QueueArgs:
    """A valid caller entry."""

    queue: str
    priority: int = 0
    timeout: float = 0.0
    position: int = 0
    requirements: tuple[tuple[str, str], ...] = ()
    ringing: bool = False


@dataclass(frozen=True)
class BadArgs:
    """Why the arguments were refused (the caller continues with INVALID_ARGS)."""

    message: str


def _skill(text: str) -> tuple[str, str] | str:
    key, sep, value = text.partition(":")
    if not sep or not NAME_RE.match(key) or not SKILL_VALUE_RE.match(value):
        return f"bad skill {text[:80]!r}: want key:value"
    return key, value


def key_values(args: Iterable[str]) -> list[tuple[str, str]] | BadArgs:
    """`key=value` arguments as (lower-case key, value) pairs, both stripped; empty arguments are
    skipped, one without "=" is refused. Shared by callers' and agents' Stasis arguments."""
    pairs = []
    for raw in args:
        raw = raw.strip()
        if not raw:
            continue
        key, sep, value = raw.partition("=")
        if not sep:
            return BadArgs(f"argument {raw[:80]!r} is not key=value")
        pairs.append((key.strip().lower(), value.strip()))
    return pairs


def yes_no(key: str, value: str) -> bool | BadArgs:
    """yes / no (also true / false, 1 / 0, any case)."""
    v = value.lower()
    if v not in ("yes", "no", "true", "false", "1", "0"):
        return BadArgs(f"{key} must be yes or no")
    return v in ("yes", "true", "1")


def parse_args(args: tuple[str, ...]) -> QueueArgs | BadArgs:
    """Parse Stasis args after the app name; never raises."""
    if not args or not args[0].strip():
        return BadArgs("missing queue name: Stasis(clusterq,<queue>[,key=value...])")
    if any(len(a) > MAX_ARG_LEN for a in args):
        return BadArgs(f"an argument is longer than {MAX_ARG_LEN} characters")
    queue = args[0].strip()
    if not NAME_RE.match(queue):
        return BadArgs(f"invalid queue name {queue[:80]!r}")
    priority, timeout, position, ringing = 0, 0.0, 0, False
    skills: list[tuple[str, str]] = []
    seen: set[str] = set()
    pairs = key_values(args[1:])
    if isinstance(pairs, BadArgs):
        return pairs
    for key, value in pairs:
        if key in seen and key != "skill":
            return BadArgs(f"{key} given twice")
        seen.add(key)
        try:
            if key == "priority":
                priority = int(value)
                if not -MAX_PRIORITY <= priority <= MAX_PRIORITY:
                    return BadArgs("priority out of range -1000000..1000000")
            elif key == "timeout":
                timeout = float(value)
                if not math.isfinite(timeout) or not 0 < timeout <= 86_400:
                    return BadArgs("timeout must be a number of seconds in (0, 86400]")
            elif key == "position":
                position = int(value)
                if not 1 <= position <= 1_000_000:
                    return BadArgs("position must be an integer >= 1")
            elif key in ("skills", "skill"):
                for part in value.split("+"):
                    got = _skill(part.strip())
                    if isinstance(got, str):
                        return BadArgs(got)
                    skills.append(got)
            elif key == "ringing":
                flag = yes_no("ringing", value)
                if isinstance(flag, BadArgs):
                    return flag
                ringing = flag
            else:
                return BadArgs(f"unknown argument {key[:40]!r}")
        except ValueError:
            return BadArgs(f"{key} has a bad value {value[:40]!r}")
    if len(skills) > MAX_SKILLS:
        return BadArgs(f"more than {MAX_SKILLS} skills")
    return QueueArgs(queue, priority, timeout, position, tuple(skills), ringing)

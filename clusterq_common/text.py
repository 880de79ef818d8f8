"""Free text from outside in messages and logs: quoted short, checked where an operator types it.

A refusal that quotes its input in full can be larger than gRPC's status message limit (16 KB of
metadata): the client then sees RESOURCE_EXHAUSTED "Stream removed" instead of the refusal. And text
that reaches a line-oriented log (queue_log: `|` separates fields, a newline ends a line) must not
carry either, or one value forges fields and lines.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable

__all__ = ["CLIP", "breaks_line", "clip", "clip_items", "cut", "one_line", "plain_text_error"]

CLIP = 70
"""Characters of a value a message quotes."""
MAX_LISTED = 5
"""Items of a list a message quotes."""


def clip(value: object, limit: int = CLIP) -> str:
    """`value`'s repr, of at most about `limit` characters of its text (cut ones end with "...")."""
    text = value if isinstance(value, str) else str(value)
    if len(text) <= limit:
        return repr(text) if isinstance(value, str) else repr(value)
    return f"{text[:limit]!r}..."


def cut(text: str, limit: int = 3 * CLIP) -> str:
    """`text` (a message that may quote input) of at most about `limit` characters."""
    return text if len(text) <= limit else f"{text[:limit]}..."


def clip_items(items: Iterable[object], limit: int = MAX_LISTED) -> str:
    """At most `limit` items, each clipped, then how many more there are: "['a', 'b'] and 3 more"."""
    values = list(items)
    shown = ", ".join(clip(v) for v in values[:limit])
    more = f" and {len(values) - limit} more" if len(values) > limit else ""
    return f"[{shown}]{more}"


_BREAKING = frozenset({"Cc", "Zl", "Zp"})  # control characters, line and paragraph separators


def breaks_line(c: str) -> bool:
    """Whether the character `c` can break a one-line text: a control character (newline, tab, NUL,
    ...) or a Unicode line / paragraph separator. Other spaces (no-break, ideographic) and format
    characters (the zero-width non-joiner of Persian spelling) are ordinary text."""
    return unicodedata.category(c) in _BREAKING


def one_line(value: str) -> bool:
    """Whether no character of `value` breaks a line (see breaks_line)."""
    return value.isprintable() or not any(breaks_line(c) for c in value)


def plain_text_error(what: str, value: str, *, bar: bool = True) -> str | None:
    """Why `value` is no plain one-line text (None: it is): control characters (newlines, NUL, tabs,
    Unicode line separators: see breaks_line) and, with `bar`, the `|` that separates queue_log's
    fields."""
    if not one_line(value):
        return f"{what} must not contain control characters (newline, tab, NUL, ...): {clip(value)}"
    if bar and "|" in value:
        return f"{what} must not contain '|' (it separates queue_log's fields): {clip(value)}"
    return None

"""Splitting a channel's `dialplan.app_data` into arguments exactly as Asterisk split them (pure).

A StasisStart event carries the Stasis() arguments already split, but a channel listed over ARI
(`GET /channels`, the resync after a reconnect or a restart of this process) only carries the raw
text of its application's data, after variable substitution. app_stasis splits that text with
AST_STANDARD_APP_ARGS, i.e. `__ast_app_separate_args(data, ',', remove_chars=1)` in main/app.c:
- a comma separates arguments, except inside "double quotes", (parentheses) or [brackets];
- a double quote toggles quoting and is removed;
- a backslash is removed and the character after it is kept literally (`\\,` is a comma in an
  argument, `\\"` a quote).
A plain `split(",")` read `agent-login,"PJSIP/1001,x"` as three arguments where the StasisStart of
the same channel had two, so a restarted app did something else than the first one would have.
tests/integration/stasis_app/test_app_args.py checks this against real Asterisk.
"""

from __future__ import annotations

__all__ = ["split_app_args"]


def split_app_args(data: str) -> tuple[str, ...]:
    """The arguments Asterisk passes for application data `data` (always at least one, maybe "")."""
    args: list[str] = []
    current: list[str] = []
    parens = brackets = 0
    quoted = False
    escaped = False
    for ch in data:
        if escaped:
            current.append(ch)
            escaped = False
        elif ch == "\\":
            escaped = True  # removed; the next character is taken as it is
        elif ch == '"':
            quoted = not quoted  # removed
        elif ch == "," and not (quoted or parens or brackets):
            args.append("".join(current))
            current = []
        else:
            # Parentheses and brackets are kept; a closing one without an opening one counts nothing.
            if ch == "(":
                parens += 1
            elif ch == ")" and parens:
                parens -= 1
            elif ch == "[":
                brackets += 1
            elif ch == "]" and brackets:
                brackets -= 1
            current.append(ch)
    args.append("".join(current))
    return tuple(args)

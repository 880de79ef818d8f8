"""split_app_args: Asterisk's AST_STANDARD_APP_ARGS splitting of a channel's app_data.

The table follows __ast_app_separate_args in main/app.c; tests/integration/stasis_app/test_app_args.py
checks the same strings against the arguments real Asterisk hands to StasisStart.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stasis_app.ari.app_args import split_app_args
from stasis_app.ari.events import in_stasis_app


@pytest.mark.parametrize(("data", "args"), [
    ("clusterq", ("clusterq",)),
    ("", ("",)),
    ("clusterq,support,priority=5", ("clusterq", "support", "priority=5")),
    ("clusterq,,x,", ("clusterq", "", "x", "")),
    ('clusterq,agent-login,"PJSIP/1001,x"', ("clusterq", "agent-login", "PJSIP/1001,x")),
    ('clusterq,a"b,c"d', ("clusterq", "ab,cd")),
    ("clusterq,a\\,b,c", ("clusterq", "a,b", "c")),
    ('clusterq,say \\"hi\\"', ("clusterq", 'say "hi"')),
    ("clusterq,x\\\\,y", ("clusterq", "x\\", "y")),
    ("clusterq,f(a,b),c", ("clusterq", "f(a,b)", "c")),
    ("clusterq,[a,b],c", ("clusterq", "[a,b]", "c")),
    ("clusterq,a),b", ("clusterq", "a)", "b")),  # a closing parenthesis without an opening one
    ("clusterq,\\(a,b", ("clusterq", "(a", "b")),  # an escaped parenthesis opens nothing
    ('clusterq,"(",x', ("clusterq", "(,x")),  # a parenthesis counts inside quotes too
    (" clusterq , x ", (" clusterq ", " x ")),  # nothing is stripped
    ("clusterq,trailing\\", ("clusterq", "trailing")),
])
def test_split_like_asterisk(data: str, args: tuple[str, ...]) -> None:
    assert split_app_args(data) == args


_SPECIAL = '\\",()[]'


def _escape(arg: str) -> str:
    return "".join("\\" + ch if ch in _SPECIAL + "," else ch for ch in arg)


@given(st.lists(st.text(alphabet=st.sampled_from('ab ,"\\()[]=:/'), max_size=12), min_size=1, max_size=6))
def test_escaped_arguments_come_back(args: list[str]) -> None:
    """Any arguments, each special character backslash-escaped, joined by commas: split gives them back."""
    assert split_app_args(",".join(_escape(a) for a in args)) == tuple(args)


@given(st.text(max_size=40))
def test_never_raises_and_joins_back_when_plain(data: str) -> None:
    args = split_app_args(data)
    assert len(args) >= 1
    if not any(ch in data for ch in _SPECIAL):
        assert args == tuple(data.split(","))


@pytest.mark.parametrize(("data", "ours"), [
    ("clusterq", True),
    ("clusterq,support", True),
    ('"clusterq",support', True),
    ("clusterq2,support", False),
    ("other,clusterq", False),
    ("", False),
])
def test_in_stasis_app_reads_the_first_argument(data: str, ours: bool) -> None:
    assert in_stasis_app("Stasis", data, "clusterq") is ours
    assert in_stasis_app("AppDial2", data, "clusterq") is False

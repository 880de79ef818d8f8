"""Table-driven tests of the Stasis argument parser."""

from __future__ import annotations

import pytest

from stasis_app.call.args import BadArgs, QueueArgs, parse_args


@pytest.mark.parametrize(("args", "expected"), [
    (("support",), QueueArgs("support")),
    (("support", "priority=5"), QueueArgs("support", priority=5)),
    (("support", "timeout=30", "position=2"), QueueArgs("support", timeout=30.0, position=2)),
    (("support", "skills=language:de+level:2"),
     QueueArgs("support", requirements=(("language", "de"), ("level", "2")))),
    (("support", "skill=language:de", "skill=product:*"),
     QueueArgs("support", requirements=(("language", "de"), ("product", "*")))),
    (("support", "ringing=yes"), QueueArgs("support", ringing=True)),
    (("support", " priority = -3 "), QueueArgs("support", priority=-3)),
])
def test_valid(args: tuple[str, ...], expected: QueueArgs) -> None:
    assert parse_args(args) == expected


@pytest.mark.parametrize(("args", "fragment"), [
    ((), "missing queue"),
    (("",), "missing queue"),
    (("bad queue!",), "invalid queue name"),
    (("support", "priority=high"), "bad value"),
    (("support", "priority=99999999"), "out of range"),
    (("support", "timeout=0"), "timeout"),
    (("support", "timeout=nan"), "timeout"),
    (("support", "position=0"), "position"),
    (("support", "skills=language"), "bad skill"),
    (("support", "colour=blue"), "unknown argument"),
    (("support", "priority"), "not key=value"),
    (("support", "priority=1", "priority=2"), "twice"),
    (("support", "x" * 600), "longer than"),
    (("support", "ringing=maybe"), "ringing"),
])
def test_invalid(args: tuple[str, ...], fragment: str) -> None:
    result = parse_args(args)
    assert isinstance(result, BadArgs)
    assert fragment in result.message

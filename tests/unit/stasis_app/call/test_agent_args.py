"""Table-driven tests of the agent operations' argument parser and of the caller's own device."""

from __future__ import annotations

import pytest

from stasis_app.call.agent_args import (
    AgentLogin,
    AgentLogout,
    AgentPause,
    AgentUnpause,
    Membership,
    channel_device,
    parse_agent_op,
)
from stasis_app.call.args import BadArgs


@pytest.mark.parametrize(("args", "expected"), [
    (("agent-login", "dora", "queue=support"), AgentLogin("dora", (Membership("support"),))),
    (("agent-login", " dora ", "QUEUE = support:2:10", "queue=sales:1", ""),
     AgentLogin("dora", (Membership("support", 2, 10), Membership("sales", 1)))),
    (("agent-login", "dora", "queue=support", "endpoint=Local/dora@agents/n", "state_interface=PJSIP/dora",
      "skill=lang:de", "skill=level:2", "paused=yes"),
     AgentLogin("dora", (Membership("support"),), "Local/dora@agents/n", "PJSIP/dora",
                (("lang", "de"), ("level", "2")), True)),
    (("agent-login", "dora", "paused=no", "queue=support"), AgentLogin("dora", (Membership("support"),))),
    (("agent-logout", "dora"), AgentLogout("dora")),
    (("agent-pause", "dora"), AgentPause("dora")),
    (("agent-pause", "dora", "reason=lunch break"), AgentPause("dora", "lunch break")),
    (("agent-pause", "dora", "reason=昼休み\u3000外出"), AgentPause("dora", "昼休み\u3000外出")),  # text, any script
    (("agent-pause", "dora", "reason="), AgentPause("dora")),
    (("agent-unpause", "dora"), AgentUnpause("dora")),
])
def test_valid(args: tuple[str, ...], expected: object) -> None:
    assert parse_agent_op(args) == expected


@pytest.mark.parametrize(("args", "fragment"), [
    (("agent-logout",), "missing agent id"),
    (("agent-logout", " "), "missing agent id"),
    (("agent-logout", "dora!"), "invalid agent id"),
    (("agent-logout", "x" * 65), "invalid agent id"),
    (("agent-logout", "dora", "reason=x"), "unknown argument 'reason'"),
    (("agent-unpause", "dora", "queue=support"), "unknown argument 'queue'"),
    (("agent-pause", "dora", "colour=blue"), "unknown argument"),
    (("agent-pause", "dora", "reason"), "not key=value"),
    (("agent-pause", "dora", "reason=a", "reason=b"), "twice"),
    (("agent-pause", "dora", "reason=" + "x" * 129), "reason"),
    (("agent-pause", "dora", "reason=a\tb"), "reason"),
    (("agent-pause", "dora", "reason=a|b"), "without '|'"),  # queue_log's separator
    (("agent-login", "dora"), "at least one queue"),
    (("agent-login", "dora", "endpoint=PJSIP/dora"), "at least one queue"),
    (("agent-login", "dora", "queue=bad queue"), "invalid queue name"),
    (("agent-login", "dora", "queue="), "invalid queue name"),
    (("agent-login", "dora", "queue=support:x"), "integers"),
    (("agent-login", "dora", "queue=support:-1"), "0..1000000"),
    (("agent-login", "dora", "queue=support:1:2000000"), "0..1000000"),
    (("agent-login", "dora", "queue=support:1:2:3"), "want queue=Q"),
    (("agent-login", "dora", "queue=support", "queue=support:1"), "given twice"),
    (("agent-login", "dora", "queue=support", "endpoint=dora"), "not a dial string"),
    (("agent-login", "dora", "queue=support", "endpoint=PJSIP/a b"), "endpoint must be a device"),
    (("agent-login", "dora", "queue=support", "endpoint=PJSIP/" + "a" * 300), "endpoint must be a device"),
    (("agent-login", "dora", "queue=support", "endpoint=PJSIP/a", "endpoint=PJSIP/b"), "twice"),
    (("agent-login", "dora", "queue=support", "state_interface="), "state_interface must be a device"),
    (("agent-login", "dora", "queue=support", "skill=lang"), "bad skill"),
    (("agent-login", "dora", "queue=support", "skill=lang:*"), "bad skill"),
    (("agent-login", "dora", "queue=support", "skill=lang:de", "skill=lang:fr"), "skill lang given twice"),
    (("agent-login", "dora", "queue=support", "paused=maybe"), "paused must be yes or no"),
    (("agent-login", "dora", *(f"queue=q{i}" for i in range(65))), "at most 64 queues"),
    (("agent-login", "dora", "queue=support", "x" * 600), "longer than"),
    (("agent-login", "dora", "queue=support", "priority=1"), "unknown argument 'priority'"),
    (("support", "dora"), "not an agent operation"),
    (("Agent-Login", "dora"), "not an agent operation"),
])
def test_invalid(args: tuple[str, ...], fragment: str) -> None:
    result = parse_agent_op(args)
    assert isinstance(result, BadArgs), result
    assert fragment in result.message


@pytest.mark.parametrize(("name", "device"), [
    ("PJSIP/alice-0000001a", "PJSIP/alice"),
    ("PJSIP/front-desk-00000002", "PJSIP/front-desk"),
    ("SIP/1001-0000abcd", "SIP/1001"),
    ("IAX2/bob-1234", None),  # IAX2 and DAHDI names are no dial strings once cut: endpoint= is needed
    ("IAX2/10.0.0.5:4569-1234", None),
    ("DAHDI/i1/5551234-1", None),
    ("Local/dora@agents-00000003;2", None),
    ("local/dora@agents-00000003;1", None),
    ("nodevice-0001", None),
    ("PJSIP/-0001", None),
])
def test_channel_device(name: str, device: str | None) -> None:
    assert channel_device(name) == device


def test_names_with_a_trailing_newline_are_refused() -> None:
    assert isinstance(parse_agent_op(("agent-login", "alice", "queue=support\n:1")), BadArgs)
    assert isinstance(parse_agent_op(("agent-login", "alice", "queue=support", "skill=lang\n:de")), BadArgs)

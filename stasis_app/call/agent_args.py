"""Parsing of the dialplan's agent operations (pure), app_queue's AddQueueMember / RemoveQueueMember /
PauseQueueMember / UnpauseQueueMember for clusterq. Syntax (documented in docs/dialplan.md):

    Stasis(clusterq,agent-login,<agent_id>[,queue=Q[:penalty[:weight]]]...[,endpoint=TECH/res]
           [,state_interface=DEV][,skill=K:V]...[,paused=yes])
    Stasis(clusterq,agent-logout,<agent_id>)
    Stasis(clusterq,agent-pause,<agent_id>[,reason=R])
    Stasis(clusterq,agent-unpause,<agent_id>)

The same rules as the callers' arguments (args.py): names [A-Za-z0-9_.-]{1,64}, key=value in any
order, keys case-insensitive, each at most once except `queue` and `skill`, each argument at most
MAX_ARG_LEN characters; anything else is refused (the channel continues with INVALID). The bounds
are the coordinator's own (coordinator/definitions.py), so a refusal comes from here, at once.
"""

from __future__ import annotations

from dataclasses import dataclass

from clusterq_common.dialplan import AGENT_OPERATIONS
from clusterq_common.text import plain_text_error
from stasis_app.call.args import MAX_ARG_LEN, NAME_RE, BadArgs, key_values, yes_no

__all__ = [
    "AGENT_OPS",
    "AgentLogin",
    "AgentLogout",
    "AgentOp",
    "AgentPause",
    "AgentUnpause",
    "Membership",
    "channel_device",
    "parse_agent_op",
]

# The first Stasis arguments that name an agent operation (reserved: no queue can be reached by them).
LOGIN, LOGOUT, PAUSE, UNPAUSE = "agent-login", "agent-logout", "agent-pause", "agent-unpause"
AGENT_OPS = AGENT_OPERATIONS  # clusterq_common.dialplan: the coordinator refuses them as queue names
assert AGENT_OPS == {LOGIN, LOGOUT, PAUSE, UNPAUSE}
MAX_ITEMS = 64  # queue memberships, skills (the coordinator's MAX_ITEMS)
MAX_DEVICE_LEN = 256  # endpoint, state interface (the coordinator's MAX_TEXT_LEN)
MAX_REASON_LEN = 128  # pause reason (Agents.Pause refuses longer ones)
MAX_PENALTY = 1_000_000  # penalty and weight


@dataclass(frozen=True)
class Membership:
    """One queue=Q[:penalty[:weight]]."""

    queue: str
    penalty: int = 0
    weight: int = 0


@dataclass(frozen=True)
class AgentLogin:
    """agent-login: log in (a logged-in agent's settings are replaced, as Agents.Login does)."""

    agent_id: str
    memberships: tuple[Membership, ...]
    endpoint: str = ""  # "": the calling channel's own device (channel_device)
    state_interface: str = ""  # "": the coordinator follows the endpoint's device
    skills: tuple[tuple[str, str], ...] = ()
    paused: bool = False


@dataclass(frozen=True)
class AgentLogout:
    """agent-logout."""

    agent_id: str


@dataclass(frozen=True)
class AgentPause:
    """agent-pause, with an optional reason."""

    agent_id: str
    reason: str = ""


@dataclass(frozen=True)
class AgentUnpause:
    """agent-unpause."""

    agent_id: str


AgentOp = AgentLogin | AgentLogout | AgentPause | AgentUnpause

# The keys each operation takes (anything else is an unknown argument).
_KEYS = {LOGIN: ("queue", "endpoint", "state_interface", "skill", "paused"), LOGOUT: (), PAUSE: ("reason",),
         UNPAUSE: ()}
_REPEATABLE = ("queue", "skill")


def _device(key: str, value: str) -> str | BadArgs:
    """A dial string / device name: it goes to Asterisk as is, so no spaces or control characters."""
    if not value or len(value) > MAX_DEVICE_LEN or not value.isprintable() or any(c.isspace() for c in value):
        return BadArgs(f"{key} must be a device like PJSIP/alice (at most {MAX_DEVICE_LEN} characters, no spaces)")
    if key == "endpoint" and "/" not in value:
        return BadArgs(f"endpoint {value[:80]!r} is not a dial string like PJSIP/alice")
    return value


def _membership(value: str) -> Membership | BadArgs:
    queue, *numbers = value.split(":")
    if not NAME_RE.match(queue):
        return BadArgs(f"invalid queue name {queue[:80]!r}")
    if len(numbers) > 2:
        return BadArgs(f"queue {queue}: want queue=Q[:penalty[:weight]]")
    try:
        penalty, weight = (int(n) for n in [*numbers, "0", "0"][:2])
    except ValueError:
        return BadArgs(f"queue {queue}: penalty and weight must be integers")
    if not (0 <= penalty <= MAX_PENALTY and 0 <= weight <= MAX_PENALTY):
        return BadArgs(f"queue {queue}: penalty and weight must be in 0..{MAX_PENALTY}")
    return Membership(queue, penalty, weight)


def _skill(value: str) -> tuple[str, str] | BadArgs:
    key, sep, val = value.partition(":")
    if not sep or not NAME_RE.match(key) or not NAME_RE.match(val):
        return BadArgs(f"bad skill {value[:80]!r}: want key:value")
    return key, val


def parse_agent_op(args: tuple[str, ...]) -> AgentOp | BadArgs:
    """Parse Stasis args after the app name whose first is one of AGENT_OPS; never raises."""
    op = args[0] if args else ""
    if op not in AGENT_OPS:
        return BadArgs(f"{op[:40]!r} is not an agent operation")
    if any(len(a) > MAX_ARG_LEN for a in args):
        return BadArgs(f"an argument is longer than {MAX_ARG_LEN} characters")
    agent_id = args[1].strip() if len(args) > 1 else ""
    if not agent_id:
        return BadArgs(f"missing agent id: Stasis(clusterq,{op},<agent_id>...)")
    if not NAME_RE.match(agent_id):
        return BadArgs(f"invalid agent id {agent_id[:80]!r}")
    memberships: list[Membership] = []
    skills: list[tuple[str, str]] = []
    single: dict[str, str] = {}
    pairs = key_values(args[2:])
    if isinstance(pairs, BadArgs):
        return pairs
    for key, value in pairs:
        if key not in _KEYS[op]:
            return BadArgs(f"unknown argument {key[:40]!r} for {op}")
        if key == "queue":
            got_m = _membership(value)
            if isinstance(got_m, BadArgs):
                return got_m
            if any(m.queue == got_m.queue for m in memberships):
                return BadArgs(f"queue {got_m.queue} given twice")
            memberships.append(got_m)
        elif key == "skill":
            got_s = _skill(value)
            if isinstance(got_s, BadArgs):
                return got_s
            if any(k == got_s[0] for k, _ in skills):
                return BadArgs(f"skill {got_s[0]} given twice")
            skills.append(got_s)
        elif key in single:
            return BadArgs(f"{key} given twice")
        else:
            single[key] = value
    if len(memberships) > MAX_ITEMS or len(skills) > MAX_ITEMS:
        return BadArgs(f"at most {MAX_ITEMS} queues and {MAX_ITEMS} skills")
    if op == LOGOUT:
        return AgentLogout(agent_id)
    if op == UNPAUSE:
        return AgentUnpause(agent_id)
    if op == PAUSE:
        reason = single.get("reason", "")
        # "|" separates queue_log's fields: the coordinator refuses it in a reason too.
        if len(reason) > MAX_REASON_LEN or plain_text_error("reason", reason) is not None:
            return BadArgs(f"reason must be printable text without '|' of at most {MAX_REASON_LEN} characters")
        return AgentPause(agent_id, reason)
    return _login(agent_id, memberships, skills, single)


def _login(agent_id: str, memberships: list[Membership], skills: list[tuple[str, str]],
           single: dict[str, str]) -> AgentLogin | BadArgs:
    if not memberships:
        return BadArgs("agent-login needs at least one queue=Q[:penalty[:weight]]")
    endpoint = state_interface = ""
    if "endpoint" in single:
        got = _device("endpoint", single["endpoint"])
        if isinstance(got, BadArgs):
            return got
        endpoint = got
    if "state_interface" in single:
        got = _device("state_interface", single["state_interface"])
        if isinstance(got, BadArgs):
            return got
        state_interface = got
    paused = yes_no("paused", single.get("paused", "no"))
    if isinstance(paused, BadArgs):
        return paused
    return AgentLogin(agent_id, tuple(memberships), endpoint, state_interface, tuple(skills), paused)


PHONE_TECHS = frozenset({"pjsip", "sip"})
"""Technologies whose channel name is TECH/<endpoint>-<unique>, the endpoint a phone is rung at. Other
names are no dial string once the suffix is cut (IAX2/10.0.0.5:4569-1, DAHDI/i1/5551234-1, Local):
such a caller must say endpoint=."""


def channel_device(channel_name: str) -> str | None:
    """The device of the calling channel ("PJSIP/alice-0000001a" -> "PJSIP/alice"), or None when it
    has none an agent could be rung at (see PHONE_TECHS)."""
    device = channel_name.rsplit("-", 1)[0] if "-" in channel_name else channel_name
    tech, sep, resource = device.partition("/")
    if not sep or tech.lower() not in PHONE_TECHS or not resource or "/" in resource:
        return None
    return device

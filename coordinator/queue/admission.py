"""joinempty / leavewhenempty, as app_queue's get_member_status.

With a non-empty condition set, a queue with no logged-in member is "empty", and one whose members are
all unusable "unavailable"; either sends a caller back with JOINEMPTY / LEAVEEMPTY, as Asterisk 22's
app_queue does (its JOINUNAVAIL / LEAVEUNAVAIL are never set since 1.6; measured beside it). A member is
unusable when it is in one of the listed conditions: paused, penalty (outside the caller's current
penalty band), inuse (in a call, or its device INUSE, BUSY, ONHOLD or RINGINUSE), ringing (an offer
pending, or its device RINGING or RINGINUSE), unavailable (home node lost, or its device UNAVAILABLE),
invalid (its device INVALID), unknown (its node reported its device UNKNOWN: not before a first report),
wrapup. The device states follow app_queue's get_member_status, which also counts only INUSE as
"inuse"; BUSY and ONHOLD are counted too here, since such a member cannot take the call either.
"""

from __future__ import annotations

import math
from collections.abc import Set

from coordinator.queue.decisions import Decision
from coordinator.queue.events import CallerJoined
from coordinator.queue.lifecycle import exit_caller
from coordinator.queue.model import CallerStatus
from coordinator.queue.state import WAITING, AgentRec, CallerRec, EngineState, MemberRec, QueueRec

__all__ = ["EMPTY", "UNAVAIL", "initial_band", "join_args_problem", "leave_when_empty", "member_status"]

EMPTY = "empty"
UNAVAIL = "unavail"


_DEVICE_INUSE = frozenset({"INUSE", "BUSY", "ONHOLD", "RINGINUSE"})
_DEVICE_RINGING = frozenset({"RINGING", "RINGINUSE"})


def _unusable(agent: AgentRec, member: MemberRec, conditions: Set[str], band: tuple[int, int] | None, now: float,
              lost_nodes: Set[str]) -> bool:
    if "paused" in conditions and agent.paused:
        return True
    if "penalty" in conditions and band is not None and not band[0] <= member.penalty <= band[1]:
        return True
    device = agent.device_state
    if "inuse" in conditions and (agent.calls or device in _DEVICE_INUSE):
        return True
    if "ringing" in conditions and (agent.offer_id is not None or device in _DEVICE_RINGING):
        return True
    # A node lost, not one whose stream is briefly down (a stasis app restarting, a leader change):
    # its agents' phones are still there, and its callers were not sent back for it either.
    if "unavailable" in conditions and (agent.config.home_node in lost_nodes or device == "UNAVAILABLE"):
        return True
    if "invalid" in conditions and device == "INVALID":
        return True
    if "unknown" in conditions and device == "UNKNOWN":
        return True
    return "wrapup" in conditions and agent.wrapup_until > now


def member_status(
    st: EngineState, q: QueueRec, conditions: Set[str], band: tuple[int, int] | None, now: float
) -> str | None:
    """None when a usable member exists, else "empty" (no members) or "unavail" (none usable)."""
    if not conditions:
        return None
    if not q.members:
        return EMPTY
    for member in q.members.values():
        agent = st.agents.get(member.agent_id)
        if agent is not None and not _unusable(agent, member, conditions, band, now, st.lost_nodes):
            return None
    return UNAVAIL


def _bands(q: QueueRec, now: float) -> list[tuple[tuple[int, int] | None, float, float]]:
    """(band, lo, hi): callers with lo < joined_at <= hi have that penalty band at `now`."""
    rules = q.config.penalty_rules
    if not rules:
        return [(None, -math.inf, math.inf)]
    out: list[tuple[tuple[int, int] | None, float, float]] = [(None, now - rules[0].after_seconds, math.inf)]
    for i, rule in enumerate(rules):
        lo = now - rules[i + 1].after_seconds if i + 1 < len(rules) else -math.inf
        out.append(((rule.min_penalty, rule.max_penalty), lo, now - rule.after_seconds))
    return out


def leave_when_empty(st: EngineState, now: float, out: list[Decision]) -> None:
    """Send waiting callers of queues with leavewhenempty back to the dialplan when no member is usable.

    Cost per call: O(queues with leavewhenempty x penalty bands x members), plus the callers that leave
    (callers are grouped by band through their join times, never scanned one by one otherwise).
    """
    for q in list(st.queues.values()):
        conditions = q.config.leavewhenempty
        if not conditions or not q.line:
            continue
        bands = _bands(q, now) if "penalty" in conditions else [(None, -math.inf, math.inf)]
        leaving: list[tuple[CallerRec, CallerStatus]] = []
        for band, lo, hi in bands:
            status = member_status(st, q, conditions, band, now)
            if status is None:
                continue
            code = CallerStatus.LEAVEEMPTY  # app_queue's wait_our_turn: never LEAVEUNAVAIL
            for uid in q.line.uids_joined_in(lo, hi):
                caller = st.by_uid[uid]
                # app_queue checks leavewhenempty while a caller waits, not while it is being rung.
                if caller.state == WAITING:
                    leaving.append((caller, code))
        for caller, code in leaving:
            exit_caller(st, caller, code, now, out)


def join_args_problem(ev: CallerJoined) -> str:
    """Why a CallerJoined is malformed (INVALID_ARGS), or "" when it is fine."""
    if not ev.call_id:
        return "call_id must be non-empty"
    if not ev.node_id:
        return "node_id must be non-empty"
    if ev.position < 0:
        return "position must be >= 0"
    if ev.arrival_seq is not None and ev.arrival_seq < 0:
        return "arrival_seq must be >= 0"
    if ev.requirements and any(not r.key or not r.value for r in ev.requirements):
        return "requirements need a key and a value"
    return ""


def initial_band(q: QueueRec) -> tuple[int, int] | None:
    """The penalty band of a caller at join time (rules with after_seconds <= 0)."""
    rules = [r for r in q.config.penalty_rules if r.after_seconds <= 0]
    return (rules[-1].min_penalty, rules[-1].max_penalty) if rules else None

"""`queue show` text from the coordinator's answers (pure: protobuf messages in, lines out).

The layout follows Asterisk's `queue show` so that an app_queue operator reads it at a glance:

    support has 2 calls (max unlimited) in 'leastrecent' strategy (12s holdtime, 84s talktime), \
        W:0, C:10, A:2, SL:80.0%, SL2:85.0% within 60s          (one line; cut here to fit)
       Members:
          alice (PJSIP/alice on a) (penalty 1) (available) (Not in use) has taken 5 calls (idle 30 secs)
       Callers:
          1. a-1700000000.12 on a (wait: 0:35, prio: 0)

A member's device state is app_queue's word for it ("(In use)", "(Unavailable)", "(Invalid)"...); a
state interface other than the endpoint's own device is shown as app_queue does ("Local/bob@agents/n
from PJSIP/bob"). Differences, because the queue spans nodes: a member shows its home node, a caller
its node and its channel id there; C and A count since the current leader took over (statistics live in the leader's
memory, see docs/design.md).
"""

from __future__ import annotations

from collections.abc import Sequence

from clusterq_proto.v1 import admin_pb2

__all__ = ["agent_line", "device_line", "queue_show"]

# app_queue's service-level default, and the coordinator's.
DEFAULT_SERVICE_LEVEL = 60.0
# Asterisk's words for device states (ast_devstate_str), as `queue show` prints them.
DEVICE_WORDS = {"UNKNOWN": "Unknown", "NOT_INUSE": "Not in use", "INUSE": "In use", "BUSY": "Busy",
                "INVALID": "Invalid", "UNAVAILABLE": "Unavailable", "RINGING": "Ringing", "RINGINUSE": "Ring+Inuse",
                "ONHOLD": "On Hold"}


def _wait(seconds: float) -> str:
    """m:ss, as app_queue prints a caller's wait."""
    whole = max(0, int(seconds))
    return f"{whole // 60}:{whole % 60:02d}"


def agent_line(agent: admin_pb2.AgentState, queue: str = "") -> str:
    """One member line: id, endpoint (and state interface) and home node, penalty in `queue`, state,
    device state, calls taken."""
    iface = agent.state_interface
    # The endpoint's own device (Local's without its "/options") goes without saying.
    own = not iface or iface == agent.endpoint or agent.endpoint.startswith(f"{iface}/")
    source = "" if own else f" from {iface}"
    parts = [f"{agent.agent_id} ({agent.endpoint}{source} on {agent.home_node})"]
    membership = next((m for m in agent.queues if m.queue == queue), None)
    if membership is not None and membership.penalty:
        parts.append(f"(penalty {membership.penalty})")
    state = f"paused:{agent.pause_reason}" if agent.state == "paused" and agent.pause_reason else agent.state
    parts.append(f"({state})")
    if agent.device_state:  # "" from a leader without device state
        parts.append(f"({DEVICE_WORDS.get(agent.device_state, agent.device_state)})")
    if agent.calls_taken:
        taken = f"has taken {agent.calls_taken} call{'s' if agent.calls_taken != 1 else ''}"
        if agent.idle_for > 0:
            taken += f" (idle {int(agent.idle_for)} secs)"
    else:
        taken = "has taken no calls yet"
    parts.append(taken)
    return " ".join(parts)


def device_line(agent: admin_pb2.AgentState) -> str:
    """`agent show`'s second line: the device followed and its state as the node reported it."""
    return f"   device {agent.state_interface}: {agent.device_state}"


def _stats_line(definition: admin_pb2.QueueDefinition, stats: admin_pb2.QueueStats) -> str:
    maxlen = str(definition.maxlen) if definition.maxlen else "unlimited"
    strategy = definition.strategy or "ringall"
    level = definition.service_level if definition.HasField("service_level") else DEFAULT_SERVICE_LEVEL
    calls = f"{stats.waiting} call{'s' if stats.waiting != 1 else ''}"
    return (f"{definition.name} has {calls} (max {maxlen}) in '{strategy}' strategy "
            f"({round(stats.holdtime)}s holdtime, {round(stats.avg_talk_time)}s talktime), "
            f"W:{definition.weight}, C:{stats.answered}, A:{stats.abandoned}, "
            f"SL:{stats.service_level_pct:.1f}%, SL2:{stats.service_level2_pct:.1f}% within {level:g}s")


def queue_show(definition: admin_pb2.QueueDefinition, snapshot: admin_pb2.StatsSnapshot) -> list[str]:
    """The `queue show <name>` block of one queue, from its definition and a Stats snapshot of it
    taken with include_callers (callers in queue order)."""
    stats = next((q for q in snapshot.queues if q.queue == definition.name), None)
    if stats is None:
        stats = admin_pb2.QueueStats(queue=definition.name)
    lines = [_stats_line(definition, stats)]
    members: Sequence[admin_pb2.AgentState] = sorted(
        (a for a in snapshot.agents if any(m.queue == definition.name for m in a.queues)),
        key=lambda a: a.agent_id)
    if members:
        lines.append("   Members:")
        lines += [f"      {agent_line(a, definition.name)}" for a in members]
    else:
        lines.append("   No Members")
    callers = sorted(snapshot.callers, key=lambda c: c.position)
    if callers:
        lines.append("   Callers:")
        for c in callers:
            ringing = " (ringing)" if c.state == "ringing" else ""
            lines.append(f"      {c.position}. {c.call_id} on {c.node_id} (wait: {_wait(c.waited)}, "
                         f"prio: {c.priority}){ringing}")
    else:
        lines.append("   No Callers")
    return lines

"""First arguments of `Stasis(clusterq,...)` that are never queue names, shared by the stasis app (which
routes them) and the coordinator (which refuses to define a queue of such a name: no caller could
reach it)."""

from __future__ import annotations

__all__ = ["AGENT_OPERATIONS", "LEG_ARGS", "MAX_PRIORITY", "RESERVED_FIRST_ARGS"]

MAX_PRIORITY = 1_000_000
"""A caller's priority is in -MAX_PRIORITY..MAX_PRIORITY: the Stasis argument `priority=N`, what the
coordinator accepts from a node, and an operator's change (QueueAdmin.SetCallerPriority)."""

LEG_ARGS = frozenset({"agentleg", "inbound", "trunk"})
"""clusterq's own legs: an agent's leg, a cross-node leg arriving, a trunk leg (docs/dialplan.md)."""

AGENT_OPERATIONS = frozenset({"agent-login", "agent-logout", "agent-pause", "agent-unpause"})
"""Agents' feature codes (docs/dialplan.md, "Agents from the phone")."""

RESERVED_FIRST_ARGS = LEG_ARGS | AGENT_OPERATIONS

"""A waiting caller's priority changed by an operator (events.CallerPriorityChanged), like app_queue's
`queue priority caller <channel> on <queue> to <priority>`.

The caller moves within its queue's line as if it had joined with the new priority: its rank key keeps
its order (its arrival sequence, or the place a `position=` override gave it) and takes the priority.
A ringing caller moves too (its offers go on). Its node is told (PriorityChanged), so a later leader,
rebuilt from the node's re-report, ranks it the same way.
"""

from __future__ import annotations

from coordinator.queue.decisions import Decision, PriorityChanged
from coordinator.queue.events import CallerPriorityChanged
from coordinator.queue.ranking import rank_key
from coordinator.queue.state import CONNECTED, EngineState

__all__ = ["change_priority"]


def change_priority(st: EngineState, ev: CallerPriorityChanged, out: list[Decision]) -> None:
    """Re-rank a waiting or ringing caller with its new priority (a connected or unknown one: nothing)."""
    caller = st.callers.get(ev.call_id)
    if caller is None or caller.state == CONNECTED or caller.priority == ev.priority:
        return
    line = st.queues[caller.queue].line
    line.remove(caller.key, caller.joined_at)
    caller.key = rank_key(ev.priority, caller.key[1], caller.uid)
    caller.priority = ev.priority
    line.add(caller.key, caller.joined_at)
    st.dispatch_dirty = True  # a free agent this caller's rank kept away may take it now
    out.append(PriorityChanged(caller.call_id, caller.node_id, ev.priority))

"""QueueEngine: the pure, synchronous ACD state machine of the coordinator.

Events and `now` in, decisions out: no I/O, no clock reads, randomness only from the injected
`random.Random`. The same event sequence with the same `now` values and seed gives the same decisions,
so a new leader can rebuild state by replaying re-reports.

Each `apply` runs, in order: due timers, the event, timers the event made due, leavewhenempty, and the
matching loop (`dispatch`), so a free agent is offered its best eligible caller at once (neither
leavewhenempty, joinempty nor dispatch while a new leader settles: events.Settling).
Invalid configs raise ValueError before any state changes; events about unknown calls, offers or
agents are stale and ignored (they return no decisions).
"""

from __future__ import annotations

import heapq
import itertools
import random
from collections.abc import Callable, Iterator
from fractions import Fraction
from typing import Any

from coordinator.queue.admission import EMPTY, initial_band, join_args_problem, leave_when_empty, member_status
from coordinator.queue.agents import agent_logged_in, agent_logged_out, agent_paused
from coordinator.queue.decisions import AgentView, CallerView, Decision, JoinAccepted, JoinRejected, QueueStats
from coordinator.queue.devices import device_state_changed
from coordinator.queue.dispatch import dispatch
from coordinator.queue.events import (
    AgentLoggedIn,
    AgentLoggedOut,
    AgentPaused,
    AgentUnpaused,
    CallAdopted,
    CallEnded,
    CallerJoined,
    CallerLeft,
    CallerPriorityChanged,
    CallUnbridged,
    DeviceStateChanged,
    Event,
    NodeAlive,
    NodeAttached,
    NodeDetached,
    NodeLost,
    OfferAnswered,
    OfferFailed,
    QueueDefined,
    QueueDeleted,
    Settling,
    Tick,
)
from coordinator.queue.handover import adopt_call, fail_connected_offer, unbridge_call
from coordinator.queue.lifecycle import (
    answer_offer,
    end_call,
    exit_caller,
    fail_offer,
    remove_waiting_caller,
)
from coordinator.queue.model import CallerStatus
from coordinator.queue.nodes import node_alive, node_attached, node_detached, node_lost
from coordinator.queue.ranking import QueueLine, rank_key
from coordinator.queue.reprioritize import change_priority
from coordinator.queue.state import CONNECTED, CallerRec, EngineState, QueueRec
from coordinator.queue.timers import live, run_due, schedule_caller_timers
from coordinator.queue.views import agent_view, caller_ewt, caller_view, queue_stats

__all__ = ["QueueEngine"]


def _ignore(event: Event, now: float, out: list[Decision]) -> None:
    """Tick (and any event type the engine does not know): only timers and dispatch run."""


class QueueEngine:
    """Cluster-wide queues, agents and callers; see the module docstring for the contract."""

    def __init__(self, rng: random.Random | None = None, offer_id_prefix: str = "o") -> None:
        # A fixed default seed keeps an engine built without an rng deterministic too.
        self._rng = rng if rng is not None else random.Random(0)
        self._prefix = offer_id_prefix
        self._st = EngineState()
        self._now = 0.0
        self._handlers = self._make_handlers()
        # Whether any queue has leavewhenempty (kept current by queue definitions and deletions).
        self._leave_when_empty = False

    # ----------------------------------------------------------------- apply
    def apply(self, event: Event, now: float) -> list[Decision]:
        """Apply one event at time `now`; return the decisions to carry out, in order."""
        # Validate first: a bad config must not lose the decisions of timers that already fired.
        kind = type(event)
        if kind is QueueDefined or kind is AgentLoggedIn:
            self._validate(event)
        self._now = now
        st = self._st
        out: list[Decision] = []
        timers = st.timers
        # run_due / leave_when_empty / dispatch are called only when they can act (the checks are
        # theirs too): this runs once per node event.
        if timers and timers[0][0] <= now:
            run_due(st, now, self._ewt, out)
        handler = self._handlers.get(kind)
        if handler is None:
            handler = self._handler_for(event)
        handler(event, now, out)
        if timers and timers[0][0] <= now:
            run_due(st, now, self._ewt, out)
        if st.settling:
            return out
        if self._leave_when_empty:
            leave_when_empty(st, now, out)
        if st.idle and st.dispatch_dirty and not st.attaching:
            dispatch(st, self._rng, self._prefix, now, out)
        return out

    @staticmethod
    def _validate(event: Event) -> None:
        if isinstance(event, QueueDefined):
            event.config.validate()
        elif isinstance(event, AgentLoggedIn):
            event.agent.validate()

    def _handler_for(self, event: Event) -> Callable[[Any, float, list[Decision]], None]:
        """The handler of an event type that is a subclass of a known one (exact types are in the table)."""
        for kind, handler in self._handlers.items():
            if isinstance(event, kind):
                return handler
        return _ignore

    def _make_handlers(self) -> dict[type, Callable[[Any, float, list[Decision]], None]]:
        st = self._st

        def offer_answered(event: OfferAnswered, now: float, out: list[Decision]) -> None:
            offer = st.offers.get(event.offer_id)
            if offer is not None:
                answer_offer(st, offer, now, out)

        def offer_failed(event: OfferFailed, now: float, out: list[Decision]) -> None:
            offer = st.offers.get(event.offer_id)
            if offer is not None:
                fail_offer(st, offer, event.reason, now, out)
            else:
                fail_connected_offer(st, event.offer_id, now, out)

        def call_ended(event: CallEnded, now: float, out: list[Decision]) -> None:
            caller = st.callers.get(event.call_id)
            if caller is None or caller.state != CONNECTED:
                return
            if event.offer_id and caller.offer_id and event.offer_id != caller.offer_id:
                return  # the end of an earlier offer of this caller, not of the call it is in now
            end_call(st, caller, event.agent_hung_up, now, out)

        def settling(event: Settling, now: float, out: list[Decision]) -> None:
            st.settling = event.active
            st.dispatch_dirty = True  # owed since the settle began

        return {
            QueueDefined: lambda e, now, out: self._queue_defined(e, now),
            QueueDeleted: self._queue_deleted,
            AgentLoggedIn: lambda e, now, out: agent_logged_in(st, e.agent, now, out),
            AgentLoggedOut: lambda e, now, out: agent_logged_out(st, e.agent_id, now, out),
            AgentPaused: lambda e, now, out: agent_paused(st, e.agent_id, True, e.reason, now, out),
            AgentUnpaused: lambda e, now, out: agent_paused(st, e.agent_id, False, "", now, out),
            CallerJoined: self._caller_joined,
            CallerLeft: self._caller_left,
            OfferAnswered: offer_answered,
            OfferFailed: offer_failed,
            CallAdopted: lambda e, now, out: adopt_call(st, e, now),
            CallUnbridged: lambda e, now, out: unbridge_call(st, e, now, out),
            CallEnded: call_ended,
            NodeLost: lambda e, now, out: node_lost(st, e.node_id, now, out),
            NodeDetached: lambda e, now, out: node_detached(st, e.node_id, now, out),
            NodeAttached: lambda e, now, out: node_attached(st, e.node_id, now, out),
            NodeAlive: lambda e, now, out: node_alive(st, e.node_id, now, out),
            DeviceStateChanged: lambda e, now, out: device_state_changed(st, e, now),
            CallerPriorityChanged: lambda e, now, out: change_priority(st, e, out),
            Settling: settling,
            Tick: _ignore,
        }

    # ------------------------------------------------------------ handlers
    def _queue_defined(self, event: QueueDefined, now: float) -> None:
        cfg = event.config
        st = self._st
        q = st.queues.get(cfg.name)
        if q is None:
            q = st.queues[cfg.name] = QueueRec(cfg, QueueLine(st.lines))
            for agent in st.agents.values():
                for m in agent.config.memberships:
                    if m.queue == cfg.name:
                        q.add_member(agent.config.agent_id, m.penalty, m.weight)
        else:
            q.set_config(cfg)
            for key in list(q.line):
                schedule_caller_timers(st, st.by_uid[key[2]], now)
        st.dispatch_dirty = True  # weights, penalty rules, ringinuse... may pair agents and callers now
        for agent_id in q.members:
            st.refresh_idle(agent_id, now)
        self._leave_when_empty = any(x.config.leavewhenempty for x in st.queues.values())

    def _queue_deleted(self, event: QueueDeleted, now: float, out: list[Decision]) -> None:
        st = self._st
        q = st.queues.get(event.name)
        if q is None:
            return
        for key in list(q.line):
            exit_caller(st, st.by_uid[key[2]], CallerStatus.QUEUE_DELETED, now, out)
        del st.queues[event.name]
        for agent_id in q.members:
            st.refresh_idle(agent_id, now)
        self._leave_when_empty = any(x.config.leavewhenempty for x in st.queues.values())

    def _caller_joined(self, ev: CallerJoined, now: float, out: list[Decision]) -> None:
        st = self._st
        existing = st.callers.get(ev.call_id)
        if existing is not None:
            if existing.queue == ev.queue and existing.state != CONNECTED:
                # Idempotent re-report of a caller this engine already holds.
                pos = st.queues[existing.queue].line.position(existing.key)
                out.append(JoinAccepted(ev.call_id, ev.queue, existing.arrival_seq, pos, self._ewt(existing, now)))
            else:
                out.append(JoinRejected(ev.call_id, CallerStatus.INVALID_ARGS, "call_id already in a queue or call"))
            return
        problem = join_args_problem(ev)
        if problem:
            out.append(JoinRejected(ev.call_id, CallerStatus.INVALID_ARGS, problem))
            return
        q = st.queues.get(ev.queue)
        if q is None:
            out.append(JoinRejected(ev.call_id, CallerStatus.UNKNOWN_QUEUE, f"no queue named {ev.queue!r}"))
            return
        if ev.node_id in st.lost_nodes:
            out.append(JoinRejected(ev.call_id, CallerStatus.UNAVAILABLE, f"node {ev.node_id} is marked lost"))
            return
        cfg = q.config
        line = q.line
        re_report = ev.arrival_seq is not None if ev.re_report is None else ev.re_report
        if not re_report:
            # app_queue's join_queue: joinempty first, then maxlen; any unmet joinempty condition is
            # JOINEMPTY (app_queue never sets JOINUNAVAIL); the message tells which case it was.
            joinempty = cfg.joinempty
            # While a new leader settles, what its members are doing is still being re-reported.
            status = member_status(st, q, joinempty, initial_band(q), now) if joinempty and not st.settling else None
            if status is not None:
                why = "has no members" if status == EMPTY else "has no usable member"
                out.append(JoinRejected(ev.call_id, CallerStatus.JOINEMPTY, f"queue {ev.queue} {why}"))
                return
            if cfg.maxlen and len(line) >= cfg.maxlen:
                out.append(JoinRejected(ev.call_id, CallerStatus.FULL, f"queue {ev.queue} is full"))
                return
        if ev.arrival_seq is None:
            st.arrival_counter += 1
            seq = st.arrival_counter
        else:
            seq = ev.arrival_seq
            st.arrival_counter = max(st.arrival_counter, seq)
        if re_report:
            order: int | Fraction = seq  # an override is not re-applied on a re-report: the queue around it changed
        else:
            order = line.order_for(ev.priority, ev.position, seq) if ev.position > 0 else seq
            q.counters.on_arrival(now)
        uid = st.uid_counter = st.uid_counter + 1
        joined_at = ev.joined_at if ev.joined_at is not None else now
        key = rank_key(ev.priority, order, uid)
        caller = CallerRec(uid, ev.call_id, ev.queue, ev.node_id, ev.priority, seq, key, ev.requirements,
                           ev.caller_number, ev.caller_name, joined_at)
        position = line.add(key, joined_at)
        st.dispatch_dirty = True
        st.callers[ev.call_id] = caller
        st.by_uid[uid] = caller
        caller.last_announce, caller.last_pos_said = now, position
        if q.caller_timers:  # a fresh record already holds what schedule_caller_timers sets when none apply
            schedule_caller_timers(st, caller, now)
        out.append(JoinAccepted(ev.call_id, ev.queue, seq, position, caller_ewt(st, q, caller, now)))

    def _caller_left(self, event: CallerLeft, now: float, out: list[Decision]) -> None:
        st = self._st
        caller = st.callers.get(event.call_id)
        if caller is None:
            return
        if caller.state == CONNECTED:
            end_call(st, caller, False, now, out)
            return
        q = st.queues.get(caller.queue)
        if q is not None:
            # As app_queue and queue_log count them: the node's timeout= is a timeout (EXITWITHTIMEOUT),
            # an exit key neither answered nor abandoned (EXITWITHKEY), anything else abandoned.
            if event.reason == "timeout":
                q.counters.timed_out += 1
            elif event.reason != "exitkey":
                q.counters.on_abandon(now - caller.joined_at, q.config.service_level)
        remove_waiting_caller(st, caller, "caller_left", now, out, want_position=False)

    # --------------------------------------------------------------- queries
    def position(self, call_id: str) -> int | None:
        """1-based position of a waiting or ringing caller in its queue (O(log n)); None otherwise."""
        caller = self._st.callers.get(call_id)
        if caller is None or caller.state == CONNECTED:
            return None
        return self._st.queues[caller.queue].line.position(caller.key)

    def estimated_wait(self, call_id: str, now: float) -> float | None:
        """Estimated remaining wait of a queued caller (method per queue, see ewt.py); None otherwise."""
        caller = self._st.callers.get(call_id)
        if caller is None or caller.state == CONNECTED:
            return None
        return self._ewt(caller, now)

    def _ewt(self, caller: CallerRec, now: float) -> float:
        """EWT of a queued caller record (shared with the timers for announcements)."""
        return caller_ewt(self._st, self._st.queues[caller.queue], caller, now)

    def next_deadline(self) -> float | None:
        """Earliest `now` at which a Tick could produce something; None when no timer is pending."""
        timers = self._st.timers
        while timers and not live(self._st, timers[0]):
            heapq.heappop(timers)
        return timers[0][0] if timers else None

    def holds(self, call_id: str) -> bool:
        """Whether a caller with this id is queued or connected (cheaper than `caller()`)."""
        return call_id in self._st.callers

    def caller(self, call_id: str) -> CallerView | None:
        """A view of a queued or connected caller, None if unknown."""
        c = self._st.callers.get(call_id)
        return None if c is None else caller_view(c, self.position(call_id))

    def connected_offer(self, call_id: str) -> tuple[str, str] | None:
        """(offer id, agent id) of a caller held as connected; None otherwise."""
        c = self._st.callers.get(call_id)
        return (c.offer_id, c.agent_id) if c is not None and c.state == CONNECTED else None

    def offer_status(self, offer_id: str, call_id: str) -> str:
        """"ringing" (pending), "connected" (its caller talks through it) or "" (unknown here)."""
        if offer_id in self._st.offers:
            return "ringing"
        c = self._st.callers.get(call_id)
        return "connected" if c is not None and c.state == CONNECTED and c.offer_id == offer_id else ""

    def reporters(self, call_id: str, offer_id: str = "") -> tuple[str, str] | None:
        """The nodes that may report about a pending offer, else a held call: (the caller's node, the
        agent's node, "" when unknown); None when neither is held here."""
        st = self._st
        if offer_id:
            o = st.offers.get(offer_id)
            if o is not None:
                return o.caller_node, o.agent_node
        c = st.callers.get(call_id) if call_id else None
        if c is None:
            return None
        if c.agent_node:  # where its agent leg is, even if the agent logged out or moved since
            return c.node_id, c.agent_node
        a = st.agents.get(c.agent_id) if c.agent_id else None
        return c.node_id, a.config.home_node if a is not None else ""

    def node_lost(self, node_id: str) -> bool:
        """Whether a node is held as lost (NodeLost, and not attached since)."""
        return node_id in self._st.lost_nodes

    def agent_home(self, agent_id: str) -> str:
        """The home node of a logged-in agent ("" if unknown)."""
        a = self._st.agents.get(agent_id)
        return a.config.home_node if a is not None else ""

    def calls_on_node(self, node_id: str) -> list[tuple[str, bool]]:
        """(call id, connected?) of every caller held for a node (O(callers): for re-registers only)."""
        return [(c.call_id, c.state == CONNECTED) for c in self._st.callers.values() if c.node_id == node_id]

    def waiting_callers(self, queue: str, limit: int | None = None) -> list[CallerView]:
        """Waiting and ringing callers of a queue in position order (the first `limit`; O(limit))."""
        return list(self.iter_waiting_callers(queue, limit))

    def iter_waiting_callers(self, queue: str, limit: int | None = None) -> Iterator[CallerView]:
        """The same, viewed lazily: the order is copied at the call (a list copy), the views are made
        as the iterator is read, so a long listing can be spread over several loop steps. Positions are
        those of the call; a caller gone by the time its view is made is skipped."""
        q = self._st.queues.get(queue)
        keys = list(itertools.islice(q.line, limit)) if q is not None else []
        by_uid = self._st.by_uid
        for i, key in enumerate(keys):
            c = by_uid.get(key[2])
            if c is not None:
                yield caller_view(c, i + 1)

    def snapshot(self, now: float) -> list[QueueStats]:
        """Statistics of every queue, sorted by name."""
        return [queue_stats(self._st, q, now) for _, q in sorted(self._st.queues.items())]

    def agent_states(self) -> list[AgentView]:
        """Every logged-in agent, sorted by id (wrap-up judged at the last applied `now`)."""
        return [agent_view(a, self._now) for _, a in sorted(self._st.agents.items())]

    def agent_state(self, agent_id: str) -> AgentView | None:
        """One logged-in agent's view (None if not logged in); O(1), for per-agent requests."""
        a = self._st.agents.get(agent_id)
        return agent_view(a, self._now) if a is not None else None

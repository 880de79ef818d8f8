"""Timer handling: ring timeouts, wrap-up ends, max wait, wake-ups, announcements.

Timers live in one heap with lazy deletion: an entry is acted on only if the record it names still
carries the same deadline (see `live`). Announcement rule (app_queue's say_position): a caller is
announced when announce_frequency has passed since its last announcement, or when its position
changed and min_announce_frequency has passed; changes are checked every min_announce_frequency.
The join counts as an announcement (JoinAccepted carries position and wait).
"""

from __future__ import annotations

import heapq
from collections.abc import Callable

from coordinator.queue.decisions import Announce, CancelOffer, Decision, PeriodicAnnounce
from coordinator.queue.lifecycle import exit_caller, fail_offer
from coordinator.queue.model import CallerStatus
from coordinator.queue.state import CONNECTED, RINGING, CallerRec, EngineState, Timer

__all__ = ["live", "run_due", "schedule_caller_timers"]

EwtFn = Callable[[CallerRec, float], float]


RINGING_RECHECK = 1.0
"""Seconds between two checks of an announcement held back while the caller's agent rings."""


def _caller_for(st: EngineState, timer: Timer) -> CallerRec | None:
    caller = st.callers.get(timer[3])
    if caller is None or caller.uid != timer[4] or caller.state == CONNECTED:
        return None
    return caller


def live(st: EngineState, timer: Timer) -> bool:
    """Whether a popped timer still means something."""
    when, _, kind, ident, _ = timer
    if kind == "ring":
        offer = st.offers.get(ident)
        return offer is not None and offer.expires_at == when
    if kind == "wrapup":
        agent = st.agents.get(ident)
        return agent is not None and agent.wrapup_until == when
    caller = _caller_for(st, timer)
    if caller is None:
        return False
    if kind == "announce":
        return caller.next_announce == when
    if kind == "periodic":
        return caller.next_periodic == when
    return True  # "maxwait" re-checks the config when it fires; "wake" only triggers a dispatch


def schedule_caller_timers(st: EngineState, caller: CallerRec, now: float) -> None:
    """(Re)arm max-wait, penalty-widening, announcement and periodic timers from the queue config."""
    cfg = st.queues[caller.queue].config
    if cfg.max_wait > 0:
        st.add_timer(caller.joined_at + cfg.max_wait, "maxwait", caller.call_id, caller.uid)
    for rule in cfg.penalty_rules:
        at = caller.joined_at + rule.after_seconds
        if at > now:
            st.add_timer(at, "wake", caller.call_id, caller.uid)
    caller.next_announce = None
    if cfg.announce_frequency > 0:
        last = caller.last_announce if caller.last_announce is not None else now
        caller.last_announce = last
        step = min(cfg.announce_frequency, cfg.min_announce_frequency) or cfg.announce_frequency
        caller.next_announce = max(now, last + step)
        st.add_timer(caller.next_announce, "announce", caller.call_id, caller.uid)
    caller.next_periodic = None
    if cfg.periodic_announce and cfg.periodic_announce_frequency > 0:
        caller.next_periodic = now + cfg.periodic_announce_frequency
        st.add_timer(caller.next_periodic, "periodic", caller.call_id, caller.uid)


def run_due(st: EngineState, now: float, ewt: EwtFn, out: list[Decision]) -> None:
    """Fire every live timer due at or before `now`, in deadline order."""
    while st.timers and st.timers[0][0] <= now:
        timer = heapq.heappop(st.timers)
        if not live(st, timer):
            continue
        st.dispatch_dirty = True  # e.g. "wake": a retry pause ended or a penalty band widened
        kind, ident = timer[2], timer[3]
        if kind == "ring":
            offer = st.offers[ident]
            out.append(
                CancelOffer(
                    offer.offer_id,
                    offer.call_id,
                    offer.agent_id,
                    offer.agent_node,
                    offer.caller_node,
                    "timeout",
                )
            )
            fail_offer(st, offer, "timeout", now, out)
        elif kind == "wrapup":
            st.refresh_idle(ident, now)
        elif kind == "maxwait":
            caller = st.callers[ident]
            cfg = st.queues[caller.queue].config
            if cfg.max_wait > 0 and now >= caller.joined_at + cfg.max_wait:
                exit_caller(st, caller, CallerStatus.TIMEOUT, now, out)
        elif kind == "announce":
            _announce(st, st.callers[ident], now, ewt, out)
        elif kind == "periodic":
            _periodic(st, st.callers[ident], timer[0], now, out)


def _announce(st: EngineState, caller: CallerRec, now: float, ewt: EwtFn, out: list[Decision]) -> None:
    cfg = st.queues[caller.queue].config
    caller.next_announce = None
    if cfg.announce_frequency <= 0:
        return
    last = caller.last_announce if caller.last_announce is not None else caller.joined_at
    position = st.queues[caller.queue].line.position(caller.key)
    due = now - last >= cfg.announce_frequency
    moved = position != caller.last_pos_said and now - last >= cfg.min_announce_frequency
    if cfg.announce_position_only_up and caller.last_pos_said and position >= caller.last_pos_said:
        due = moved = False  # app_queue: only when the position improved (held until it does)
    # app_queue announces in wait_our_turn only: not to a caller whose agent is being rung (a prompt
    # would delay the connection; announce-to-first-user, off by default, is not offered).
    if (due or moved) and caller.state != RINGING:
        limit = cfg.announce_position_limit
        say_position = cfg.announce_position in ("yes", "more") or (
            cfg.announce_position == "limit" and position <= limit
        )
        more_than = limit if cfg.announce_position == "more" and position > limit else 0
        say_holdtime = cfg.announce_holdtime == "yes" or (cfg.announce_holdtime == "once" and not caller.holdtime_said)
        if say_position or say_holdtime:
            caller.holdtime_said = caller.holdtime_said or say_holdtime
            out.append(Announce(caller.call_id, caller.node_id, position, ewt(caller, now), say_position, say_holdtime,
                                more_than))
        caller.last_announce, caller.last_pos_said, last = now, position, now
    step = min(cfg.announce_frequency, cfg.min_announce_frequency) or cfg.announce_frequency
    caller.next_announce = min(now + step, last + cfg.announce_frequency)
    if caller.next_announce <= now:
        caller.next_announce = now + step
    if (due or moved) and caller.state == RINGING:
        # Held back while its agent rings: said as soon as it waits again (app_queue says it between
        # two attempts), not a whole period later, which a ring cycle could skip for ever.
        caller.next_announce = now + RINGING_RECHECK
    st.add_timer(caller.next_announce, "announce", caller.call_id, caller.uid)


def _periodic(st: EngineState, caller: CallerRec, when: float, now: float, out: list[Decision]) -> None:
    cfg = st.queues[caller.queue].config
    caller.next_periodic = None
    if not cfg.periodic_announce or cfg.periodic_announce_frequency <= 0:
        return
    if caller.state == RINGING:  # like position announcements: held back while its agent is rung
        caller.next_periodic = now + RINGING_RECHECK
        st.add_timer(caller.next_periodic, "periodic", caller.call_id, caller.uid)
        return
    prompt = cfg.periodic_announce[caller.periodic_index % len(cfg.periodic_announce)]
    caller.periodic_index += 1
    out.append(PeriodicAnnounce(caller.call_id, caller.node_id, prompt))
    nxt = when + cfg.periodic_announce_frequency
    caller.next_periodic = nxt if nxt > now else now + cfg.periodic_announce_frequency
    st.add_timer(caller.next_periodic, "periodic", caller.call_id, caller.uid)

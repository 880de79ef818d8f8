"""The matching loop: give free agents to waiting callers.

Rule (checked by the property tests): an agent is only ever offered ITS best eligible waiting caller,
ordered for that agent by (-(queue weight + membership weight), -priority, order, uid). Among the agents
whose best caller is the same caller X, the queue's strategy picks who rings (all of the lowest penalty
tier for ringall). Agents not picked move on to their next best caller. Callers only stop being
eligible during a pass (they start ringing), never start, so each agent's scan is one forward walk
over its queues' lines: O(agents x skipped callers); with no skills / penalty filtering the first
waiting caller is usually taken at once. A pass leaves no free agent with an eligible caller, so the
next one runs only after something that could pair one (`EngineState.dispatch_dirty`), and none at
all while no caller is in any line (`EngineState.lines`). Two cheaper shapes of the same pass: one
free agent (`_dispatch_one`), and every caller in one queue (`_dispatch_one_queue`, caller by caller:
all agents order one line alike), the usual cases under load and while agents wait for calls.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Iterator

from coordinator.queue.decisions import Decision, Offer
from coordinator.queue.model import Strategy
from coordinator.queue.ranking import RankKey
from coordinator.queue.state import RINGING, WAITING, AgentRec, CallerRec, EngineState, MemberRec, OfferRec, QueueRec
from coordinator.queue.strategies import Candidate, choose_agents

__all__ = ["dispatch", "eligible"]


def eligible(st: EngineState, agent: AgentRec, caller: CallerRec, now: float) -> bool:
    """Whether `agent` may be offered `caller` right now (agent freedom, skills, penalty band)."""
    q = st.queues.get(caller.queue)
    if q is None:
        return False
    member = q.members.get(agent.config.agent_id)
    if member is None or not st.can_take(agent, q.config, now):
        return False
    return _caller_fits(st, agent, member, caller, now)


def _caller_fits(st: EngineState, agent: AgentRec, member: MemberRec, caller: CallerRec, now: float) -> bool:
    """The per-caller part of `eligible`, for an agent that is a `member` of the caller's queue and
    can take it now."""
    return _caller_open(st, caller, now) and _agent_fits(agent, member, caller, st.band(caller, now))


def _caller_open(st: EngineState, caller: CallerRec, now: float) -> bool:
    """The caller may be offered to someone now: waiting, not pausing between rounds, node reachable."""
    if caller.state != WAITING or caller.retry_until > now:
        return False
    return not (st.detached_nodes and caller.node_id in st.detached_nodes)  # else its node could not receive it


def _agent_fits(agent: AgentRec, member: MemberRec, caller: CallerRec, band: tuple[int, int] | None) -> bool:
    """The agent's skills cover the caller's requirements and its penalty is in the caller's `band`."""
    if caller.requirements and not agent.config.has_skills(caller.requirements):
        return False
    return band is None or band[0] <= member.penalty <= band[1]


def _stream(keys: Iterator[RankKey], weight: int) -> Iterator[tuple[int, RankKey]]:
    for key in keys:
        yield (-weight, key)


def _best_callers(st: EngineState, agent: AgentRec, now: float) -> Iterator[CallerRec]:
    """The callers this agent may take, best first for this agent."""
    usable: list[tuple[QueueRec, int]] = []
    for m in agent.config.memberships:
        q = st.queues.get(m.queue)
        if q is None or not q.line or not st.can_take(agent, q.config, now):
            continue
        usable.append((q, q.config.weight + m.weight))
    if len(usable) == 1:
        # The common case: one queue, walked directly. Eligibility is still judged when a caller is
        # pulled (not ahead of time), so a caller another agent took meanwhile is skipped.
        yield from _line_callers(st, agent, usable[0][0], now)
        return
    streams = [_stream(iter(q.line), weight) for q, weight in usable]
    # Lines are not mutated during a pass (ringing callers stay queued), so iterating them is safe.
    for _, key in heapq.merge(*streams):
        caller = st.by_uid[key[2]]
        if eligible(st, agent, caller, now):
            yield caller


def _line_callers(st: EngineState, agent: AgentRec, q: QueueRec, now: float) -> Iterator[CallerRec]:
    """The callers of one queue this agent may take, in line order (no merge needed)."""
    by_uid = st.by_uid
    for key in q.line:
        caller = by_uid[key[2]]
        # Ringing callers (usually the head of the line) are skipped without a call; eligible()
        # repeats this test and does the rest.
        if caller.state != WAITING or caller.retry_until > now:
            continue
        if eligible(st, agent, caller, now):
            yield caller


def dispatch(st: EngineState, rng: random.Random, prefix: str, now: float, out: list[Decision]) -> None:
    """Offer every free agent its best eligible caller; append the Offer decisions to `out`."""
    if not st.idle or not st.dispatch_dirty:
        return
    if not st.lines.callers:
        # Nobody waits: nothing to offer. Without this, each of N agents logging in (a new leader
        # loads them all in one step) walked every idle agent: O(N^2), seconds for 2,000 agents.
        return
    st.dispatch_dirty = False
    if len(st.idle) == 1:
        _dispatch_one(st, rng, prefix, st.agents[next(iter(st.idle))], now, out)
        return
    if st.lines.lines == 1:
        _dispatch_one_queue(st, rng, prefix, now, out)
        return
    _dispatch_general(st, rng, prefix, now, out)


def _dispatch_general(st: EngineState, rng: random.Random, prefix: str, now: float, out: list[Decision]) -> None:
    """The pass for any shape: each free agent's cursor over its best callers, callers taken from a heap
    in (weight, rank) order, the strategy choosing among the agents whose best caller each is."""
    cursors: dict[str, Iterator[CallerRec]] = {}
    groups: dict[int, list[AgentRec]] = {}
    heap: list[tuple[int, RankKey]] = []

    def advance(agent: AgentRec) -> None:
        aid = agent.config.agent_id
        cursor = cursors.get(aid)
        if cursor is None:
            cursor = cursors[aid] = _best_callers(st, agent, now)
        caller = next(cursor, None)
        if caller is None:
            return
        group = groups.get(caller.uid)
        if group is None:
            groups[caller.uid] = group = []
            heapq.heappush(heap, (-st.queues[caller.queue].config.weight, caller.key))
        group.append(agent)

    for aid in list(st.idle):
        advance(st.agents[aid])
    while heap:
        _, key = heapq.heappop(heap)
        caller = st.by_uid[key[2]]
        agents = groups.pop(caller.uid)
        chosen = _choose(st, rng, caller, agents, now)
        chosen_ids = {a.config.agent_id for a in chosen}
        for agent in chosen:
            _offer(st, prefix, caller, agent, now, out)
        for agent in agents:
            if agent.config.agent_id not in chosen_ids:
                advance(agent)


def _dispatch_one(st: EngineState, rng: random.Random, prefix: str, agent: AgentRec, now: float,
                  out: list[Decision]) -> None:
    """One free agent (the usual case under load): its best caller, the strategy among one."""
    memberships = agent.config.memberships
    if len(memberships) != 1:
        _offer_best(st, rng, prefix, agent, now, out)
        return
    # One queue: what _best_callers + _choose do for it, without generators or candidate lists.
    q = st.queues.get(memberships[0].queue)
    if q is None or not q.line or not st.can_take(agent, q.config, now):
        return
    best = _first_eligible(st, agent, q, now)
    if best is None:
        return
    strategy = q.config.strategy
    aid = agent.config.agent_id
    if strategy in _RANDOMIZED or aid in best.tried:
        # The strategy draws from the rng, or the agent failed this caller this round: _choose
        # decides. When it picks nobody, `best` now waits for its retry and the next caller is tried.
        for picked in _choose(st, rng, best, [agent], now):
            _offer(st, prefix, best, picked, now, out)
            return
        _offer_best(st, rng, prefix, agent, now, out)
        return
    if strategy in _ROUND_ROBIN:
        q.rr_last = q.members[aid].order
    _offer(st, prefix, best, agent, now, out)


def _offer_best(st: EngineState, rng: random.Random, prefix: str, agent: AgentRec, now: float,
                out: list[Decision]) -> None:
    """The general pass for one free agent: its callers best first, until one's strategy picks it (a
    caller whose round is over waits for its retry and passes the agent on)."""
    for caller in _best_callers(st, agent, now):
        picked = _choose(st, rng, caller, [agent], now)
        if picked:
            _offer(st, prefix, caller, picked[0], now, out)
            return


def _dispatch_one_queue(st: EngineState, rng: random.Random, prefix: str, now: float, out: list[Decision]) -> None:
    """Several free agents, every caller in one queue's line (the usual case while agents wait for
    calls: one caller, or a few nobody free can take). Every agent orders that line alike (weights only
    rank queues against each other), so caller by caller in line order, the free agents eligible for
    a caller are those whose best remaining caller it is: the general pass's groups, found without a
    cursor and a heap entry per agent (that pass cost about 12 us per free agent for each caller
    joining: 24 ms with 2,000 free). The strategy sees the same agents (it orders them itself)."""
    q = next(q for q in st.queues.values() if q.line)
    members, cfg, agents, idle, by_uid = q.members, q.config, st.agents, st.idle, st.by_uid
    # The free members that can take this queue, found once (from the smaller side: another queue's
    # free agents are not looked at per caller): what `eligible` checks apart from the caller. Only
    # the agents offered a caller stop being free during the pass.
    pairs = ((aid, members.get(aid)) for aid in idle) if len(idle) <= len(members) else (
        (aid, m) for aid, m in members.items() if aid in idle)
    free = [(agent, m) for aid, m in pairs if m is not None and st.can_take(agent := agents[aid], cfg, now)]
    for key in q.line:  # offers do not change the line (ringing callers stay in it)
        if not free:
            return
        caller = by_uid[key[2]]
        if not _caller_open(st, caller, now):
            continue  # ringing already, pausing between rounds, or its node unreachable
        band = st.band(caller, now)
        group = [agent for agent, m in free if _agent_fits(agent, m, caller, band)]
        if group:
            for agent in _choose(st, rng, caller, group, now):
                _offer(st, prefix, caller, agent, now, out)
            free = [(agent, m) for agent, m in free if agent.offer_id is None]


def _first_eligible(st: EngineState, agent: AgentRec, q: QueueRec, now: float) -> CallerRec | None:
    """The first caller of `q`'s line that `eligible` accepts for `agent`, which can_take `q` now.

    The queue- and agent-level tests of `eligible` (the queue exists, membership, can_take) hold for the
    whole line, so only its per-caller part runs per caller.
    """
    member = q.members.get(agent.config.agent_id)
    if member is None:
        return None
    by_uid = st.by_uid
    for key in q.line:
        caller = by_uid[key[2]]
        # Ringing callers (usually the head of the line) are skipped without a call, as in _line_callers.
        if caller.state != WAITING or caller.retry_until > now:
            continue
        if _caller_fits(st, agent, member, caller, now):
            return caller
    return None


_RANDOMIZED = frozenset({Strategy.RANDOM, Strategy.WRANDOM})
_ROUND_ROBIN = frozenset({Strategy.RRMEMORY, Strategy.RRORDERED})


def _new_round(st: EngineState, caller: CallerRec, now: float) -> bool:
    """Every free candidate failed `caller` busy this round (app_queue's "tried" reset): a new round
    starts now (True), or, when the queue has a retry, after it (False)."""
    caller.tried.clear()
    caller.busy.clear()
    retry = st.queues[caller.queue].config.retry
    owed, caller.retry_owed = caller.retry_owed, False
    if not owed or retry <= 0:  # (the queue's retry may have been set to 0 since)
        return True
    caller.retry_until = now + retry
    st.add_timer(caller.retry_until, "wake", caller.call_id, caller.uid)
    return False


def _choose(st: EngineState, rng: random.Random, caller: CallerRec, agents: list[AgentRec],
            now: float) -> list[AgentRec]:
    """Apply the queue strategy to the agents whose best caller is `caller`."""
    original = agents
    q = st.queues[caller.queue]
    busy = caller.busy
    if busy:
        agents = [a for a in agents if a.config.agent_id not in busy]
        if not agents:  # everyone free failed busy: the round is over
            if not _new_round(st, caller, now):
                return []
            agents = original
    if len(agents) > 1 and q.config.strategy is not Strategy.WRANDOM:
        # The lowest penalty tier among the free agents still in the round, rung out or not:
        # app_queue's metric is penalty * 1,000,000 + the strategy's, so a member that let this
        # caller's offer ring out is rung again before any higher-penalty (overflow) member, which
        # rings when nobody of a lower penalty is free or all of them were busy. wrandom uses the
        # penalty as a weight instead (choose_agents).
        members = q.members
        tier = min(members[a.config.agent_id].penalty for a in agents)
        agents = [a for a in agents if members[a.config.agent_id].penalty == tier]
    tried = caller.tried
    fresh = [a for a in agents if a.config.agent_id not in tried]
    if not fresh:
        # Everyone of the tier rang out this round (each ring-out waited the retry): over again,
        # in the strategy's order (rrmemory moves on, linear starts from the first).
        tried.difference_update(a.config.agent_id for a in agents)
        fresh = agents
    if len(fresh) == 1 and q.config.strategy not in _RANDOMIZED:
        # One candidate: every deterministic strategy picks it (random ones still draw from the rng).
        if q.config.strategy in _ROUND_ROBIN:
            q.rr_last = q.members[fresh[0].config.agent_id].order
        return fresh
    by_id = {a.config.agent_id: a for a in fresh}
    members = q.members
    candidates = [
        Candidate(aid, m.penalty, m.order, a.last_call_end, a.available_since, m.calls_taken)
        for a in fresh
        for aid in (a.config.agent_id,)
        for m in (members[aid],)
    ]
    picked = choose_agents(q.config.strategy, candidates, rng, q.rr_last)
    if picked and q.config.strategy in ("rrmemory", "rrordered"):
        q.rr_last = picked[0].order
    return [by_id[c.agent_id] for c in picked]


def _offer(st: EngineState, prefix: str, caller: CallerRec, agent: AgentRec, now: float, out: list[Decision]) -> None:
    ring_timeout = st.queues[caller.queue].config.ring_timeout
    st.offer_counter = counter = st.offer_counter + 1
    offer_id = f"{prefix}{counter}"
    cfg = agent.config
    agent_id, call_id, queue, caller_node = cfg.agent_id, caller.call_id, caller.queue, caller.node_id
    expires_at = now + ring_timeout
    # Positional arguments (cheaper than keywords): the field order of OfferRec and of Offer.
    st.offers[offer_id] = OfferRec(offer_id, caller.uid, call_id, queue, agent_id, cfg.home_node, caller_node,
                                   expires_at)
    caller.offers[offer_id] = None
    caller.state = RINGING
    agent.offer_id = offer_id
    st.idle.pop(agent_id, None)  # what refresh_idle concludes for an agent with an offer
    st.add_timer(expires_at, "ring", offer_id)
    out.append(Offer(offer_id, call_id, queue, agent_id, cfg.endpoint, cfg.home_node, caller_node, ring_timeout,
                     caller.caller_number, caller.caller_name))

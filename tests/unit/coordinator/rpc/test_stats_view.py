"""AgentState as Stats and Agents answer it: memberships with penalty and weight, skills, idle time."""

from __future__ import annotations

from coordinator.queue import (
    AgentConfig,
    AgentLoggedIn,
    CallEnded,
    CallerJoined,
    Membership,
    Offer,
    OfferAnswered,
    QueueConfig,
    QueueDefined,
    QueueEngine,
)
from coordinator.rpc.stats_view import agent_state_pb
from coordinator.runtime import LeaderRuntime, SeqAllocator


async def _reserve(upto: int) -> None:
    return None


async def test_an_agent_state_carries_its_memberships_skills_and_idle_time() -> None:
    clock = [100.0]
    rt = LeaderRuntime(QueueEngine(), 3, lambda: clock[0], SeqAllocator(1, 10**6, 10**5, _reserve), node_ttl=6.0)
    rt.apply(QueueDefined(QueueConfig("support")))
    rt.apply(QueueDefined(QueueConfig("sales")))
    rt.attach("a", "ia")
    rt.apply(AgentLoggedIn(AgentConfig("alice", "PJSIP/alice", "a",
                                       (Membership("support", penalty=2, weight=3), Membership("sales")),
                                       skills=(("lang", "de"),))))
    [view] = rt.engine.agent_states()
    state = agent_state_pb(view, rt, "alice")
    assert [(m.queue, m.penalty, m.weight) for m in state.queues] == [("support", 2, 3), ("sales", 0, 0)]
    assert [(s.key, s.value) for s in state.skills] == [("lang", "de")]
    assert state.idle_for == 0.0, "no call yet: nothing to be idle since"

    [offer] = [d for d in rt.apply(CallerJoined("c1", "support", "a")) if isinstance(d, Offer)]
    rt.apply(OfferAnswered(offer.offer_id))
    clock[0] = 160.0
    rt.apply(CallEnded("c1", agent_hung_up=False))
    clock[0] = 205.5
    [view] = rt.engine.agent_states()
    state = agent_state_pb(view, rt, "alice")
    assert (state.calls_taken, state.idle_for) == (1, 45.5)

"""Callers are connected in the leader's offer order even when their agents' bridges race."""

from __future__ import annotations

import asyncio

from stasis_app.ari.fake import FakeAri
from stasis_app.call import records as r
from stasis_app.call.args import QueueArgs
from stasis_app.call.bridge_order import BridgeOrder
from tests.unit.stasis_app.harness import running


def _caller(call_id: str, queue: str = "support", state: str = r.RINGING) -> r.Caller:
    return r.Caller(call_id=call_id, args=QueueArgs(queue), caller_number="", caller_name="",
                    join_order=0, joined_wall=0.0, state=state)


async def test_a_caller_waits_only_for_earlier_offered_callers_of_its_queue_on_their_way() -> None:
    early, late, other, ringing = _caller("early"), _caller("late"), _caller("other", queue="sales"), _caller("ring")
    callers = {c.call_id: c for c in (early, late, other, ringing)}
    order = BridgeOrder(callers)
    for c in (early, other, ringing, late):  # offer order
        order.offered(c)
    order.on_the_way(late)
    order.on_the_way(other)
    order.on_the_way(early)
    # `ringing` was offered earlier but its agent has not answered: nobody waits for it.
    assert len(order.earlier(late)) == 1
    assert order.earlier(early) == [] and order.earlier(other) == []
    order.done(early)
    assert order.earlier(late) == []


async def test_callers_that_left_or_went_back_to_waiting_are_not_waited_for() -> None:
    early, late = _caller("early"), _caller("late")
    callers = {"early": early, "late": late}
    order = BridgeOrder(callers)
    order.offered(early)
    order.offered(late)
    order.on_the_way(early)
    early.state = r.WAITING  # its offer was cancelled without a done() (a path we did not foresee)
    assert order.earlier(late) == []
    early.state = r.RINGING
    order.on_the_way(early)
    del callers["early"]  # it hung up
    assert order.earlier(late) == []


async def test_the_wait_is_bounded() -> None:
    early, late = _caller("early"), _caller("late")
    order = BridgeOrder({"early": early, "late": late}, wait=0.05)
    order.offered(early)
    order.offered(late)
    order.on_the_way(early)
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    await order.wait_turn(late)
    assert 0.04 <= loop.time() - t0 < 1.0


async def test_a_later_callers_bridge_waits_for_an_earlier_caller_whose_agent_answered_first() -> None:
    # Both agents answered within milliseconds; the leader's Connect for the later caller came
    # first. The earlier caller is connected first all the same.
    ari = FakeAri("a")
    async with running(ari) as n:
        first = await n.queued_caller(position=1)
        second = await n.queued_caller(position=2)
        n.offer("o1", first, agent="alice")
        n.offer("o2", second, agent="bob")
        await n.settle()
        ari.answer_leg("a-ag-o1_")
        ari.answer_leg("a-ag-o2_")
        await n.settle()
        assert [a.offer_id for a in n.coord.of("agent_leg_answered")] == ["o1", "o2"]
        n.connect("o2", second, agent="bob")
        await n.settle()
        assert ari.channels[second].bridge_id is None, "the later caller waits for the earlier one"
        n.connect("o1", first, agent="alice")
        await n.settle()
        assert ari.bridges["a-br-o1_"].channels == [first, "a-ag-o1_"]
        assert ari.bridges["a-br-o2_"].channels == [second, "a-ag-o2_"]
        assert n.app.callers[first].state == n.app.callers[second].state == r.CONNECTED


async def test_a_later_caller_is_bridged_at_once_when_the_earlier_agent_still_rings() -> None:
    ari = FakeAri("a")
    async with running(ari) as n:
        first = await n.queued_caller(position=1)
        second = await n.queued_caller(position=2)
        n.offer("o1", first, agent="alice")
        n.offer("o2", second, agent="bob")
        await n.settle()
        ari.answer_leg("a-ag-o2_")
        await n.settle()
        n.connect("o2", second, agent="bob")
        await n.settle()
        assert ari.bridges["a-br-o2_"].channels == [second, "a-ag-o2_"]
        assert n.app.callers[first].state == r.RINGING

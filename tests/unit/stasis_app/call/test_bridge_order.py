"""Callers are connected in the leader's offer order even when their agents' bridges race."""

from __future__ import annotations

import asyncio

from clusterq_proto.v1 import node_pb2
from stasis_app.ari.fake import FakeAri
from stasis_app.call import records as r
from stasis_app.call.args import QueueArgs
from stasis_app.call.bridge_order import BridgeOrder
from tests.unit.stasis_app.harness import Node, running


def _caller(call_id: str, queue: str = "support", state: str = r.RINGING) -> r.Caller:
    return r.Caller(call_id=call_id, args=QueueArgs(queue), caller_number="", caller_name="",
                    join_order=0, joined_wall=0.0, state=state)


async def test_a_caller_waits_only_for_earlier_offered_callers_of_its_queue_about_to_be_bridged() -> None:
    early, late, other, ringing = _caller("early"), _caller("late"), _caller("other", queue="sales"), _caller("ring")
    callers = {c.call_id: c for c in (early, late, other, ringing)}
    order = BridgeOrder(callers)
    for c in (early, other, ringing, late):  # offer order
        order.offered(c)
    order.on_the_way(late)
    order.on_the_way(other)
    order.on_the_way(early)
    now = asyncio.get_running_loop().time()
    on_the_way, rings = order.earlier(late, now)
    assert (len(on_the_way), len(rings)) == (1, 1)  # `early` answered; `ring` was offered just now
    assert order.earlier(early, now) == ([], []) and order.earlier(other, now) == ([], [])
    # An earlier offer ringing for longer than a burst is not waited for.
    assert order.earlier(late, now + order.burst + 0.1) == (on_the_way, [])
    order.done(early)
    assert order.earlier(late, now)[0] == []


async def test_callers_that_left_or_went_back_to_waiting_are_not_waited_for() -> None:
    early, late = _caller("early"), _caller("late")
    callers = {"early": early, "late": late}
    order = BridgeOrder(callers)
    order.offered(early)
    order.offered(late)
    order.on_the_way(early)
    now = asyncio.get_running_loop().time()
    early.state = r.WAITING  # its offer was cancelled without a done() (a path we did not foresee)
    assert order.earlier(late, now) == ([], [])
    early.state = r.RINGING
    order.offered(early)
    order.offered(late)
    del callers["early"]  # it hung up
    assert order.earlier(late, now) == ([], [])


async def test_the_waits_are_bounded() -> None:
    early, late = _caller("early"), _caller("late")
    order = BridgeOrder({"early": early, "late": late}, wait=0.2, ring_wait=0.05)
    order.offered(early)
    order.offered(late)
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    await order.wait_turn(late)  # `early` rings: the short wait
    assert 0.04 <= loop.time() - t0 < 0.15
    order.on_the_way(early)
    t0 = loop.time()
    await order.wait_turn(late)  # `early` answered: the long wait
    assert 0.19 <= loop.time() - t0 < 1.0


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


async def test_a_later_caller_is_bridged_at_once_when_the_earlier_agent_rings_since_long() -> None:
    ari = FakeAri("a")
    async with running(ari) as n:
        n.app.connections.order.burst = 0.0  # every ringing offer is "old"
        first, second = await _later_answered_first(n, ari)
        assert ari.bridges["a-br-o2_"].channels == [second, "a-ag-o2_"]
        assert n.app.callers[first].state == r.RINGING


async def test_an_earlier_agent_answering_a_moment_later_is_still_connected_first() -> None:
    ari = FakeAri("a")
    async with running(ari) as n:
        n.app.connections.order.ring_wait = 5.0  # the test decides when the earlier agent answers
        first, second = await _later_answered_first(n, ari)
        assert ari.channels[second].bridge_id is None, "the earlier offer of the same burst still rings"
        ari.answer_leg("a-ag-o1_")
        await n.settle()
        n.connect("o1", first, agent="alice")
        await n.settle()
        assert ari.bridges["a-br-o1_"].channels == [first, "a-ag-o1_"]
        assert ari.bridges["a-br-o2_"].channels == [second, "a-ag-o2_"]


async def _later_answered_first(n: Node, ari: FakeAri) -> tuple[str, str]:
    """Two callers offered alice (o1) then bob (o2); only bob answers, and his Connect comes."""
    first = await n.queued_caller(position=1)
    second = await n.queued_caller(position=2)
    n.offer("o1", first, agent="alice")
    n.offer("o2", second, agent="bob")
    await n.settle()
    ari.answer_leg("a-ag-o2_")
    await n.settle()
    n.connect("o2", second, agent="bob")
    await n.settle()
    return first, second


async def test_a_prompt_is_cut_when_the_agent_answers_and_music_comes_back_if_no_connect_follows() -> None:
    ari = FakeAri("a")
    async with running(ari) as n:
        cid = await n.queued_caller()
        await n.settle()
        n.coord.decide(periodic_announce=node_pb2.PeriodicAnnounce(call_id=cid, prompt="sound:beep"))
        n.offer("o1", cid, agent="alice")
        await n.settle()
        assert len(ari.playbacks) == 1 and ari.channels[cid].moh_class is None
        ari.answer_leg("a-ag-o1_")
        await n.settle()
        assert not ari.playbacks, "the prompt is cut while the leader's Connect is on its way"
        n.coord.decide(cancel_offer=node_pb2.CancelOffer(offer_id="o1", call_id=cid, reason="caller_left"))
        await n.settle()
        assert ari.channels[cid].moh_class == "default" and n.app.callers[cid].state == r.WAITING

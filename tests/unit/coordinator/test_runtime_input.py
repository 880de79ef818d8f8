"""LeaderRuntime against what a node may send wrong: arrival sequences no leader handed out,
impossible waits, unusable snapshot entries; and SeqAllocator never going past its reservation."""

from __future__ import annotations

import asyncio
import logging
import math
import time

import pytest

from clusterq_proto.v1 import common_pb2, node_pb2
from coordinator import re_report
from coordinator.node_link import NodeLink
from coordinator.queue import (
    AgentConfig,
    AgentLoggedIn,
    AgentLoggedOut,
    Membership,
    QueueConfig,
    QueueDefined,
    QueueEngine,
)
from coordinator.queue_log import QueueLogBook
from coordinator.runtime import LeaderRuntime, SeqAllocator

UNAVAILABLE = common_pb2.CallerStatus.Value("CALLER_STATUS_UNAVAILABLE")


class Reservations:
    """The etcd side of a SeqAllocator: records marks, fails while `failing`."""

    def __init__(self) -> None:
        self.marks: list[int] = []
        self.failing = False

    async def __call__(self, upto: int) -> None:
        if self.failing:
            raise ConnectionError("etcd unreachable")
        self.marks.append(upto)


def _runtime(seqs: SeqAllocator | None = None) -> LeaderRuntime:
    rt = LeaderRuntime(QueueEngine(), 7, time.monotonic, seqs or SeqAllocator(1, 1000, 1000, Reservations()), 6.0)
    rt.apply(QueueDefined(QueueConfig("q")))
    return rt


def _decisions(link: NodeLink) -> list[node_pb2.Decision]:
    return [d for msg in link.take_ready() for d in msg.decisions.decisions]


def _attach(rt: LeaderRuntime, node_id: str, instance_id: str) -> NodeLink:
    """Attach a node and take what it is sent first: the whole list of devices to watch."""
    link = rt.attach(node_id, instance_id)
    [watch] = [d for msg in link.take_ready() for d in msg.decisions.decisions]
    assert watch.WhichOneof("decision") == "watch_devices" and watch.watch_devices.replace
    return link


def _join(call_id: str, waited: float = 0.0) -> node_pb2.EventBatch:
    return node_pb2.EventBatch(events=[node_pb2.NodeEvent(call_joined=node_pb2.CallJoined(
        call_id=call_id, queue="q", waited=waited))])


async def test_a_re_reported_sequence_no_leader_handed_out_is_ignored() -> None:
    rt = _runtime()
    link = rt.attach("n1", "i1", node_pb2.Register(node_id="n1", instance_id="i1", calls=[node_pb2.CallSnapshot(
        joined=node_pb2.CallJoined(call_id="c1", queue="q"), arrival_seq=2**64 - 1, state="waiting")]))
    assert rt.handle_batch(link, _join("c2")) == []  # used to fail encoding a sequence of 2**64
    acks = {d.join_ack.call_id: d.join_ack.arrival_seq for d in _decisions(link) if d.HasField("join_ack")}
    assert acks == {"c1": 1, "c2": 2}  # c1 took a fresh sequence
    assert rt.seqs.next == 3


async def test_take_never_goes_past_the_reservation_and_a_failed_refill_is_retried(
        caplog: pytest.LogCaptureFixture) -> None:
    res = Reservations()
    res.failing = True
    seqs = SeqAllocator(1, 5, 4, res)
    with caplog.at_level(logging.ERROR, "coordinator.runtime"):
        taken = [seqs.take() for _ in range(6)]
        await asyncio.sleep(0)  # the refill runs and fails
    assert taken == [1, 2, 3, 4, None, None]
    assert "reserving arrival sequences up to 9 failed" in caplog.text
    res.failing = False
    assert seqs.take() is None  # starts the retry
    await asyncio.sleep(0)
    assert res.marks == [9] and seqs.take() == 5


async def test_a_join_without_a_reserved_sequence_is_refused_unavailable() -> None:
    res = Reservations()
    res.failing = True
    rt = _runtime(SeqAllocator(1, 2, 2, res))
    link = _attach(rt, "n1", "i1")
    rt.handle_batch(link, _join("c1"))
    assert rt.handle_batch(link, _join("c2")) == ["no arrival sequence reserved (etcd writes failing?)"]
    decs = _decisions(link)
    assert [d.WhichOneof("decision") for d in decs] == ["join_ack", "join_reject"]
    assert decs[1].join_reject.call_id == "c2" and decs[1].join_reject.status == UNAVAILABLE
    assert not rt.engine.holds("c2")


@pytest.mark.parametrize("waited", [math.inf, math.nan, 1e9])
async def test_an_impossible_wait_rejects_the_caller_before_the_engine_or_queue_log(waited: float) -> None:
    rt = _runtime()
    lines: list[str] = []
    rt.queue_log = QueueLogBook(lines.append)
    link = _attach(rt, "n1", "i1")
    [err] = rt.handle_batch(link, _join("c1", waited))
    assert "waited" in err and not rt.engine.holds("c1") and lines == []
    [dec] = _decisions(link)
    assert dec.join_reject.call_id == "c1"


async def test_unusable_snapshot_entries_are_skipped_and_legs_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(re_report, "MAX_RESYNC_LEGS", 2)
    rt = _runtime()
    for a in ("a1", "a2", "a3", "a4"):
        rt.apply(AgentLoggedIn(AgentConfig(a, f"PJSIP/{a}", "n1", (Membership("q"),))))
    calls = [node_pb2.CallSnapshot(joined=node_pb2.CallJoined(call_id="", queue="q"), state="connected",
                                   agent_id="a1", offer_id="o1"),
             node_pb2.CallSnapshot(joined=node_pb2.CallJoined(call_id="c2", queue="q"), state="connected",
                                   agent_id="a1" * 40, offer_id="o2")]
    legs = [node_pb2.AgentLegSnapshot(offer_id=f"o{i}", agent_id=a, call_id=f"x{i}", state="connected",
                                      caller_node="n2") for i, a in enumerate(("a2", "a3", "a4"))]
    legs.insert(0, node_pb2.AgentLegSnapshot(offer_id="o9", agent_id="a1", call_id="x" * 200, state="connected"))
    rt.attach("n1", "i1", node_pb2.Register(node_id="n1", instance_id="i1", calls=calls, agent_legs=legs))
    busy = sorted(v.agent_id for v in rt.engine.agent_states() if v.state == "busy")
    assert busy == ["a2"]  # a1's entries are invalid; only the first 2 legs (one invalid) are looked at


def _event(**kw: object) -> node_pb2.EventBatch:
    return node_pb2.EventBatch(events=[node_pb2.NodeEvent(**kw)])  # type: ignore[arg-type]


def _kinds(link: NodeLink) -> list[str]:
    return [str(d.WhichOneof("decision")) for d in _decisions(link)]


async def test_a_node_cannot_end_or_answer_what_belongs_to_other_nodes() -> None:
    rt = _runtime()
    a, b, c = (_attach(rt, n, f"i{n}") for n in ("a", "b", "c"))
    rt.apply(AgentLoggedIn(AgentConfig("x", "PJSIP/x", "b", (Membership("q"),))))
    assert rt.handle_batch(a, _event(call_joined=node_pb2.CallJoined(call_id="a-1", queue="q"))) == []
    [offer] = [d.offer for d in _decisions(b) if d.WhichOneof("decision") == "offer"]
    # Node c has neither the caller nor the agent: its reports about them are refused, nothing changes.
    errors = rt.handle_batch(c, node_pb2.EventBatch(events=[
        node_pb2.NodeEvent(call_left=node_pb2.CallLeft(call_id="a-1", reason="hangup")),
        node_pb2.NodeEvent(agent_leg_answered=node_pb2.AgentLegAnswered(offer_id=offer.offer_id)),
        node_pb2.NodeEvent(agent_leg_failed=node_pb2.AgentLegFailed(offer_id=offer.offer_id, reason="busy"))]))
    assert len(errors) == 3 and all("ignored" in e for e in errors), errors
    assert rt.engine.offer_status(offer.offer_id, "a-1") == "ringing"
    # Nor may the agent's node say the caller left; it may answer and end the call.
    assert rt.handle_batch(b, _event(call_left=node_pb2.CallLeft(call_id="a-1", reason="hangup")))
    assert rt.handle_batch(b, _event(agent_leg_answered=node_pb2.AgentLegAnswered(offer_id=offer.offer_id))) == []
    assert rt.engine.offer_status(offer.offer_id, "a-1") == "connected"
    assert rt.handle_batch(c, _event(call_ended=node_pb2.CallEnded(call_id="a-1", offer_id=offer.offer_id)))
    assert rt.handle_batch(b, _event(call_ended=node_pb2.CallEnded(call_id="a-1", offer_id=offer.offer_id,
                                                                   agent_hung_up=True))) == []
    assert not rt.engine.holds("a-1")


async def test_a_call_id_already_held_for_another_node_is_refused_to_the_second_one() -> None:
    rt = _runtime()
    a, b = _attach(rt, "a", "ia"), _attach(rt, "b", "ib")
    rt.handle_batch(a, _event(call_joined=node_pb2.CallJoined(call_id="pbx-1", queue="q")))
    assert _kinds(a) == ["join_ack"]
    [error] = rt.handle_batch(b, _event(call_joined=node_pb2.CallJoined(call_id="pbx-1", queue="q")))
    assert "already held by node 'a'" in error
    [refused] = _decisions(b)
    assert refused.WhichOneof("decision") == "join_reject" and "same systemname" in refused.join_reject.message
    assert _decisions(a) == [] and rt.engine.holds("pbx-1")
    rt.handle_batch(a, _event(call_joined=node_pb2.CallJoined(call_id="pbx-1", queue="q")))  # a's own repeat
    assert _decisions(a) == []


async def test_an_agent_of_a_node_never_attached_is_not_offered_and_its_node_is_lost_after_the_ttl() -> None:
    clock = [0.0]
    rt = LeaderRuntime(QueueEngine(), 7, lambda: clock[0], SeqAllocator(1, 1000, 1000, Reservations()), 6.0)
    rt.apply(QueueDefined(QueueConfig("q")))
    a = _attach(rt, "a", "ia")
    rt.apply(AgentLoggedIn(AgentConfig("ghost", "PJSIP/ghost", "typo", (Membership("q"),))))
    rt.handle_batch(a, _event(call_joined=node_pb2.CallJoined(call_id="a-1", queue="q")))
    assert _kinds(a) == ["join_ack"]  # no offer: node "typo" never attached
    assert [v.state for v in rt.engine.agent_states()] == ["unavailable"]
    timers = asyncio.ensure_future(rt.run_timers())
    clock[0] = 7.0
    rt._wake.set()
    for _ in range(20):
        await asyncio.sleep(0)
    timers.cancel()
    assert rt.engine.node_lost("typo")
    rt.apply(AgentLoggedIn(AgentConfig("ghost", "PJSIP/ghost", "typo", (Membership("q"),))))  # again: stays lost
    assert "typo" not in rt._node_lost_at
    rt.attach("typo", "it")  # the node exists after all: its agent is offered the waiting caller
    assert [d.offer.agent_id for d in _decisions(a) if d.WhichOneof("decision") == "offer"] == ["ghost"]


async def test_the_timer_task_yields_between_ticks_that_are_due_at_once() -> None:
    class AlwaysDue(QueueEngine):
        ticks = 0

        def next_deadline(self) -> float | None:
            return 0.0  # always due: a burst of timers that never ends

        def apply(self, event: object, now: float) -> list:  # type: ignore[override, type-arg]
            AlwaysDue.ticks += 1
            if AlwaysDue.ticks > 10_000:
                raise RuntimeError("the timer task never let anything else run")
            return []

    rt = LeaderRuntime(AlwaysDue(), 7, lambda: 1.0, SeqAllocator(1, 1000, 1000, Reservations()), 6.0)
    timers = asyncio.ensure_future(rt.run_timers())
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert not timers.done(), timers
    timers.cancel()
    await asyncio.gather(timers, return_exceptions=True)
    assert AlwaysDue.ticks < 10_000


@pytest.mark.parametrize("after", ["logout", "moved"])
async def test_the_agent_node_may_end_a_call_after_its_agent_logged_out_or_moved(after: str) -> None:
    rt = _runtime()
    a, b = _attach(rt, "a", "ia"), _attach(rt, "b", "ib")
    rt.apply(AgentLoggedIn(AgentConfig("ag", "PJSIP/ag", "b", (Membership("q"),))))
    rt.handle_batch(a, _event(call_joined=node_pb2.CallJoined(call_id="a-1", queue="q")))
    [offer] = [d.offer for d in _decisions(b) if d.WhichOneof("decision") == "offer"]
    assert rt.handle_batch(b, _event(agent_leg_answered=node_pb2.AgentLegAnswered(offer_id=offer.offer_id))) == []
    if after == "logout":
        rt.apply(AgentLoggedOut("ag"))  # a call in progress continues
    else:
        rt.apply(AgentLoggedIn(AgentConfig("ag", "PJSIP/ag", "c", (Membership("q"),))))
    # Its leg (on node b) ends: node b says so, and is heard.
    assert rt.handle_batch(b, _event(call_ended=node_pb2.CallEnded(call_id="a-1", offer_id=offer.offer_id,
                                                                   agent_hung_up=True))) == []
    assert not rt.engine.holds("a-1")


async def test_a_priority_change_the_node_missed_is_sent_again_when_it_re_registers() -> None:
    from coordinator.queue import CallerPriorityChanged

    rt = _runtime()
    a = _attach(rt, "a", "ia")
    joined = node_pb2.CallJoined(call_id="a-1", queue="q")
    rt.handle_batch(a, _event(call_joined=joined))
    [ack] = [d.join_ack for d in _decisions(a) if d.WhichOneof("decision") == "join_ack"]
    rt.detach(a)  # its stream is down: the operator's change cannot reach it
    rt.apply(CallerPriorityChanged("a-1", 5))
    again = rt.attach("a", "ia", node_pb2.Register(node_id="a", instance_id="ia", calls=[node_pb2.CallSnapshot(
        joined=joined, arrival_seq=ack.arrival_seq, state="waiting")]))  # the node still says priority 0
    told = [d.caller_priority for d in _decisions(again) if d.WhichOneof("decision") == "caller_priority"]
    assert [(t.call_id, t.priority) for t in told] == [("a-1", 5)]

"""LeaderRuntime and NodeLink without gRPC: batching of decisions into stream messages, stamps,
closing, and the timer task being woken for deadlines that node streams create."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from clusterq_proto.v1 import node_pb2
from coordinator.node_link import MAX_BATCH, NodeLink
from coordinator.queue import (
    AgentConfig,
    AgentLoggedIn,
    AgentStateChanged,
    Membership,
    NodeLost,
    QueueConfig,
    QueueDefined,
    QueueEngine,
)
from coordinator.runtime import LeaderRuntime, SeqAllocator
from stasis_app.coordinator_client import stamped


async def _reserve(upto: int) -> None:
    return None


def _runtime(*queues: QueueConfig) -> LeaderRuntime:
    rt = LeaderRuntime(QueueEngine(), 7, time.monotonic, SeqAllocator(1, 10**6, 10**5, _reserve), node_ttl=6.0)
    for cfg in queues or (QueueConfig("q", music_class="jazz"),):
        rt.apply(QueueDefined(cfg))
    return rt


def _joins(*call_ids: str, queue: str = "q") -> node_pb2.EventBatch:
    return node_pb2.EventBatch(events=[
        node_pb2.NodeEvent(call_joined=node_pb2.CallJoined(call_id=c, queue=queue)) for c in call_ids])


def _decisions(link: NodeLink) -> list[node_pb2.Decision]:
    return [d for msg in link.take_ready() for d in msg.decisions.decisions]


def _attach(rt: LeaderRuntime, node_id: str, instance_id: str) -> NodeLink:
    """Attach a node and take what it is sent first: the whole list of devices to watch."""
    link = rt.attach(node_id, instance_id)
    [watch] = [d for msg in link.take_ready() for d in msg.decisions.decisions]
    assert watch.WhichOneof("decision") == "watch_devices" and watch.watch_devices.replace
    return link


async def test_a_node_batch_leaves_in_one_message_with_consecutive_stamps() -> None:
    rt = _runtime()
    link = _attach(rt, "n1", "i1")
    assert rt.handle_batch(link, _joins("c1", "c2", "c3")) == []
    msgs = link.take_ready()
    assert len(msgs) == 1
    decs = list(msgs[0].decisions.decisions)
    assert [d.WhichOneof("decision") for d in decs] == ["join_ack"] * 3  # the queue's media ride inside
    # One stamp per message: the leader's epoch and the seq of its first decision (1 was the watch list).
    assert (msgs[0].decisions.stamp.epoch, msgs[0].decisions.stamp.seq) == (7, 2)
    assert not any(d.HasField("stamp") for d in decs)
    assert [d.join_ack.position for d in decs] == [1, 2, 3]
    assert decs[0].join_ack.call_id == "c1" and decs[0].join_ack.media.music_class == "jazz"
    rt.handle_batch(link, _joins("c4", "c5"))
    assert [d.stamp.seq for m in link.take_ready() for d in stamped(m.decisions)] == [5, 6]  # the sequence goes on


async def test_a_full_message_is_split_and_each_part_stamps_its_first_decision() -> None:
    rt = _runtime()
    link = _attach(rt, "n1", "i1")
    rt.handle_batch(link, _joins(*(f"c{i}" for i in range(MAX_BATCH))))
    rt.handle_batch(link, _joins("x1", "x2"))  # nothing written in between: they overflow the message
    msgs = link.take_ready()
    assert [len(m.decisions.decisions) for m in msgs] == [MAX_BATCH, 2]
    assert [m.decisions.stamp.seq for m in msgs] == [2, MAX_BATCH + 2]
    seqs = [d.stamp.seq for m in msgs for d in stamped(m.decisions)]
    assert seqs == list(range(2, MAX_BATCH + 4))


async def test_the_writer_gets_what_was_decided_then_the_end_of_the_stream() -> None:
    rt = _runtime()
    link = _attach(rt, "n1", "i1")
    rt.handle_batch(link, _joins("c1"))
    first = await asyncio.wait_for(link.next_message(), 1)
    assert first is not None and len(first.decisions.decisions) == 1
    waiting = asyncio.ensure_future(link.next_message())
    await asyncio.sleep(0)
    assert not waiting.done()  # nothing decided: the writer sleeps
    rt.handle_batch(link, _joins("c2"))
    second = await asyncio.wait_for(waiting, 1)
    assert second is not None and second.decisions.decisions[0].join_ack.call_id == "c2"
    rt.handle_batch(link, _joins("c3"))
    link.close()
    rt.handle_batch(link, _joins("c4"))  # after the close: never sent
    last = await asyncio.wait_for(link.next_message(), 1)
    assert last is not None and [d.join_ack.call_id for d in last.decisions.decisions] == ["c3"]
    assert await asyncio.wait_for(link.next_message(), 1) is None


async def test_invalid_and_duplicate_joins() -> None:
    rt = _runtime()
    link = _attach(rt, "n1", "i1")
    errors = rt.handle_batch(link, _joins("c1", "c1"))
    assert errors == []
    assert [d.WhichOneof("decision") for d in _decisions(link)] == ["join_ack"]  # duplicate ignored
    errors = rt.handle_batch(link, _joins("c2", queue="bad name"))
    assert len(errors) == 1 and "invalid queue name" in errors[0]
    rejected = _decisions(link)
    assert [d.WhichOneof("decision") for d in rejected] == ["join_reject"]
    assert rejected[0].join_reject.call_id == "c2"


async def test_re_reported_callers_wake_the_timer_task_for_their_deadlines() -> None:
    rt = _runtime(QueueConfig("q", max_wait=0.2))
    timers = asyncio.ensure_future(rt.run_timers())
    try:
        await asyncio.sleep(0.05)  # the timer task now sleeps with no deadline at all
        link = rt.attach("n1", "i1", node_pb2.Register(node_id="n1", instance_id="i1", calls=[
            node_pb2.CallSnapshot(joined=node_pb2.CallJoined(call_id="c1", queue="q"), arrival_seq=5,
                                  state="waiting")]))
        assert [d.WhichOneof("decision") for d in _decisions(link)] == ["join_ack", "watch_devices"]
        deadline = time.monotonic() + 2
        exits: list[node_pb2.Decision] = []
        while not exits and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
            exits = [d for d in _decisions(link) if d.WhichOneof("decision") == "continue_in_dialplan"]
        assert exits and exits[0].continue_in_dialplan.call_id == "c1"
    finally:
        timers.cancel()


async def test_decisions_not_meant_for_nodes_are_not_sent() -> None:
    link = NodeLink("n1", "i1", 7)
    link.push(AgentStateChanged("a1", "paused", "bench"))
    assert link.take_ready() == [] and link.pending == 0


async def test_a_call_only_the_agents_node_re_reports_ends_when_the_callers_node_is_lost() -> None:
    # After a leader change the agent's node b re-reports its agent talking with a caller on node a,
    # and node a never comes back: once a is lost, the agent is free again (not busy forever).
    rt = _runtime()
    rt.apply(AgentLoggedIn(AgentConfig("ag", "PJSIP/ag", "b", (Membership("q", 0, 0),))))
    rt.attach("b", "i1", node_pb2.Register(node_id="b", instance_id="i1", agent_legs=[node_pb2.AgentLegSnapshot(
        offer_id="e1-5", agent_id="ag", call_id="a-q-1", state="connected", caller_node="a")]))
    assert {v.agent_id: v.state for v in rt.engine.agent_states()} == {"ag": "busy"}
    rt.apply(NodeLost("a"))
    assert {v.agent_id: v.state for v in rt.engine.agent_states()} == {"ag": "available"}


async def test_a_re_registering_node_drops_the_calls_its_snapshot_no_longer_has() -> None:
    # Callers that hung up while the node's stream was down: their CallLeft went with the old stream.
    rt = _runtime()
    link = rt.attach("n1", "i1")
    rt.handle_batch(link, _joins("gone", "stays", "also-gone"))
    rt.detach(link)
    stays = node_pb2.CallSnapshot(joined=node_pb2.CallJoined(call_id="stays", queue="q"), arrival_seq=2,
                                  state="waiting")
    rt.attach("n1", "i2", node_pb2.Register(node_id="n1", instance_id="i2", calls=[stays]))
    assert [c.call_id for c in rt.engine.waiting_callers("q")] == ["stays"]
    assert rt.engine.position("stays") == 1


def _agent(agent_id: str, node: str) -> AgentLoggedIn:
    return AgentLoggedIn(AgentConfig(agent_id, f"PJSIP/{agent_id}", node, (Membership("q", 0, 0),)))


def _kinds(link: NodeLink) -> list[tuple[str, str]]:
    out = []
    for dec in _decisions(link):
        kind = str(dec.WhichOneof("decision"))
        out.append((kind, getattr(dec, kind).offer_id if kind in ("offer", "connect", "cancel_offer") else ""))
    return out


def _answer(rt: LeaderRuntime, link: NodeLink, offer_id: str) -> None:
    """The node of `link` reports the agent leg of `offer_id` answered."""
    rt.handle_batch(link, node_pb2.EventBatch(events=[node_pb2.NodeEvent(
        agent_leg_answered=node_pb2.AgentLegAnswered(offer_id=offer_id))]))


def _answered_across_nodes(rt: LeaderRuntime, call_id: str) -> tuple[NodeLink, NodeLink, str]:
    """Nodes a and b attached, agent x homed on b answering caller `call_id` on a: (a, b, offer id)."""
    b = _attach(rt, "b", "ib")
    rt.apply(_agent("x", "b"))
    a = _attach(rt, "a", "ia")
    rt.handle_batch(a, _joins(call_id))
    [offer_id] = [dec.offer.offer_id for dec in _decisions(b) if dec.HasField("offer")]
    _answer(rt, b, offer_id)
    return a, b, offer_id


async def test_nothing_is_offered_to_a_detached_node_until_it_is_back() -> None:
    rt = _runtime()
    a, b = _attach(rt, "a", "ia"), rt.attach("b", "ib")
    rt.apply(_agent("far", "b"))
    rt.detach(b)
    rt.handle_batch(a, _joins("c1"))
    assert [k for k, _ in _kinds(a)] == ["join_ack"], "no offer the agent's node cannot get"
    b = rt.attach("b", "ib2")
    # The node is told what to watch before anything else.
    assert [k for k, _ in _kinds(a)] == ["offer"] and [k for k, _ in _kinds(b)] == ["watch_devices", "offer"]


async def test_an_answer_lost_with_the_old_stream_is_applied_from_the_snapshot() -> None:
    rt = _runtime()
    n1 = rt.attach("n1", "i1")
    rt.apply(_agent("ag", "n1"))
    rt.handle_batch(n1, _joins("c1"))
    [(_, offer_id)] = [k for k in _kinds(n1) if k[0] == "offer"]
    rt.detach(n1)  # the AgentLegAnswered went with this stream
    caller = node_pb2.CallSnapshot(joined=node_pb2.CallJoined(call_id="c1", queue="q"), arrival_seq=1,
                                   state="waiting", offer_id=offer_id, agent_id="ag")
    leg = node_pb2.AgentLegSnapshot(offer_id=offer_id, agent_id="ag", call_id="c1", state="answered",
                                    caller_node="n1")
    n1 = rt.attach("n1", "i2", node_pb2.Register(node_id="n1", instance_id="i2", calls=[caller], agent_legs=[leg]))
    # Once: a second Connect for the same leg made the node hang up the agent of the live call.
    assert [k for k in _kinds(n1) if k[0] == "connect"] == [("connect", offer_id)]
    assert rt.engine.offer_status(offer_id, "c1") == "connected"


async def test_a_connect_and_a_cancel_lost_with_the_old_stream_are_sent_again() -> None:
    rt = _runtime()
    a, b = _attach(rt, "a", "ia"), rt.attach("b", "ib")
    rt.apply(_agent("far", "b"))
    rt.handle_batch(a, _joins("c1"))
    [(_, offer_id)] = [k for k in _kinds(a) if k[0] == "offer"]
    _kinds(b)
    rt.detach(a)
    _answer(rt, b, offer_id)
    assert ("connect", offer_id) in _kinds(b)  # node a, detached, missed its copy
    caller = node_pb2.CallSnapshot(joined=node_pb2.CallJoined(call_id="c1", queue="q"), arrival_seq=1,
                                   state="waiting", offer_id=offer_id, agent_id="far")
    stale = node_pb2.AgentLegSnapshot(offer_id="e6-99", agent_id="x", call_id="old", state="ringing")
    a = rt.attach("a", "ia2", node_pb2.Register(node_id="a", instance_id="ia2", calls=[caller], agent_legs=[stale]))
    # The list of devices to watch comes with the node's return (NodeAlive), after its re-report.
    assert _kinds(a) == [("cancel_offer", "e6-99"), ("connect", offer_id), ("watch_devices", "")]


async def test_run_timers_ends_when_cancelled_even_as_it_is_woken() -> None:
    # Leader-only work must end the moment leadership is lost. asyncio.wait_for (Python 3.11) returned
    # normally when cancelled just as its wait completed, and the loop went on for good: 40 of these
    # 50 cancellations were lost before run_timers used asyncio.timeout.
    lost = 0
    for i in range(50):
        rt = _runtime()
        rt.expect_node("gone-node")  # a deadline, so the timer waits with a timeout
        task = asyncio.ensure_future(rt.run_timers())
        for _ in range(i % 5):
            await asyncio.sleep(0)
        rt._wake.set()  # e.g. a node detaching in the same loop iteration as the step-down
        for _ in range(i // 5 % 3):
            await asyncio.sleep(0)
        task.cancel()
        done, _ = await asyncio.wait([task], timeout=0.5)
        if not done:
            lost += 1
            task.cancel()
            await asyncio.wait([task], timeout=0.5)
    assert lost == 0, f"{lost} of 50 cancellations of run_timers were swallowed"


def _offers(*links: NodeLink) -> list[tuple[str, str]]:
    """(call id, agent id) of every offer the links were sent."""
    return [(dec.offer.call_id, dec.offer.agent_id) for link in links for dec in _decisions(link)
            if dec.WhichOneof("decision") == "offer"]


async def test_an_agent_still_talking_on_a_node_that_comes_back_is_not_offered_another_call() -> None:
    """Node b was lost (the engine ended its calls, freeing agent x) but x still talks on Asterisk; b
    comes back and re-reports x's call. No offer may reach x in between: the re-report is applied
    before b's agents are available again."""
    rt = _runtime()
    a = _attach(rt, "a", "ia")
    b = _attach(rt, "b", "ib")
    rt.apply(_agent("x", "b"))
    rt.handle_batch(b, _joins("b-c0"))
    [(_, offer_id)] = [k for k in _kinds(b) if k[0] == "offer"]
    _answer(rt, b, offer_id)
    rt.detach(b)
    rt.apply(NodeLost("b"))  # past node_ttl: the engine ends x's call
    rt.handle_batch(a, _joins("a-c1"))  # a caller waits on a
    _decisions(a)
    talking = node_pb2.Register(node_id="b", instance_id="ib2", calls=[node_pb2.CallSnapshot(
        joined=node_pb2.CallJoined(call_id="b-c0", queue="q"), arrival_seq=1, state="connected",
        offer_id=offer_id, agent_id="x")], agent_legs=[node_pb2.AgentLegSnapshot(
            offer_id=offer_id, agent_id="x", call_id="b-c0", state="connected", caller_node="b")])
    b = rt.attach("b", "ib2", talking)
    assert _offers(a, b) == [], "x is on a call: ringing it for a-c1 would give it two"
    assert {v.agent_id: v.state for v in rt.engine.agent_states()} == {"x": "busy"}


async def test_a_new_leaders_first_attach_of_a_node_knows_its_agents_calls_before_offering() -> None:
    """A new leader loaded x (homed on b) while b had not attached yet; b attaches re-reporting x in a
    call: x is not offered the caller waiting on a."""
    rt = _runtime()
    rt.expect_node("b")
    rt.apply(_agent("x", "b"))
    a = _attach(rt, "a", "ia")
    rt.handle_batch(a, _joins("a-c1"))
    b = rt.attach("b", "ib", node_pb2.Register(node_id="b", instance_id="ib", agent_legs=[
        node_pb2.AgentLegSnapshot(offer_id="e6-3", agent_id="x", call_id="b-c0", state="connected",
                                  caller_node="b")], calls=[node_pb2.CallSnapshot(
                                      joined=node_pb2.CallJoined(call_id="b-c0", queue="q"), arrival_seq=1,
                                      state="connected", offer_id="e6-3", agent_id="x")]))
    assert _offers(a, b) == []
    assert {v.agent_id: v.state for v in rt.engine.agent_states()} == {"x": "busy"}


async def test_a_join_ack_lost_with_the_stream_is_sent_again_on_re_attach() -> None:
    """The JoinAck went with the old stream: the node re-reports its caller without a sequence; the
    leader, which holds it, answers with its sequence again (music starts, CLUSTERQ_SEQ is written)."""
    rt = _runtime()
    link = _attach(rt, "n1", "i1")
    rt.handle_batch(link, _joins("c0", "c1"))
    [seq0, seq1] = [d.join_ack.arrival_seq for d in _decisions(link) if d.HasField("join_ack")]
    rt.detach(link)  # c1's JoinAck never arrived; c0's did
    snaps = [node_pb2.CallSnapshot(joined=node_pb2.CallJoined(call_id="c0", queue="q"), arrival_seq=seq0,
                                   state="waiting"),
             node_pb2.CallSnapshot(joined=node_pb2.CallJoined(call_id="c1", queue="q", node_join_order=2),
                                   state="waiting")]
    link = rt.attach("n1", "i2", node_pb2.Register(node_id="n1", instance_id="i2", calls=snaps))
    acks = [d.join_ack for d in _decisions(link) if d.HasField("join_ack")]
    assert [(x.call_id, x.arrival_seq, x.position) for x in acks] == [("c1", seq1, 2)]
    assert acks[0].media.music_class == "jazz", "with the queue's media, as the first JoinAck"
    assert [c.call_id for c in rt.engine.waiting_callers("q")] == ["c0", "c1"]


async def test_a_caller_connected_here_but_waiting_on_its_node_queues_again_with_its_sequence() -> None:
    """A call adopted from an earlier leader's time (connected on the caller's node, waiting for the
    trunk leg) failed on the node; AgentLegFailed does not apply to adopted calls, and the node's
    fresh Register shows the caller waiting: the call ends here and the caller queues again, in its
    place, instead of waiting with music for ever while its agent stays busy."""
    rt = _runtime()
    rt.apply(_agent("x", "b"))
    _attach(rt, "b", "ib")
    a = rt.attach("a", "ia", node_pb2.Register(node_id="a", instance_id="ia", calls=[
        node_pb2.CallSnapshot(joined=node_pb2.CallJoined(call_id="a-c0", queue="q"), arrival_seq=3,
                              state="waiting"),
        node_pb2.CallSnapshot(joined=node_pb2.CallJoined(call_id="a-c1", queue="q"), arrival_seq=5,
                              state="connected", offer_id="e6-9", agent_id="x")]))
    assert {v.agent_id: v.state for v in rt.engine.agent_states()} == {"x": "busy"}
    rt.handle_batch(a, node_pb2.EventBatch(events=[node_pb2.NodeEvent(
        agent_leg_failed=node_pb2.AgentLegFailed(offer_id="e6-9", reason="failed"))]))
    assert rt.engine.position("a-c1") is None, "an adopted call is not re-queued on AgentLegFailed"
    rt.detach(a)
    a = rt.attach("a", "ia", node_pb2.Register(node_id="a", instance_id="ia", calls=[
        node_pb2.CallSnapshot(joined=node_pb2.CallJoined(call_id="a-c0", queue="q"), arrival_seq=3,
                              state="waiting"),
        node_pb2.CallSnapshot(joined=node_pb2.CallJoined(call_id="a-c1", queue="q"), arrival_seq=5,
                              state="waiting")]))
    c1 = rt.engine.caller("a-c1")
    assert c1 is not None and c1.arrival_seq == 5 and c1.position is not None
    assert [c.call_id for c in rt.engine.waiting_callers("q")][:1] == ["a-c0"], "c1 behind c0, in its place"


async def test_a_node_re_reporting_many_callers_costs_one_dispatch_pass_not_one_per_caller(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """With a free agent elsewhere, each re-joined caller used to mark dispatch dirty and each pass
    walked the whole line past the attaching node's callers: O(callers^2), 4.4 s for 10,000 (longer
    than the lease). Dispatch is held until the node's NodeAlive, then runs once."""
    from coordinator.queue import machine

    passes: list[int] = []
    real = machine.dispatch

    def counting(*args: Any) -> None:
        passes.append(1)
        real(*args)

    monkeypatch.setattr(machine, "dispatch", counting)
    rt = _runtime()
    _attach(rt, "b", "ib")
    rt.apply(_agent("x", "b"))  # free, on another node
    rt.apply(_agent("y", "b"))
    calls = [node_pb2.CallSnapshot(joined=node_pb2.CallJoined(call_id=f"a-{i}", queue="q"), arrival_seq=i + 1,
                                   state="waiting") for i in range(2000)]
    passes.clear()
    a = rt.attach("a", "ia", node_pb2.Register(node_id="a", instance_id="ia", calls=calls))
    assert len(passes) <= 2, f"{len(passes)} dispatch passes for one attach"
    assert sorted(_offers(a)) == [("a-0", "x"), ("a-0", "y")], "ringall: the first in line, once a is back"


async def test_a_connect_lost_with_the_stream_under_ringall_is_sent_again_not_taken_for_a_failure() -> None:
    """Ringall rang x (first offer) and y; y answered and was connected; the stream dropped before
    the node got the Connect. The node still sees its caller ringing with its FIRST offer: the
    leader sends the Connect of y's offer again (once), and cancels x's leg; the call stands."""
    rt = _runtime()
    n1 = _attach(rt, "n1", "i1")
    rt.apply(_agent("x", "n1"))
    rt.apply(_agent("y", "n1"))
    rt.handle_batch(n1, _joins("c1"))
    offers = {dec.offer.agent_id: dec.offer.offer_id for dec in _decisions(n1) if dec.HasField("offer")}
    assert set(offers) == {"x", "y"}
    _answer(rt, n1, offers["y"])
    rt.detach(n1)  # the Connect and x's CancelOffer went with this stream
    snap = node_pb2.CallSnapshot(joined=node_pb2.CallJoined(call_id="c1", queue="q"), arrival_seq=1,
                                 state="waiting", offer_id=offers["x"])
    legs = [node_pb2.AgentLegSnapshot(offer_id=offers["x"], agent_id="x", call_id="c1", state="ringing",
                                      caller_node="n1"),
            node_pb2.AgentLegSnapshot(offer_id=offers["y"], agent_id="y", call_id="c1", state="answered",
                                      caller_node="n1")]
    n1 = rt.attach("n1", "i2", node_pb2.Register(node_id="n1", instance_id="i2", calls=[snap], agent_legs=legs))
    kinds = [k for k in _kinds(n1) if k[0] != "watch_devices"]
    assert sorted(kinds) == sorted([("cancel_offer", offers["x"]), ("connect", offers["y"])]), kinds
    assert rt.engine.connected_offer("c1") == (offers["y"], "y")
    assert {v.agent_id: v.state for v in rt.engine.agent_states()}["y"] == "busy"


async def test_a_failed_call_whose_join_ack_was_lost_too_queues_again_as_the_caller_it_was() -> None:
    """The node never got its JoinAck (sequence 0) and its call failed: the caller re-joins with the
    sequence the leader held, as a re-report (no admission check: a full queue does not refuse it)."""
    rt = _runtime(QueueConfig("q", maxlen=1))
    a, b, offer_id = _answered_across_nodes(rt, "a-c0")
    seq = rt.engine.caller("a-c0").arrival_seq  # type: ignore[union-attr]
    rt.handle_batch(b, _joins("b-c1"))  # the queue is full again (maxlen 1) with b-c1
    rt.detach(a)
    a = rt.attach("a", "ia2", node_pb2.Register(node_id="a", instance_id="ia2", calls=[node_pb2.CallSnapshot(
        joined=node_pb2.CallJoined(call_id="a-c0", queue="q"), state="waiting")]))
    decisions = _decisions(a)
    assert not [dec for dec in decisions if dec.HasField("join_reject")]
    c0 = rt.engine.caller("a-c0")
    assert c0 is not None and c0.arrival_seq == seq and c0.position == 1, "its place, ahead of b-c1"
    assert [dec.join_ack.arrival_seq for dec in decisions if dec.HasField("join_ack")] == [seq]
    assert ("cancel_offer", offer_id) in _kinds(b), "x's leg on b is hung up"


async def test_a_caller_whose_ringing_state_a_reconnect_reset_is_connected_not_unbridged() -> None:
    """The node reported its caller plainly waiting (a reconnect to the same leader used to reset
    ringing callers) while the agent's leg on the same node had answered: the call did not fail, the
    Connect is sent again."""
    rt = _runtime()
    n1 = _attach(rt, "n1", "i1")
    rt.apply(_agent("x", "n1"))
    rt.handle_batch(n1, _joins("c1"))
    [(_, offer_id)] = [k for k in _kinds(n1) if k[0] == "offer"]
    _answer(rt, n1, offer_id)
    rt.detach(n1)  # the Connect went with it
    n1 = rt.attach("n1", "i2", node_pb2.Register(node_id="n1", instance_id="i2", calls=[node_pb2.CallSnapshot(
        joined=node_pb2.CallJoined(call_id="c1", queue="q"), arrival_seq=1, state="waiting")],
        agent_legs=[node_pb2.AgentLegSnapshot(offer_id=offer_id, agent_id="x", call_id="c1", state="answered",
                                              caller_node="n1")]))
    assert [k for k in _kinds(n1) if k[0] != "watch_devices"] == [("connect", offer_id)]
    assert rt.engine.connected_offer("c1") == (offer_id, "x")


async def test_a_cancel_lost_with_the_stream_is_sent_again_to_a_node_still_connecting() -> None:
    """The agent's node reported the call failed; the leader re-queued the caller and cancelled the
    offer, but the caller's node missed the CancelOffer and re-reports the caller connecting: the
    cancel goes again (until then the node ignored every new offer for it)."""
    rt = _runtime()
    a, b, offer_id = _answered_across_nodes(rt, "a-c1")
    rt.detach(a)
    rt.handle_batch(b, node_pb2.EventBatch(events=[node_pb2.NodeEvent(
        agent_leg_failed=node_pb2.AgentLegFailed(offer_id=offer_id, reason="failed"))]))
    assert rt.engine.position("a-c1") == 1, "re-queued"
    a = rt.attach("a", "ia2", node_pb2.Register(node_id="a", instance_id="ia2", calls=[node_pb2.CallSnapshot(
        joined=node_pb2.CallJoined(call_id="a-c1", queue="q"), arrival_seq=1, state="connected",
        offer_id=offer_id, agent_id="x")]))
    assert ("cancel_offer", offer_id) in _kinds(a)
    assert rt.engine.position("a-c1") == 1

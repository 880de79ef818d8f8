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
from coordinator.queue import AgentConfig, AgentLoggedIn, Membership, QueueConfig, QueueDefined, QueueEngine
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

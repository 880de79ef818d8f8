"""The stasis app's Prometheus metrics: the rendering (read back by the strict exposition parser),
the gauges collected from the app, and each counter incremented where its event happens."""

from __future__ import annotations

import dataclasses

from clusterq_proto.v1 import common_pb2, node_pb2
from clusterq_testing.exposition import Family, parse
from stasis_app.ari.fake import FakeAri, OriginateOutcome
from stasis_app.call import records as r
from stasis_app.call.args import QueueArgs
from stasis_app.metrics import MAX_QUEUE_LABELS, STATUSES, NodeCounters, NodeFigures, collect, render
from stasis_app.node import NodeApp
from tests.unit.stasis_app.harness import Node, running, settings

FIGURES = NodeFigures(
    version="1.2.3", ari_connected=True, ari_reconnects=2, coordinator_connected=False, leader_epoch=7,
    decisions_refused=3, decisions_failed=1, events_pending=4, events_sent=40, callers_waiting=5,
    callers_ringing=1, callers_connected=2, queue_callers=(("sales", 2), ('we"ird\\q', 4)),
    queue_callers_unlisted=0, callers_joined=11, callers_sent_back=(("TIMEOUT", 1), ("FULL", 0)),
    callers_hung_up_waiting=2, callers_hung_up_connected=1, agent_legs_originated=9, agent_legs_answered=6,
    devices_watched=12, agent_operations=(("LOGGEDIN", 3), ("UNAVAILABLE", 1)))


def _families(text: str) -> dict[str, Family]:
    return parse(text)


def _sample(families: dict[str, Family], name: str, **labels: str) -> float:
    return families[name].samples[tuple(labels.items())]


# ---------------------------------------------------------------------------------- rendering
def test_every_figure_is_rendered_with_its_type_and_labels() -> None:
    f = _families(render(FIGURES))
    expected: dict[str, tuple[str, dict[tuple[tuple[str, str], ...], float]]] = {
        "clusterq_node_build_info": ("gauge", {(("version", "1.2.3"),): 1}),
        "clusterq_node_ari_connected": ("gauge", {(): 1}),
        "clusterq_node_ari_reconnects_total": ("counter", {(): 2}),
        "clusterq_node_coordinator_connected": ("gauge", {(): 0}),
        "clusterq_node_leader_epoch": ("gauge", {(): 7}),
        "clusterq_node_decisions_refused_total": ("counter", {(): 3}),
        "clusterq_node_decisions_failed_total": ("counter", {(): 1}),
        "clusterq_node_events_pending": ("gauge", {(): 4}),
        "clusterq_node_events_sent_total": ("counter", {(): 40}),
        "clusterq_node_callers": ("gauge", {(("state", "waiting"),): 5, (("state", "ringing"),): 1,
                                            (("state", "connected"),): 2}),
        "clusterq_node_queue_callers": ("gauge", {(("queue", "sales"),): 2, (("queue", 'we"ird\\q'),): 4}),
        "clusterq_node_queue_callers_unlisted": ("gauge", {(): 0}),
        "clusterq_node_callers_joined_total": ("counter", {(): 11}),
        "clusterq_node_callers_sent_back_total": ("counter", {(("status", "TIMEOUT"),): 1,
                                                              (("status", "FULL"),): 0}),
        "clusterq_node_callers_hung_up_total": ("counter", {(("state", "waiting"),): 2,
                                                            (("state", "connected"),): 1}),
        "clusterq_node_agent_legs_originated_total": ("counter", {(): 9}),
        "clusterq_node_agent_legs_answered_total": ("counter", {(): 6}),
        "clusterq_node_devices_watched": ("gauge", {(): 12}),
        "clusterq_node_agent_operations_total": ("counter", {(("status", "LOGGEDIN"),): 3,
                                                             (("status", "UNAVAILABLE"),): 1}),
    }
    assert {name: (fam.kind, fam.samples) for name, fam in f.items()} == expected
    assert all(fam.help for fam in f.values())


def test_without_a_version_there_is_no_build_info_and_no_queue_is_no_queue_sample() -> None:
    text = render(dataclasses.replace(FIGURES, version=None, queue_callers=()))
    f = _families(text)
    assert "clusterq_node_build_info" not in f
    assert f["clusterq_node_queue_callers"].samples == {}


# ---------------------------------------------------------------------------------- collecting
def _caller(call_id: str, queue: str, state: str) -> r.Caller:
    return r.Caller(call_id=call_id, args=QueueArgs(queue=queue), caller_number="", caller_name="",
                    join_order=0, joined_wall=0.0, state=state)


async def test_held_callers_are_counted_by_state_and_queue_and_queues_are_capped_by_name() -> None:
    app = NodeApp(settings(), FakeAri("a"))
    held = [_caller("w1", "b", r.WAITING), _caller("w2", "b", r.WAITING), _caller("r1", "a", r.RINGING),
            _caller("c1", "a", r.CONNECTING), _caller("c2", "b", r.CONNECTED)]
    # More queues than get their own series: q0000.. take the first MAX_QUEUE_LABELS - 2 places after a, b.
    held += [_caller(f"x{i}", f"q{i:04d}", r.WAITING) for i in range(MAX_QUEUE_LABELS + 5)]
    app.callers = {c.call_id: c for c in held}
    f = collect(app, None)
    assert (f.callers_waiting, f.callers_ringing, f.callers_connected) == (2 + MAX_QUEUE_LABELS + 5, 1, 2)
    assert len(f.queue_callers) == MAX_QUEUE_LABELS
    assert f.queue_callers[:3] == (("a", 1), ("b", 2), ("q0000", 1))
    assert f.queue_callers[-1] == (f"q{MAX_QUEUE_LABELS - 3:04d}", 1)
    assert f.queue_callers_unlisted == 7, "the callers of the 7 queues past the cap are still counted"


async def test_the_coordinator_link_figures_come_from_the_real_client() -> None:
    app = NodeApp(settings(), FakeAri("a"))
    assert app.coord.deliver(node_pb2.Decision(stamp=common_pb2.Stamp(epoch=4, seq=1)))
    assert not app.coord.deliver(node_pb2.Decision(stamp=common_pb2.Stamp(epoch=3, seq=2)))  # a paused old leader
    f = collect(app, "v")
    assert (f.leader_epoch, f.decisions_refused, f.coordinator_connected) == (4, 1, False)
    assert (f.events_pending, f.events_sent, f.version) == (0, 0, "v")


async def test_every_status_is_exported_from_the_start_and_an_unknown_one_stays_bounded() -> None:
    k = NodeCounters()
    assert k.sent_back == dict.fromkeys(STATUSES, 0)
    assert {"TIMEOUT", "FULL", "JOINEMPTY", "UNAVAILABLE", "INVALID_ARGS", "EXITWITHKEY", "CONTINUE"} <= set(STATUSES)
    k.caller_sent_back("FULL")
    k.caller_sent_back("SOMETHING_NEW")
    k.caller_sent_back("ANOTHER")
    assert k.sent_back["FULL"] == 1 and k.sent_back["OTHER"] == 2
    assert len(k.sent_back) == len(STATUSES) + 1


# ---------------------------------------------------------------------------------- counting at the source
def _figures(n: Node) -> NodeFigures:
    return collect(n.app, None)


def _sent_back(n: Node) -> dict[str, int]:
    return {s: v for s, v in _figures(n).callers_sent_back if v}


async def test_joins_hangups_and_sent_back_callers_are_counted_where_they_happen() -> None:
    ari = FakeAri("a")
    async with running(ari) as n:
        ari.caller_enters(["support", "priority=high"])  # refused at the door: not joined
        full = ari.caller_enters(["support"])
        stays = ari.caller_enters(["support"])
        hangs_up = ari.caller_enters(["sales"])
        await n.settle()
        n.join(stays, position=1)
        n.join(hangs_up, position=1, queue="sales")
        n.coord.decide(join_reject=node_pb2.JoinReject(call_id=full, status=common_pb2.CALLER_STATUS_FULL))
        await n.settle()
        f = _figures(n)
        assert f.callers_joined == 3
        assert _sent_back(n) == {"INVALID_ARGS": 1, "FULL": 1}
        assert (f.callers_waiting, f.queue_callers) == (2, (("sales", 1), ("support", 1)))
        ari.caller_hangs_up(hangs_up)
        n.coord.decide(continue_in_dialplan=node_pb2.ContinueInDialplan(
            call_id=stays, status=common_pb2.CALLER_STATUS_LEAVEEMPTY))
        await n.settle()
        f = _figures(n)
        assert (f.callers_hung_up_waiting, f.callers_hung_up_connected, f.callers_waiting) == (1, 0, 0)
        assert _sent_back(n) == {"INVALID_ARGS": 1, "FULL": 1, "LEAVEEMPTY": 1}
        ari.caller_hangs_up(stays)  # already given back: counted once, as sent back
        await n.settle()
        assert _figures(n).callers_hung_up_waiting == 1


async def test_agent_legs_and_a_connected_callers_hangup_are_counted() -> None:
    ari = FakeAri("a")
    async with running(ari) as n:
        cid = ari.caller_enters(["support"])
        await n.settle()
        n.join(cid, position=1)
        n.offer("o1", cid)  # alice's leg keeps ringing
        await n.settle()
        f = _figures(n)
        assert (f.agent_legs_originated, f.agent_legs_answered, f.callers_ringing) == (1, 0, 1)
        ari.answer_leg("a-ag-o1_")
        await n.settle()
        assert _figures(n).agent_legs_answered == 1
        n.connect("o1", cid)
        await n.settle()
        assert (_figures(n).callers_connected, _figures(n).callers_ringing) == (1, 0)
        ari.caller_hangs_up(cid)
        await n.settle()
        f = _figures(n)
        assert (f.callers_hung_up_connected, f.callers_hung_up_waiting, f.callers_connected) == (1, 0, 0)


async def test_an_originate_that_never_reached_asterisk_is_not_counted() -> None:
    ari = FakeAri("a")
    async with running(ari) as n:
        cid = await n.queued_caller()
        ari.drop_connection()
        n.offer("o1", cid)
        await n.settle()
        assert not ari.originations and "o1" in n.app.legs.legs, "tried, and waits for the ring timeout"
        assert _figures(n).agent_legs_originated == 0
        ari.outcomes["Local/bob@agents/n"] = OriginateOutcome.ANSWER
        ari.restore_connection()
        await n.settle()
        n.offer("o2", cid, agent="bob")
        await n.settle()
        assert _figures(n).agent_legs_originated == 1


async def test_ari_reconnects_and_watched_devices_are_counted() -> None:
    ari = FakeAri("a")
    async with running(ari) as n:
        assert (_figures(n).ari_reconnects, _figures(n).ari_connected) == (0, True), "the first connect is none"
        ari.drop_connection()
        await n.settle()
        assert not _figures(n).ari_connected
        ari.restore_connection()
        await n.settle()
        assert (_figures(n).ari_reconnects, _figures(n).ari_connected) == (1, True)
        n.coord.decide(watch_devices=node_pb2.WatchDevices(watch=["PJSIP/alice", "PJSIP/bob"], replace=True))
        await n.settle()
        assert _figures(n).devices_watched == 2
        f = _families(render(_figures(n)))
        assert f["clusterq_node_devices_watched"].samples[()] == 2
        assert _sample(f, "clusterq_node_callers_sent_back_total", status="TIMEOUT") == 0

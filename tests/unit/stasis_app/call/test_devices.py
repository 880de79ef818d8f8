"""Device state (call/devices.py) through a NodeApp on the fake ARI: WatchDevices in, DeviceStateChanged out."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

import pytest

from clusterq_proto.v1 import common_pb2, node_pb2
from stasis_app.ari.fake import FakeAri
from stasis_app.ari.port import AriError, AriUnavailable
from stasis_app.call import devices
from stasis_app.coordinator_client import CoordinatorClient
from tests.unit.stasis_app.harness import Node, running

ALICE, BOB, CAROL = "Local/alice@agents", "PJSIP/bob", "Local/carol@agents"


def _watch(n: Node, watch: list[str] = [], unwatch: list[str] = [], replace: bool = False) -> None:  # noqa: B006
    n.coord.decide(watch_devices=node_pb2.WatchDevices(watch=watch, unwatch=unwatch, replace=replace))


def _reported(n: Node, since: int = 0) -> list[tuple[str, str]]:
    return [(e.device, e.state) for e in n.coord.of("device_state_changed")[since:]]


async def _until(check: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not reached"
        await asyncio.sleep(0.001)


def _fake(**states: str) -> FakeAri:
    ari = FakeAri("a")
    ari.devices.update({ALICE: "NOT_INUSE", BOB: "INUSE", CAROL: "UNAVAILABLE"} | states)
    return ari


async def test_a_replace_list_is_subscribed_then_read_and_each_state_reported() -> None:
    ari = _fake()
    async with running(ari) as n:
        _watch(n, [ALICE, BOB, "PJSIP/ghost"], replace=True)
        await n.settle()
        assert ari.device_subscriptions == {ALICE, BOB, "PJSIP/ghost"}
        assert sorted(_reported(n)) == [(ALICE, "NOT_INUSE"), (BOB, "INUSE"), ("PJSIP/ghost", "INVALID")]
        for device in (ALICE, BOB):  # never read before its subscription holds (no change may fall between)
            assert ari.device_requests.index(("subscribe", device)) < ari.device_requests.index(("get", device))


async def test_a_new_replace_list_drops_the_others_and_reports_every_listed_device_again() -> None:
    ari = _fake()
    async with running(ari) as n:
        _watch(n, [ALICE, BOB], replace=True)
        await n.settle()
        ari.device_requests.clear()
        mark = len(_reported(n))
        _watch(n, [BOB, CAROL], replace=True)  # e.g. from a new leader, which knows no state yet
        await n.settle()
        assert ari.device_subscriptions == {BOB, CAROL}
        assert sorted(_reported(n, mark)) == [(CAROL, "UNAVAILABLE"), (BOB, "INUSE")]
        assert ("subscribe", BOB) not in ari.device_requests  # still subscribed: only read again
        assert sorted(ari.device_requests) == sorted([("get", BOB), ("get", CAROL), ("subscribe", CAROL),
                                                      ("unsubscribe", ALICE)])


async def test_deltas_watch_and_unwatch_only_the_devices_they_name() -> None:
    ari = _fake()
    async with running(ari) as n:
        _watch(n, [ALICE], replace=True)
        await n.settle()
        mark = len(_reported(n))
        _watch(n, watch=[CAROL, ALICE], unwatch=["PJSIP/never-watched"])
        await n.settle()
        assert _reported(n, mark) == [(CAROL, "UNAVAILABLE")]  # alice was watched already: not again
        _watch(n, unwatch=[ALICE])
        await n.settle()
        assert ari.device_subscriptions == {CAROL} and n.app.devices.watched == {CAROL}
        mark = len(_reported(n))
        ari.set_device_state(ALICE, "INUSE")  # not watched any more
        ari.set_device_state(CAROL, "NOT_INUSE")
        await n.settle()
        assert _reported(n, mark) == [(CAROL, "NOT_INUSE")]


async def test_every_change_is_reported_once_and_unwatched_devices_are_ignored() -> None:
    ari = _fake()
    async with running(ari) as n:
        _watch(n, [ALICE], replace=True)
        await n.settle()
        ari.device_subscriptions.add(BOB)  # e.g. left over by an earlier process of this node
        for device, state in [(ALICE, "INUSE"), (ALICE, "INUSE"), (BOB, "NOT_INUSE"), (ALICE, "RINGINUSE"),
                              (ALICE, "NOT_INUSE"), (ALICE, "NOT_INUSE")]:
            ari.set_device_state(device, state)
        await n.settle()
        assert _reported(n) == [(ALICE, "NOT_INUSE"), (ALICE, "INUSE"), (ALICE, "RINGINUSE"), (ALICE, "NOT_INUSE")]


async def test_after_an_ari_reconnect_every_device_is_subscribed_again_and_reported_again() -> None:
    ari = _fake()
    async with running(ari) as n:
        _watch(n, [ALICE, BOB], replace=True)
        await n.settle()
        mark = len(_reported(n))
        ari.drop_connection()
        ari.set_device_state(ALICE, "INUSE")  # lost with the websocket
        ari.restore_connection()
        await n.settle()
        assert sorted(_reported(n, mark)) == [(ALICE, "INUSE"), (BOB, "INUSE")]  # bob unchanged: again
        mark = len(_reported(n))
        ari.restart_asterisk()  # the subscriptions are gone with it
        ari.restore_connection()
        await n.settle()
        assert ari.device_subscriptions == {ALICE, BOB}
        assert sorted(_reported(n, mark)) == [(ALICE, "INUSE"), (BOB, "INUSE")]
        ari.set_device_state(BOB, "NOT_INUSE")
        await n.settle()
        assert _reported(n)[-1] == (BOB, "NOT_INUSE")


async def test_a_watch_while_ari_is_down_is_carried_out_once_it_is_back() -> None:
    ari = _fake()
    async with running(ari) as n:
        ari.drop_connection()
        await n.settle()
        _watch(n, [ALICE], replace=True)
        await n.settle()
        assert _reported(n) == [] and ari.device_requests == []
        ari.restore_connection()
        await n.settle()
        assert _reported(n) == [(ALICE, "NOT_INUSE")] and ari.device_subscriptions == {ALICE}


async def test_unusable_names_are_ignored_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    ari = _fake()
    bad = ["", "PJSIP/a,PJSIP/b", "x" * (devices.MAX_NAME + 1), "PJSIP/tab\there", " PJSIP/pad"]
    longest = "y" * devices.MAX_NAME
    async with running(ari) as n:
        with caplog.at_level(logging.WARNING):
            _watch(n, [*bad, ALICE, ALICE, longest], replace=True)
            await n.settle()
        assert n.app.devices.watched == {ALICE, longest}
        assert ari.device_subscriptions == {ALICE, longest}
        assert sorted(_reported(n)) == [(ALICE, "NOT_INUSE"), (longest, "INVALID")]
        assert "ignoring 5 unusable device names" in caplog.text


async def test_no_more_than_max_devices_are_watched(caplog: pytest.LogCaptureFixture) -> None:
    ari = _fake()
    names = [f"PJSIP/agent{i}" for i in range(devices.MAX_DEVICES + 5)]
    async with running(ari) as n:
        with caplog.at_level(logging.WARNING):
            _watch(n, names, replace=True)
            await _until(lambda: len(_reported(n)) == devices.MAX_DEVICES)
            _watch(n, ["PJSIP/one-more"])
            await n.settle()
        assert n.app.devices.watched == set(names[: devices.MAX_DEVICES])
        assert len(ari.device_subscriptions) == devices.MAX_DEVICES
        assert "5 devices over the limit of 10000 ignored" in caplog.text
        assert "1 devices over the limit" in caplog.text
        _watch(n, watch=["PJSIP/one-more"], unwatch=[names[0]])  # room made in the same message
        await n.settle()
        assert "PJSIP/one-more" in n.app.devices.watched and len(n.app.devices.watched) == devices.MAX_DEVICES


async def test_at_most_16_requests_at_once() -> None:
    ari = _fake()
    ari.device_gets_open.clear()
    async with running(ari) as n:
        _watch(n, [f"PJSIP/agent{i}" for i in range(40)], replace=True)
        await n.settle()
        assert ari.device_gets_in_flight == devices.CONCURRENCY == 16
        ari.device_gets_open.set()
        await _until(lambda: len(_reported(n)) == 40)
        assert ari.device_gets_max == 16


async def test_a_failed_subscribe_or_read_reports_unknown_and_spares_the_rest() -> None:
    ari = _fake()
    ari.errors["subscribe_device"] = [AriError(500, "Internal Server Error")]
    ari.errors["device_state"] = [AriUnavailable("deviceStates.get: TimeoutError")]
    async with running(ari) as n:
        _watch(n, [ALICE], replace=True)
        await n.settle()
        assert _reported(n) == [(ALICE, "UNKNOWN")] and ALICE not in ari.device_subscriptions
        _watch(n, [BOB])  # the next subscribe works; its read times out (ARI stays connected)
        await n.settle()
        assert _reported(n)[-1] == (BOB, "UNKNOWN") and BOB in ari.device_subscriptions
        n.coord.decide(cancel_offer=node_pb2.CancelOffer(offer_id="o-none"))  # decisions go on
        _watch(n, [CAROL])
        await n.settle()
        assert _reported(n)[-1] == (CAROL, "UNAVAILABLE")
        ari.set_device_state(BOB, "NOT_INUSE")  # subscribed: its changes still arrive
        await n.settle()
        assert _reported(n)[-1] == (BOB, "NOT_INUSE")
        requests = len(ari.device_requests)
        await n.settle()
        assert len(ari.device_requests) == requests  # no retry loop against a refusing Asterisk
        ari.drop_connection()
        ari.restore_connection()  # the next connect retries the failed ones
        await n.settle()
        assert ari.device_subscriptions == {ALICE, BOB, CAROL}
        assert set(_reported(n)[-3:]) == {(ALICE, "NOT_INUSE"), (BOB, "NOT_INUSE"), (CAROL, "UNAVAILABLE")}


async def test_a_read_answer_older_than_a_reported_event_is_dropped() -> None:
    ari = _fake()
    ari.device_gets_open.clear()
    async with running(ari) as n:
        _watch(n, [ALICE, BOB], replace=True)
        await n.settle()  # both answers read (NOT_INUSE, INUSE) and held in transit
        ari.set_device_state(ALICE, "INUSE")
        await n.settle()
        _watch(n, unwatch=[BOB])  # unwatched while its answer is out: not reported
        await n.settle()
        ari.device_gets_open.set()
        await n.settle()
        assert _reported(n) == [(ALICE, "INUSE")]


async def test_an_older_leader_that_never_sends_watch_devices_costs_no_device_request() -> None:
    ari = _fake()
    async with running(ari) as n:
        cid = ari.caller_enters(["support"])
        await n.settle()
        n.join(cid, position=1)
        ari.drop_connection()
        ari.restore_connection()
        await n.settle()
        assert ari.device_requests == [] and _reported(n) == []
        assert n.coord.kinds()[0] == "call_joined"


async def test_a_decision_of_a_kind_this_node_does_not_know_is_ignored() -> None:
    ari = _fake()
    async with running(ari) as n:
        stamp = common_pb2.Stamp(epoch=1, seq=1)
        newer = node_pb2.Decision(stamp=stamp).SerializeToString() + bytes([0xFA, 0x06, 0x01, 0x78])  # field 111
        unknown = node_pb2.Decision.FromString(newer)
        assert unknown.WhichOneof("decision") is None
        n.app.on_decision(unknown)
        n.app.on_decision(node_pb2.Decision(stamp=stamp))  # none set at all
        _watch(n, [ALICE], replace=True)  # the node goes on
        await n.settle()
        assert _reported(n) == [(ALICE, "NOT_INUSE")]


async def test_a_watch_of_a_stale_leader_is_refused_like_any_decision() -> None:
    ari = _fake()
    async with running(ari) as n:
        client = CoordinatorClient("a", ("127.0.0.1:1",), n.app.snapshot, n.app.on_decision, lambda _up: None)
        client.highest_epoch = 5

        def watch(epoch: int) -> node_pb2.Decision:
            return node_pb2.Decision(stamp=common_pb2.Stamp(epoch=epoch, seq=1),
                                     watch_devices=node_pb2.WatchDevices(watch=[ALICE], replace=True))

        assert not client.deliver(watch(4))
        await n.settle()
        assert ari.device_requests == [] and n.app.devices.watched == set()
        assert client.deliver(watch(5))
        await n.settle()
        assert _reported(n) == [(ALICE, "NOT_INUSE")]


async def test_a_read_started_before_a_new_watch_list_is_not_taken_for_the_fresh_one() -> None:
    """A GET answer in flight when a replacing list arrives (a new leader, a stream re-attached) is older
    than what the new list asks for: reported after a newer event, it would stand for good (the fresh
    answer dropped as a repeat). Only the read started after the list counts."""
    ari = _fake(**{ALICE: "INUSE"})
    ari.device_gets_open.clear()
    async with running(ari) as n:
        _watch(n, [ALICE], replace=True)  # its GET waits in transit, the answer will say INUSE
        await n.settle()
        ari.set_device_state(ALICE, "NOT_INUSE")  # her call ends meanwhile
        await n.settle()
        assert _reported(n) == [(ALICE, "NOT_INUSE")]
        _watch(n, [ALICE], replace=True)  # the whole list again
        await n.settle()
        ari.device_gets_open.set()  # the old answer (INUSE), then the new GET's (NOT_INUSE)
        await n.settle()
        assert _reported(n) == [(ALICE, "NOT_INUSE"), (ALICE, "NOT_INUSE")]


async def test_a_register_carries_the_last_reported_state_of_every_watched_device() -> None:
    ari = _fake()
    async with running(ari) as n:
        assert list(n.app.snapshot().devices) == []  # nothing watched yet
        _watch(n, [ALICE, BOB, CAROL], replace=True)
        await n.settle()
        ari.set_device_state(ALICE, "INUSE")
        await n.settle()
        _watch(n, unwatch=[CAROL])
        reg = n.app.snapshot()  # what a new leader is told before it offers this node's agents
        assert [(d.device, d.state) for d in reg.devices] == [(ALICE, "INUSE"), (BOB, "INUSE")]

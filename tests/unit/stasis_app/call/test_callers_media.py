"""A joining caller is answered and gets music even when ARI requests are lost: never silence."""

from __future__ import annotations

import asyncio

from clusterq_proto.v1 import node_pb2
from stasis_app.ari.fake import FakeAri
from stasis_app.ari.port import AriError, AriUnavailable
from tests.unit.stasis_app.harness import running


async def test_an_answer_asterisk_did_not_answer_is_retried() -> None:
    ari = FakeAri("a")
    ari.errors["answer"] = [AriUnavailable("answer: timed out")]
    async with running(ari) as n:
        cid = ari.caller_enters(["support"])
        await n.settle()
        assert ari.channels[cid].state != "Up"
        await asyncio.sleep(0.3)  # the first retry comes after 0.2 s
        await n.settle()
        assert ari.channels[cid].state == "Up" and n.app.callers[cid].answered


async def test_music_that_could_not_be_started_comes_back_with_the_next_ari_resync() -> None:
    ari = FakeAri("a")
    async with running(ari) as n:
        cid = await n.queued_caller()
        await n.settle()
        assert ari.channels[cid].moh_class == "default"
        ari.errors["start_moh"] = [AriError(500, "Internal Server Error")]
        n.coord.decide(periodic_announce=node_pb2.PeriodicAnnounce(call_id=cid, prompt="sound:beep"))
        await n.settle()
        [pb] = ari.playbacks
        ari.finish_playback(pb)  # the music should come back now, but Asterisk refuses it
        await n.settle()
        assert ari.channels[cid].moh_class is None and not n.app.callers[cid].moh_on
        ari.drop_connection()
        ari.restore_connection()
        await n.settle()
        assert ari.channels[cid].moh_class == "default"


async def test_a_caller_whose_answer_never_got_through_is_answered_after_the_reconnect() -> None:
    ari = FakeAri("a")
    ari.errors["answer"] = [AriUnavailable("answer: timed out")] * 4  # every attempt of the join
    async with running(ari) as n:
        cid = ari.caller_enters(["support"])
        await asyncio.sleep(2.0)  # 0.2 + 0.5 + 1.0 s of retries
        await n.settle()
        n.join(cid, position=1)
        await n.settle()
        assert ari.channels[cid].state != "Up" and not n.app.callers[cid].answered
        ari.drop_connection()
        ari.restore_connection()
        await n.settle()
        assert ari.channels[cid].state == "Up" and ari.channels[cid].moh_class == "default"

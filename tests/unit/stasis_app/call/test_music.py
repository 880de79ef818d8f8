"""Shared music: waiting callers hear one holding bridge's music per class, never their own generator."""

from __future__ import annotations

from clusterq_proto.v1 import node_pb2
from stasis_app.ari.fake import FakeAri, OriginateOutcome
from stasis_app.call import records as r
from tests.unit.stasis_app.harness import running


async def test_waiting_callers_share_one_holding_bridge_per_music_class() -> None:
    ari = FakeAri("a")
    async with running(ari, shared_music=True) as n:
        first = await n.queued_caller()
        second = ari.caller_enters(["support"])
        await n.settle()
        n.join(second, position=2, music="jazz")
        await n.settle()
        hold = ari.bridges["a-hold-default_"]
        assert (hold.kind, hold.moh_class, hold.channels) == ("holding", "default", [first])
        assert ari.bridges["a-hold-jazz_"].channels == [second]
        assert ari.channels[first].moh_class == "default" and ari.channels[second].moh_class == "jazz"
        third = await n.queued_caller(position=3)
        await n.settle()
        assert hold.channels == [first, third]
        assert n.app.callers[third].hold_bridge == "a-hold-default_"


async def test_a_prompt_plays_inside_the_holding_bridge_and_a_connection_moves_the_caller_out() -> None:
    ari = FakeAri("a")
    async with running(ari, shared_music=True) as n:
        cid = await n.queued_caller()
        await n.settle()
        n.coord.decide(periodic_announce=node_pb2.PeriodicAnnounce(call_id=cid, prompt="sound:beep"))
        await n.settle()
        [pb] = ari.playbacks
        assert ari.channels[cid].bridge_id == "a-hold-default_", "no request to stop the shared music"
        ari.finish_playback(pb)
        await n.settle()
        assert ari.channels[cid].bridge_id == "a-hold-default_" and n.app.callers[cid].moh_on
        ari.outcomes["Local/alice@agents/n"] = OriginateOutcome.ANSWER
        n.offer("o1", cid)
        await n.settle()
        n.connect("o1", cid)
        await n.settle()
        assert ari.bridges["a-br-o1_"].channels == [cid, "a-ag-o1_"]
        assert ari.bridges["a-hold-default_"].channels == [] and ari.channels[cid].moh_class is None
        c = n.app.callers[cid]
        assert (c.state, c.moh_on, c.hold_bridge) == (r.CONNECTED, False, "")


async def test_music_switched_off_takes_the_caller_out_of_the_holding_bridge() -> None:
    ari = FakeAri("a")
    async with running(ari, shared_music=True) as n:
        cid = await n.queued_caller()
        await n.settle()
        n.coord.decide(queue_media=node_pb2.QueueMedia(call_id=cid, music_class="none"))
        await n.settle()
        assert ari.bridges["a-hold-default_"].channels == [] and ari.channels[cid].moh_class is None


async def test_a_holding_bridge_asterisk_lost_is_made_again() -> None:
    ari = FakeAri("a")
    async with running(ari, shared_music=True) as n:
        first = await n.queued_caller()
        await n.settle()
        del ari.bridges["a-hold-default_"]  # as after an Asterisk restart
        ari.channels[first].bridge_id = None
        second = await n.queued_caller(position=2)
        await n.settle()
        assert ari.bridges["a-hold-default_"].channels == [second]
        assert ari.bridges["a-hold-default_"].moh_class == "default"


async def test_a_holding_bridge_destroyed_by_someone_else_is_made_again_for_its_callers() -> None:
    """An operator or another ARI application destroys the holding bridge: its waiting callers get
    their music back at once (they heard nothing until a new caller of the class made it again);
    a caller hanging up, or moved into its call, leaves it without that."""
    ari = FakeAri("a")
    async with running(ari, shared_music=True) as n:
        first = await n.queued_caller()
        second = await n.queued_caller(position=2)
        await n.settle()
        await ari.destroy_bridge("a-hold-default_")  # not clusterq's doing
        for _ in range(10):
            await n.settle()
        hold = ari.bridges["a-hold-default_"]
        assert sorted(hold.channels) == sorted([first, second]) and hold.moh_class == "default"
        assert all(n.app.callers[c].hold_bridge == "a-hold-default_" and n.app.callers[c].moh_on
                   for c in (first, second))
        ari.caller_hangs_up(second)
        await n.settle()
        assert hold.channels == [first] and second not in n.app.callers
        assert ari.bridges["a-hold-default_"] is hold, "a hang-up makes nothing again"

"""A prompt that cannot be played never leaves the caller in silence nor blocks later prompts (announcements.py)."""

from __future__ import annotations

import pytest

from clusterq_proto.v1 import node_pb2
from stasis_app.ari.fake import FakeAri
from stasis_app.ari.port import AriError, AriUnavailable
from tests.unit.stasis_app.harness import Node, running


def _prompt(n: Node, call_id: str, prompt: str) -> None:
    n.coord.decide(periodic_announce=node_pb2.PeriodicAnnounce(call_id=call_id, prompt=prompt))


@pytest.mark.parametrize("error", [AriError(500, "Internal Server Error"), AriUnavailable("play: timed out")])
async def test_a_prompt_asterisk_refuses_gives_the_music_back_and_the_next_prompt_plays(error: AriError) -> None:
    ari = FakeAri("a")
    async with running(ari) as n:
        cid = await n.queued_caller()
        ari.errors["play"] = [error]
        _prompt(n, cid, "sound:beep")
        await n.settle()
        c = n.app.callers[cid]
        assert not ari.playbacks
        assert ari.channels[cid].moh_class == "default" and c.moh_on, "never silence"
        assert not c.playback_id and not n.app.actions.prompts._playbacks
        _prompt(n, cid, "sound:again")
        await n.settle()
        [pb] = ari.playbacks.values()
        assert pb.media == ("sound:again",)
        ari.finish_playback(pb.id)
        await n.settle()
        assert ari.channels[cid].moh_class == "default"


async def test_music_that_cannot_be_stopped_does_not_stop_the_prompt() -> None:
    ari = FakeAri("a")
    async with running(ari) as n:
        cid = await n.queued_caller()
        ari.errors["stop_moh"] = [AriUnavailable("stop_moh: timed out")]
        _prompt(n, cid, "sound:beep")
        await n.settle()
        [pb] = ari.playbacks.values()
        assert pb.media == ("sound:beep",)
        ari.finish_playback(pb.id)
        await n.settle()
        assert ari.channels[cid].moh_class == "default" and not n.app.callers[cid].playback_id

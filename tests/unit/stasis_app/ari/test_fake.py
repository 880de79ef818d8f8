"""FakeAri behaves like Asterisk 22 for the call-flow paths (sequences checked against real captures)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from stasis_app.ari import events as ev
from stasis_app.ari.fake import Continued, FakeAri, OriginateOutcome
from stasis_app.ari.port import AriError, AriUnavailable, ChannelGone

SAMPLES = Path(__file__).parent / "samples"


class Events:
    """Reads what the fake has emitted so far (the fake emits synchronously)."""

    def __init__(self, fake: FakeAri) -> None:
        self._it = fake.events()

    async def take(self) -> list[ev.AriEvent]:
        """Every event queued until now."""
        out: list[ev.AriEvent] = []
        while True:
            try:
                out.append(await asyncio.wait_for(anext(self._it), 0.01))
            except (TimeoutError, StopAsyncIteration):
                return out


@pytest.fixture
async def fake() -> AsyncIterator[FakeAri]:
    port = FakeAri("a")
    runner = asyncio.create_task(port.run())
    await asyncio.sleep(0)
    yield port
    await port.close()
    await runner


def _shape(events: list[ev.AriEvent]) -> list[tuple[str, str | int | None]]:
    """Type plus the field a call flow branches on (the Dial status or the hangup cause)."""
    out: list[tuple[str, str | int | None]] = []
    for e in events:
        key: str | int | None = None
        if isinstance(e, ev.Dial):
            key = e.dialstatus
        elif isinstance(e, ev.ChannelDestroyed | ev.ChannelHangupRequested):
            key = e.cause
        elif isinstance(e, ev.ChannelStateChanged):
            key = e.channel.state
        out.append((type(e).__name__, key))
    return out


def _real(channel_id: str) -> list[ev.AriEvent]:
    """Decoded events of one channel from the capture on real Asterisk (its ;2 half excluded)."""
    out = []
    for line in (SAMPLES / "originate-events.jsonl").read_text().splitlines():
        raw = json.loads(line)
        chan = raw.get("channel") or raw.get("peer") or {}
        event = ev.decode(raw)
        if chan.get("id") == channel_id and event is not None:
            out.append(event)
    return out


async def test_commands_need_a_connection() -> None:
    port = FakeAri()
    with pytest.raises(AriUnavailable):
        await port.list_channels()
    await port.close()
    assert [e async for e in port.events()] == []


async def test_caller_answer_ring_moh_vars(fake: FakeAri) -> None:
    events = Events(fake)
    cid = fake.caller_enters(["q1", "priority=5"], caller_number="100", caller_name="Alice")
    await fake.ring(cid)
    await fake.answer(cid)
    await fake.answer(cid)  # already up: no second event
    await fake.start_moh(cid, "default")
    await fake.set_var(cid, "CLUSTERQ_JOINED", "12.5")
    got = await events.take()
    assert got[0] == ev.AriConnected(resync=False)
    start = got[1]
    assert isinstance(start, ev.StasisStart)
    assert start.args == ("q1", "priority=5")
    assert (start.channel.state, start.channel.caller_name, start.channel.app_data) == (
        "Ring", "Alice", "clusterq,q1,priority=5",
    )
    assert _shape(got[2:]) == [("ChannelStateChanged", "Up")]
    chan = fake.channels[cid]
    assert (chan.ringing, chan.moh_class) == (True, "default")
    assert await fake.get_var(cid, "CLUSTERQ_JOINED") == "12.5"
    assert await fake.get_var(cid, "UNSET") is None
    await fake.stop_moh(cid)
    assert fake.channels[cid].moh_class is None
    assert [c.id for c in await fake.list_channels()] == [cid]


async def test_playback_lifecycle(fake: FakeAri) -> None:
    events = Events(fake)
    cid = fake.caller_enters(["q1"])
    await fake.play(cid, ["sound:queue-youarenext", "number:3"], "pb1")
    assert fake.playbacks["pb1"].media == ("sound:queue-youarenext", "number:3")
    await fake.play(cid, ["sound:beep"], "pb2")
    fake.finish_playback("pb2")
    await fake.stop_playback("pb1")
    await fake.stop_playback("pb1")  # already finished: fine
    assert [e for e in await events.take() if isinstance(e, ev.PlaybackStarted | ev.PlaybackFinished)] == [
        ev.PlaybackStarted("pb1", cid), ev.PlaybackStarted("pb2", cid),
        ev.PlaybackFinished("pb2", cid), ev.PlaybackFinished("pb1", cid),
    ]
    assert fake.playbacks == {}


async def test_bridge_and_errors(fake: FakeAri) -> None:
    events = Events(fake)
    caller = fake.caller_enters(["q1"])
    fake.outcomes["Local/7@agents/n"] = OriginateOutcome.ANSWER
    await fake.originate(endpoint="Local/7@agents/n", channel_id="leg1", app_args=["agent", "7"])
    await events.take()
    await fake.create_bridge("br1", "clusterq-q1")
    with pytest.raises(AriError) as dup:
        await fake.create_bridge("br1")
    assert dup.value.status == 409
    await fake.add_to_bridge("br1", [caller, "leg1"])
    assert fake.bridges["br1"].channels == [caller, "leg1"]
    with pytest.raises(AriError) as missing:
        await fake.add_to_bridge("nope", [caller])
    assert missing.value.status == 404 and not isinstance(missing.value, ChannelGone)
    with pytest.raises(ChannelGone):
        await fake.add_to_bridge("br1", ["ghost"])
    await fake.destroy_bridge("br1")
    await fake.destroy_bridge("br1")  # unknown now: fine
    assert await events.take() == [
        ev.ChannelEnteredBridge("br1", caller), ev.ChannelEnteredBridge("br1", "leg1"),
        ev.ChannelLeftBridge("br1", caller), ev.ChannelLeftBridge("br1", "leg1"),
    ]


async def test_our_hangup_of_a_dialplan_caller_has_no_channel_destroyed(fake: FakeAri) -> None:
    events = Events(fake)
    cid = fake.caller_enters(["q1"])
    await fake.create_bridge("br1")
    await fake.add_to_bridge("br1", [cid])
    await fake.play(cid, ["sound:beep"], "pb1")
    await events.take()
    await fake.hangup(cid)
    assert await events.take() == [
        ev.ChannelHangupRequested(cid, 32), ev.PlaybackFinished("pb1", cid),
        ev.ChannelLeftBridge("br1", cid), ev.StasisEnd(cid),
    ]
    with pytest.raises(ChannelGone):
        await fake.answer(cid)


async def test_remote_hangup_carries_its_cause(fake: FakeAri) -> None:
    events = Events(fake)
    cid = fake.caller_enters(["q1"])
    await events.take()
    fake.caller_hangs_up(cid, cause=17)
    assert await events.take() == [ev.ChannelHangupRequested(cid, 17), ev.StasisEnd(cid)]


@pytest.mark.parametrize(
    ("outcome", "real_channel"),
    [(OriginateOutcome.BUSY, "cap-b"), (OriginateOutcome.NOANSWER, "cap-n"), (OriginateOutcome.ANSWER, "cap-a")],
)
async def test_originate_outcomes_match_real_asterisk(
    fake: FakeAri, outcome: OriginateOutcome, real_channel: str
) -> None:
    events = Events(fake)
    await events.take()
    fake.outcomes["Local/x@agents/n"] = outcome
    await fake.originate(endpoint="Local/x@agents/n", channel_id="leg", app_args=["agent", "7"], formats="ulaw")
    got = await events.take()
    real = _real(real_channel)
    if outcome is OriginateOutcome.ANSWER:
        real = real[: next(i for i, e in enumerate(real) if isinstance(e, ev.StasisStart)) + 1]
        assert isinstance(got[-1], ev.StasisStart) and got[-1].args == ("agent", "7")
        assert [c.id for c in await fake.list_channels()] == ["leg"]
    assert _shape(got) == _shape(real)


async def test_unreachable_and_cancelled_legs(fake: FakeAri) -> None:
    events = Events(fake)
    await events.take()
    fake.outcomes["Local/none@agents/n"] = OriginateOutcome.UNREACHABLE
    await fake.originate(endpoint="Local/none@agents/n", channel_id="u1", app_args=["agent"])
    assert await events.take() == [ev.ChannelDestroyed("u1", 0, "Unknown")]
    await fake.originate(endpoint="PJSIP/7@trunk", channel_id="r1", app_args=["agent"],
                         variables={"CQ_AGENT": "7"}, other_channel_id="r1b")
    assert fake.originations[-1].variables == {"CQ_AGENT": "7"}
    assert await fake.list_channels() == []  # still dialing: not in Stasis
    assert await fake.get_var("r1", "CQ_AGENT") == "7"
    await fake.hangup("r1")  # cancel the ringing leg
    assert _shape(await events.take()) == [
        ("Dial", ""), ("ChannelHangupRequested", 32), ("Dial", "NOANSWER"), ("ChannelDestroyed", 16),
    ]
    await fake.originate(endpoint="PJSIP/8@trunk", channel_id="s1", app_args=["agent"])
    fake.fail_leg("s1", OriginateOutcome.BUSY)
    assert _shape(await events.take()) == [("Dial", ""), ("Dial", "BUSY"), ("ChannelDestroyed", 17)]
    await fake.originate(endpoint="Local/ag8@clusterq-agents-test/n", channel_id="s3", app_args=["agent"])
    fake.caller_hangs_up("s3", cause=17)  # the agent phone rejects busy (seen on Asterisk 22)
    assert _shape(await events.take()) == [
        ("Dial", ""), ("ChannelHangupRequested", 17), ("Dial", "BUSY"), ("ChannelDestroyed", 17),
    ]
    with pytest.raises(ValueError):
        await fake.originate(endpoint="PJSIP/8@trunk", channel_id="s2", app_args=["a,b"])
    fake.caller_enters(["q1"], channel_id="taken")
    with pytest.raises(AriError) as dup:
        await fake.originate(endpoint="PJSIP/8@trunk", channel_id="taken", app_args=["agent"])
    assert dup.value.status == 409


async def test_continue_in_dialplan_leaves_stasis(fake: FakeAri) -> None:
    events = Events(fake)
    cid = fake.caller_enters(["q1"])
    await events.take()
    await fake.continue_in_dialplan(cid, context="exit", extension="1", priority=1)
    assert await events.take() == [ev.StasisEnd(cid)]
    assert fake.continued == [Continued(cid, "exit", "1", 1)]
    assert await fake.list_channels() == []
    with pytest.raises(ChannelGone) as gone:
        await fake.answer(cid)
    assert gone.value.status == 409


async def test_dtmf_both_ways(fake: FakeAri) -> None:
    events = Events(fake)
    cid = fake.caller_enters(["q1"])
    await events.take()
    fake.press_dtmf(cid, "5")
    await fake.send_dtmf(cid, "12")
    assert await events.take() == [ev.DtmfReceived(cid, "5", 100)]
    assert fake.channels[cid].dtmf_sent == ["12"]


async def test_drop_loses_events_and_restore_resyncs(fake: FakeAri) -> None:
    events = Events(fake)
    survivor = fake.caller_enters(["q1"])
    await events.take()
    fake.drop_connection()
    with pytest.raises(AriUnavailable):
        await fake.answer(survivor)
    newcomer = fake.caller_enters(["q1"])  # happens while disconnected: its StasisStart is lost
    gone = fake.caller_enters(["q1"])
    fake.caller_hangs_up(gone)  # so is this caller's whole life
    fake.restore_connection()
    assert await events.take() == [ev.AriDisconnected("websocket closed"), ev.AriConnected(resync=True)]
    assert {c.id for c in await fake.list_channels()} == {survivor, newcomer}


async def test_restart_asterisk_forgets_everything(fake: FakeAri) -> None:
    fake.caller_enters(["q1"])
    await fake.create_bridge("b")
    fake.restart_asterisk()
    fake.restore_connection()
    assert await fake.list_channels() == []
    assert fake.bridges == {}


async def test_application_replaced_stands_down() -> None:
    port = FakeAri()
    runner = asyncio.create_task(port.run())
    await asyncio.sleep(0)
    events = Events(port)
    port.replace_application()
    await asyncio.wait_for(runner, 1)
    assert await events.take() == [ev.AriConnected(resync=False), ev.ApplicationReplaced()]
    with pytest.raises(AriUnavailable, match="stood down"):
        await port.answer("x")
    port.restore_connection()  # no fight: stays down
    assert not port.connected
    await port.close()


async def test_close_disconnects_and_ends_the_stream() -> None:
    port = FakeAri()
    runner = asyncio.create_task(port.run())
    await asyncio.sleep(0)
    await port.close()
    await asyncio.wait_for(runner, 1)
    assert [e async for e in port.events()] == [ev.AriConnected(resync=False), ev.AriDisconnected("closed")]

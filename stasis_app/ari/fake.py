"""`FakeAri`: a working in-memory Asterisk behind `AriPort`, for unit tests of the call flow.

Two faces: the `AriPort` methods the app calls, and a driver API the test calls to play the outside
world (`caller_enters`, `caller_hangs_up`, `press_dtmf`, `finish_playback`, `answer_leg`, `fail_leg`,
`drop_connection`, `restore_connection`, `replace_application`, `restart_asterisk`, `successor`).
Tests inspect the state (`channels`, `bridges`, `playbacks`, `originations`, `continued`).

Event sequences, errors and status codes copy what Asterisk 22.10.1 did (see events.py and port.py):
our own hangup -> ChannelHangupRequested(32), [PlaybackFinished], [ChannelLeftBridge], StasisEnd,
[ChannelDestroyed(16) for originated channels]; a remote hangup the same with its cause; answer ->
ChannelStateChanged(Up); ring and MOH emit nothing. Originated legs follow `OriginateOutcome`.
The channel control queue is modelled for playbacks: ARI runs a channel's synchronous commands
(answer, set variable, add to bridge, continue) on the channel's own thread, so while a playback plays
on a channel they only return once it ended (seen on Asterisk 22: a variable set during a prompt is
applied when the prompt ends). Playback, MOH, ring, hangup and stop_playback are not held back.
Not modelled: Local `;2` halves, media timing (playbacks end when the test says so), REST timeouts.
Events raised while disconnected are lost, like on a real websocket drop.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from datetime import UTC, datetime

from stasis_app.ari import events as ev
from stasis_app.ari.fake_model import (
    Continued,
    FakeBridge,
    FakeChannel,
    FakePlayback,
    Originated,
    OriginateOutcome,
)
from stasis_app.ari.port import AriError, AriUnavailable, ChannelGone, EventStream

__all__ = [
    "Continued", "FakeAri", "FakeBridge", "FakeChannel", "FakePlayback", "OriginateOutcome", "Originated",
]

_NOT_IN_STASIS = "Channel not in Stasis application"


class FakeAri:
    """In-memory `AriPort`; see the module docstring."""

    def __init__(self, node_id: str = "fake", app: str = "clusterq", *,
                 now: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.node_id = node_id
        self.app = app
        self._now = now
        self._ids = itertools.count(1)
        self._events = EventStream()
        self._done = asyncio.Event()
        self._playback_ended = asyncio.Event()  # pulsed (set, then replaced) whenever a playback ends
        self.connected = False
        self.stood_down = False
        self._ever_connected = False
        self.channels: dict[str, FakeChannel] = {}
        self.bridges: dict[str, FakeBridge] = {}
        self.playbacks: dict[str, FakePlayback] = {}
        self.originations: list[Originated] = []
        self.continued: list[Continued] = []
        self.outcomes: dict[str, OriginateOutcome] = {}  # endpoint -> outcome applied at originate
        # operation name -> errors its next calls raise, in order (a request lost to a time-out, a
        # refusal); for answer, start_moh, set_var, continue_in_dialplan, create_bridge and add_to_bridge
        self.errors: dict[str, list[AriError]] = {}

    # ---- lifecycle (AriPort) ---------------------------------------------------------------------

    def events(self) -> AsyncIterator[ev.AriEvent]:
        """Typed events, one consumer; ends after `close()`."""
        return self._events

    async def run(self) -> None:
        """Connect (AriConnected) and stay until `close()` or a stand-down."""
        if self._done.is_set() or self.stood_down:
            return
        self.restore_connection()
        await self._done.wait()

    async def close(self) -> None:
        """Disconnect ("closed") and end `events()`."""
        if self.connected:
            self.drop_connection("closed")
        self._done.set()
        self._events.end()

    # ---- driver API: the outside world -----------------------------------------------------------

    def drop_connection(self, reason: str = "websocket closed") -> None:
        """The websocket drops: AriDisconnected; commands fail and events are lost until restored."""
        if self.connected:
            self._emit(ev.AriDisconnected(reason))
            self.connected = False

    def restore_connection(self) -> None:
        """(Re)connect: AriConnected(resync=True after the first connection)."""
        if not self.connected and not self.stood_down and not self._done.is_set():
            self.connected = True
            self._emit(ev.AriConnected(resync=self._ever_connected))
            self._ever_connected = True

    def replace_application(self) -> None:
        """Another client took our app: ApplicationReplaced, then silence; run() returns."""
        if self.connected:
            self._emit(ev.ApplicationReplaced())
        self.connected = False
        self.stood_down = True
        self._done.set()

    def restart_asterisk(self) -> None:
        """Asterisk restarts: the connection drops and every channel, bridge and playback vanishes."""
        self.drop_connection("websocket closed")
        self.channels.clear()
        self.bridges.clear()
        self.playbacks.clear()

    def caller_enters(self, args: Sequence[str], *, caller_number: str = "", caller_name: str = "",
                      channel_id: str | None = None, context: str = "clusterq-callers") -> str:
        """A channel runs `Stasis(<app>,<args>)` from the dialplan: StasisStart (state Ring)."""
        cid = channel_id or self._new_id()
        exten = args[0] if args else "s"
        chan = FakeChannel(
            cid, f"Local/{exten}@{context}-{len(self.channels):08x};2", "Ring", caller_number, caller_name,
            context, exten, ",".join((self.app, *args)), self._now(), in_stasis=True,
        )
        self.channels[cid] = chan
        self._emit(ev.StasisStart(chan.info(), tuple(args), None))
        return cid

    def caller_hangs_up(self, channel_id: str, cause: int = 16) -> None:
        """The far end hangs up (or rejects a ringing leg) with a Q.850 cause."""
        self._hangup(self._find(channel_id), cause, cause)

    def press_dtmf(self, channel_id: str, digit: str, duration_ms: int = 100) -> None:
        """The caller presses a key."""
        self._emit(ev.DtmfReceived(self._find(channel_id).id, digit, duration_ms))

    def finish_playback(self, playback_id: str) -> None:
        """A playback reaches its end."""
        playback = self.playbacks.pop(playback_id)
        self._emit(ev.PlaybackFinished(playback.id, playback.channel_id))
        self._playback_ended.set()
        self._playback_ended = asyncio.Event()

    def successor(self) -> FakeAri:
        """Another client of this same Asterisk (a restarted or replacing stasis app): it shares the
        channels, bridges and playbacks; drive the world through it from now on. Not connected yet:
        its `run()` connects (first AriConnected with resync=False, as for a fresh process).
        `originations` are shared too (Asterisk keeps an originated leg's app args)."""
        other = FakeAri(self.node_id, self.app, now=self._now)
        other.channels, other.bridges, other.playbacks = self.channels, self.bridges, self.playbacks
        other.originations = self.originations
        other._ids = self._ids
        return other

    def answer_leg(self, channel_id: str) -> None:
        """The originated leg answers: Up, Dial(ANSWER), StasisStart with the originate's app args."""
        chan = self._find(channel_id)
        chan.state = "Up"
        self._emit(ev.ChannelStateChanged(chan.info()))
        self._emit(ev.Dial(chan.id, "ANSWER", chan.exten, None))
        chan.in_stasis = True
        args = next(o.app_args for o in reversed(self.originations) if o.channel_id == chan.id)
        chan.app_data = ",".join((self.app, *args))
        self._emit(ev.StasisStart(chan.info(), args, None))

    def fail_leg(self, channel_id: str, outcome: OriginateOutcome) -> None:
        """The originated leg fails as `outcome` (the sequences in events.py)."""
        chan = self.channels.pop(self._find(channel_id).id)
        local = chan.name.startswith("Local/")
        if outcome in (OriginateOutcome.BUSY, OriginateOutcome.CONGESTION):
            busy = outcome is OriginateOutcome.BUSY
            self._emit(ev.Dial(chan.id, "BUSY" if busy else "CONGESTION", chan.exten, None))
            cause = 0 if local else (17 if busy else 34)  # Local: seen on Asterisk 22; SIP: assumed
            self._emit(ev.ChannelDestroyed(chan.id, cause, _CAUSE_TEXT.get(cause, "Unknown")))
        elif outcome is OriginateOutcome.NOANSWER:
            self._emit(ev.ChannelDestroyed(chan.id, 19, "User alerting, no answer"))
        elif outcome is OriginateOutcome.UNREACHABLE:
            self._emit(ev.ChannelDestroyed(chan.id, 0, "Unknown"))
        else:
            raise ValueError(f"not a failure: {outcome}")

    # ---- AriPort commands ------------------------------------------------------------------------

    async def answer(self, channel_id: str) -> None:
        """Answer: ChannelStateChanged(Up) unless already up."""
        self._injected("answer")
        chan = await self._control(channel_id)
        if chan.state != "Up":
            chan.state = "Up"
            self._emit(ev.ChannelStateChanged(chan.info()))

    async def ring(self, channel_id: str) -> None:
        """Ringing indication (no event)."""
        self._stasis(channel_id).ringing = True

    async def hangup(self, channel_id: str, reason: str = "normal") -> None:
        """Hang up any channel (in Stasis or still dialing)."""
        self._hangup(self._get(channel_id), 32, _REASON_CAUSES.get(reason, 16))

    async def start_moh(self, channel_id: str, moh_class: str) -> None:
        """Music on hold on (no event)."""
        self._injected("start_moh")
        self._stasis(channel_id).moh_class = moh_class

    async def stop_moh(self, channel_id: str) -> None:
        """Music on hold off (no event)."""
        self._stasis(channel_id).moh_class = None

    async def play(self, channel_id: str, media: Sequence[str], playback_id: str) -> None:
        """Start a playback: PlaybackStarted; it runs until finish_playback/stop_playback/hangup."""
        chan = self._stasis(channel_id)
        self.playbacks[playback_id] = FakePlayback(playback_id, chan.id, tuple(media))
        self._emit(ev.PlaybackStarted(playback_id, chan.id))

    async def stop_playback(self, playback_id: str) -> None:
        """Stop a playback (PlaybackFinished); an unknown one is fine."""
        self._check_connected("stop_playback")
        if playback_id in self.playbacks:
            self.finish_playback(playback_id)

    async def set_var(self, channel_id: str, name: str, value: str) -> None:
        """Set a channel variable (waits behind a playback of the channel)."""
        self._injected("set_var")
        (await self._control(channel_id)).variables[name] = value

    async def get_var(self, channel_id: str, name: str) -> str | None:
        """Read a channel variable (any channel); None when unset or empty."""
        return self._get(channel_id).variables.get(name) or None

    async def continue_in_dialplan(self, channel_id: str, context: str | None = None,
                                   extension: str | None = None, priority: int | None = None) -> None:
        """Leave Stasis for the dialplan: [ChannelLeftBridge], StasisEnd; the channel lives on."""
        self._injected("continue_in_dialplan")
        chan = await self._control(channel_id)
        self.continued.append(Continued(chan.id, context, extension, priority))
        self._leave_bridge(chan)
        chan.in_stasis = False
        chan.app_data = ""
        self._emit(ev.StasisEnd(chan.id))

    async def originate(self, *, endpoint: str, channel_id: str, app_args: Sequence[str], caller_id: str = "",
                        timeout: int = 30,  # the ARI dial timeout in seconds
                        variables: Mapping[str, str] | None = None, formats: str | None = None,
                        other_channel_id: str | None = None) -> None:
        """Create a dialing leg (Dial "") and apply `outcomes[endpoint]` (default PENDING)."""
        self._check_connected("originate")
        if any("," in arg for arg in app_args):
            raise ValueError("app_args must not contain commas (ARI splits appArgs on them)")
        if channel_id in self.channels:
            raise AriError(409, "Channel with given unique ID already exists")
        request = Originated(endpoint, channel_id, tuple(app_args), caller_id, timeout,
                             dict(variables or {}), formats, other_channel_id)
        self.originations.append(request)
        tech, _, resource = endpoint.partition("/")
        exten = resource.split("@")[0]
        half = ";1" if tech == "Local" else ""
        name = f"{tech}/{resource.removesuffix('/n')}-{len(self.channels):08x}{half}"
        chan = FakeChannel(channel_id, name, "Down", exten=exten, creation_time=self._now(), originated=True,
                           variables=dict(variables or {}))
        self.channels[channel_id] = chan
        outcome = self.outcomes.get(endpoint, OriginateOutcome.PENDING)
        if outcome is not OriginateOutcome.UNREACHABLE:
            self._emit(ev.Dial(chan.id, "", resource, None))
        if outcome is OriginateOutcome.ANSWER:
            self.answer_leg(channel_id)
        elif outcome is not OriginateOutcome.PENDING:
            self.fail_leg(channel_id, outcome)

    async def create_bridge(self, bridge_id: str, name: str = "", kind: str = "mixing") -> None:
        """Create a bridge; an existing id is 409."""
        self._injected("create_bridge")
        self._check_connected("create_bridge")
        if bridge_id in self.bridges:
            raise AriError(409, f"Bridge with id '{bridge_id}' already exists")
        self.bridges[bridge_id] = FakeBridge(bridge_id, name, kind=kind)

    async def start_bridge_moh(self, bridge_id: str, moh_class: str) -> None:
        """Music for everyone in a holding bridge (what its members hear: `moh_class`)."""
        self._check_connected("start_bridge_moh")
        bridge = self.bridges.get(bridge_id)
        if bridge is None:
            raise AriError(404, "Bridge not found")
        bridge.moh_class = moh_class
        for cid in bridge.channels:
            self.channels[cid].moh_class = moh_class

    async def remove_from_bridge(self, bridge_id: str, channel_id: str) -> None:
        """Take a channel out of a bridge: ChannelLeftBridge; not in it: nothing (ARI's 422)."""
        self._check_connected("remove_from_bridge")
        if bridge_id not in self.bridges:
            raise AriError(404, "Bridge not found")
        chan = self.channels.get(channel_id)
        if chan is None:
            raise ChannelGone(channel_id, 400, "Channel not found")
        if chan.bridge_id == bridge_id:
            self._leave_bridge(chan)

    async def add_to_bridge(self, bridge_id: str, channel_ids: Sequence[str], *, background: bool = False) -> None:
        """Move channels into the bridge: [ChannelLeftBridge old], ChannelEnteredBridge each."""
        self._injected("add_to_bridge")
        self._check_connected("add_to_bridge")
        bridge = self.bridges.get(bridge_id)
        if bridge is None:
            raise AriError(404, "Bridge not found")
        ids = ",".join(channel_ids)
        for cid in channel_ids:
            await self._after_playbacks(cid)
        chans = [self.channels.get(cid) for cid in channel_ids]
        if any(chan is None for chan in chans):
            raise ChannelGone(ids, 400, "Channel not found")
        if any(not chan.in_stasis for chan in chans if chan is not None):
            raise ChannelGone(ids, 422, _NOT_IN_STASIS)
        for chan in (c for c in chans if c is not None and c.bridge_id != bridge_id):
            self._leave_bridge(chan)
            chan.bridge_id = bridge_id
            bridge.channels.append(chan.id)
            if bridge.moh_class is not None:  # it hears the holding bridge's music
                chan.moh_class = bridge.moh_class
            self._emit(ev.ChannelEnteredBridge(bridge_id, chan.id))

    async def destroy_bridge(self, bridge_id: str) -> None:
        """Destroy a bridge (ChannelLeftBridge for each member); an unknown one is fine."""
        self._check_connected("destroy_bridge")
        bridge = self.bridges.get(bridge_id)
        for cid in list(bridge.channels if bridge else ()):
            self._leave_bridge(self.channels[cid])
        self.bridges.pop(bridge_id, None)

    async def list_channels(self) -> list[ev.ChannelInfo]:
        """Channels in our Stasis app."""
        self._check_connected("list_channels")
        return [chan.info() for chan in self.channels.values() if chan.in_stasis]

    async def list_bridges(self) -> list[ev.BridgeInfo]:
        """Every bridge with its members in join order."""
        self._check_connected("list_bridges")
        return [ev.BridgeInfo(b.id, b.name, tuple(b.channels)) for b in self.bridges.values()]

    async def send_dtmf(self, channel_id: str, digits: str) -> None:
        """Send DTMF to the channel (recorded in `dtmf_sent`)."""
        self._stasis(channel_id).dtmf_sent.append(digits)

    # ---- internals -------------------------------------------------------------------------------

    def _emit(self, event: ev.AriEvent) -> None:
        if self.connected:  # a dropped websocket loses events; Asterisk does not replay them
            self._events.put(event)

    def _new_id(self) -> str:
        return f"{self.node_id}-1700000000.{next(self._ids)}"

    def _injected(self, operation: str) -> None:
        pending = self.errors.get(operation)
        if pending:
            raise pending.pop(0)

    def _check_connected(self, operation: str) -> None:
        if not self.connected:
            raise AriUnavailable(f"{operation}: {'stood down' if self.stood_down else 'not connected'}")

    def _find(self, channel_id: str) -> FakeChannel:
        """Driver-side lookup: the world does not care about our connection."""
        chan = self.channels.get(channel_id)
        if chan is None:
            raise KeyError(f"no channel {channel_id!r} in the fake")
        return chan

    def _get(self, channel_id: str) -> FakeChannel:
        self._check_connected("channel operation")
        chan = self.channels.get(channel_id)
        if chan is None:
            raise ChannelGone(channel_id)
        return chan

    async def _after_playbacks(self, channel_id: str) -> None:
        while any(p.channel_id == channel_id for p in self.playbacks.values()):
            await self._playback_ended.wait()

    async def _control(self, channel_id: str) -> FakeChannel:
        """A synchronous command: it runs once no playback plays on the channel any more."""
        self._stasis(channel_id)
        await self._after_playbacks(channel_id)
        return self._stasis(channel_id)

    def _stasis(self, channel_id: str) -> FakeChannel:
        chan = self._get(channel_id)
        if not chan.in_stasis:
            raise ChannelGone(channel_id, 409, _NOT_IN_STASIS)
        return chan

    def _leave_bridge(self, chan: FakeChannel) -> None:
        bridge = self.bridges.get(chan.bridge_id or "")
        if bridge is not None:
            bridge.channels.remove(chan.id)
            if bridge.moh_class is not None:  # out of the holding bridge: its music is gone
                chan.moh_class = None
            self._emit(ev.ChannelLeftBridge(bridge.id, chan.id))
        chan.bridge_id = None

    def _hangup(self, chan: FakeChannel, request_cause: int, cause: int) -> None:
        del self.channels[chan.id]
        self._emit(ev.ChannelHangupRequested(chan.id, request_cause))
        if chan.originated and not chan.in_stasis:  # a leg still ringing: its dial ends here
            self._emit(ev.Dial(chan.id, _DIAL_STATUS.get(cause, "NOANSWER"), chan.exten, None))
        for playback in [p for p in self.playbacks.values() if p.channel_id == chan.id]:
            self.finish_playback(playback.id)
        self._leave_bridge(chan)
        if chan.in_stasis:
            self._emit(ev.StasisEnd(chan.id))
        if chan.originated:
            self._emit(ev.ChannelDestroyed(chan.id, cause, _CAUSE_TEXT.get(cause, "Unknown")))


_DIAL_STATUS = {17: "BUSY", 34: "CONGESTION"}  # what Dial reports when a ringing leg ends with a cause
_REASON_CAUSES = {"normal": 16, "busy": 17, "congestion": 34, "no_answer": 19, "rejected": 21}
_CAUSE_TEXT = {16: "Normal Clearing", 17: "User busy", 19: "User alerting, no answer", 21: "Call Rejected",
               34: "Circuit/channel congestion"}

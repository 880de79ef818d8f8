"""`FakeAri`: a working in-memory Asterisk behind `AriPort`, for unit tests of the call flow.

Two faces: the `AriPort` methods the app calls, and a driver API the test calls to play the outside
world (`caller_enters`, `caller_hangs_up`, `press_dtmf`, `finish_playback`, `answer_leg`, `fail_leg`,
`drop_connection`, `restore_connection`, `replace_application`, `restart_asterisk`, `successor`).
Tests inspect the state (`channels`, `bridges`, `playbacks`, `originations`, `continued`); device
state: `set_device_state` drives it, `devices`, `device_subscriptions`, `device_requests` show it.
The state and the driver API are `FakeAsterisk` (fake_asterisk.py); `FakeAri` adds the `AriPort` face.

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

from collections.abc import AsyncIterator, Mapping, Sequence

from stasis_app.ari import events as ev
from stasis_app.ari.fake_asterisk import FakeAsterisk
from stasis_app.ari.fake_model import (
    Continued,
    FakeBridge,
    FakeChannel,
    FakePlayback,
    Originated,
    OriginateOutcome,
)
from stasis_app.ari.port import AriError, AriUnavailable, ChannelGone, check_device_name

__all__ = [
    "Continued", "FakeAri", "FakeBridge", "FakeChannel", "FakePlayback", "OriginateOutcome", "Originated",
]

_NOT_IN_STASIS = "Channel not in Stasis application"


class FakeAri(FakeAsterisk):
    """In-memory `AriPort`; see the module docstring."""

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

    # ---- driver API: the outside world (the rest is in FakeAsterisk) -----------------------------

    def successor(self) -> FakeAri:
        """Another client of this same Asterisk (a restarted or replacing stasis app): it shares the
        channels, bridges and playbacks; drive the world through it from now on. Not connected yet:
        its `run()` connects (first AriConnected with resync=False, as for a fresh process).
        `originations` are shared too (Asterisk keeps an originated leg's app args)."""
        other = FakeAri(self.node_id, self.app, now=self._now)
        other.channels, other.bridges, other.playbacks = self.channels, self.bridges, self.playbacks
        other.originations = self.originations
        other.devices, other.device_subscriptions = self.devices, self.device_subscriptions
        other._ids = self._ids
        return other

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
        self._injected("stop_moh")
        self._stasis(channel_id).moh_class = None

    async def play(self, channel_id: str, media: Sequence[str], playback_id: str) -> None:
        """Start a playback: PlaybackStarted; it runs until finish_playback/stop_playback/hangup."""
        self._injected("play")
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

    async def subscribe_device(self, device: str) -> None:
        """Subscribe our app to the device's state changes (idempotent)."""
        check_device_name(device)
        self._check_connected("subscribe_device")
        self.device_requests.append(("subscribe", device))
        self._injected("subscribe_device")
        self.device_subscriptions.add(device)

    async def unsubscribe_device(self, device: str) -> None:
        """Drop the subscription (one that does not exist is fine)."""
        check_device_name(device)
        self._check_connected("unsubscribe_device")
        self.device_requests.append(("unsubscribe", device))
        self._injected("unsubscribe_device")
        self.device_subscriptions.discard(device)

    async def device_state(self, device: str) -> str:
        """The device's state when asked; INVALID for a device never set (as Asterisk answers).
        While `device_gets_open` is cleared the answer is held (in transit: it may be older than
        events that arrive meanwhile)."""
        self._check_connected("device_state")
        self.device_requests.append(("get", device))
        self._injected("device_state")
        state = self.devices.get(device, "INVALID")
        self.device_gets_in_flight += 1
        self.device_gets_max = max(self.device_gets_max, self.device_gets_in_flight)
        try:
            await self.device_gets_open.wait()
        finally:
            self.device_gets_in_flight -= 1
        self._check_connected("device_state")
        return state

    # ---- internals: the port's checks ------------------------------------------------------------

    def _injected(self, operation: str) -> None:
        pending = self.errors.get(operation)
        if pending:
            raise pending.pop(0)

    def _check_connected(self, operation: str) -> None:
        if not self.connected:
            raise AriUnavailable(f"{operation}: {'stood down' if self.stood_down else 'not connected'}")

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


_REASON_CAUSES = {"normal": 16, "busy": 17, "congestion": 34, "no_answer": 19, "rejected": 21}

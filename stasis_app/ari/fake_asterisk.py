"""`FakeAsterisk`, the in-memory Asterisk under `FakeAri` (fake.py): its channels, bridges and
playbacks, the driver API a test calls to play the outside world, and the events Asterisk emits when
that world changes (the sequences are described in fake.py's docstring).

fake.py adds the other face, the `AriPort` methods the app calls, with their checks (connected? in
Stasis? queued behind a playback?) and injected errors, and `successor()`, which makes another
`FakeAri`. The world is a module of its own because it is what a test scripts, while the port is what
the app sees. Tests use `FakeAri`, never this class alone.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable, Sequence
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
from stasis_app.ari.port import AriError, EventStream

__all__ = ["FakeAsterisk"]


class FakeAsterisk:
    """The outside world of `FakeAri`: its state and the driver API (see the module docstring)."""

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
        # refusal); for answer, start_moh, set_var, continue_in_dialplan, create_bridge, add_to_bridge,
        # subscribe_device, unsubscribe_device and device_state
        self.errors: dict[str, list[AriError]] = {}
        # Device states (a device not listed is INVALID, as on Asterisk), the app's device
        # subscriptions (kept over a websocket drop, lost when Asterisk restarts), and every device
        # request made, in order: ("subscribe" | "unsubscribe" | "get", device).
        self.devices: dict[str, str] = {}
        self.device_subscriptions: set[str] = set()
        self.device_requests: list[tuple[str, str]] = []
        # While cleared, device_state() waits (tests hold GETs in flight); the most held at once.
        self.device_gets_open = asyncio.Event()
        self.device_gets_open.set()
        self.device_gets_in_flight = 0
        self.device_gets_max = 0

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
        self.device_subscriptions.clear()

    def set_device_state(self, device: str, state: str) -> None:
        """A device changes state: DeviceStateChanged if our app subscribed to it."""
        self.devices[device] = state
        if device in self.device_subscriptions:
            self._emit(ev.DeviceStateChanged(device, state))

    def caller_enters(self, args: Sequence[str], *, caller_number: str = "", caller_name: str = "",
                      channel_id: str | None = None, context: str = "clusterq-callers",
                      name: str | None = None) -> str:
        """A channel runs `Stasis(<app>,<args>)` from the dialplan: StasisStart (state Ring). Its name
        is a Local channel's unless `name` is given (e.g. "PJSIP/alice-0000001a")."""
        cid = channel_id or self._new_id()
        exten = args[0] if args else "s"
        chan = FakeChannel(
            cid, name or f"Local/{exten}@{context}-{len(self.channels):08x};2", "Ring", caller_number, caller_name,
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

    # ---- internals: what the world does ----------------------------------------------------------

    def _emit(self, event: ev.AriEvent) -> None:
        if self.connected:  # a dropped websocket loses events; Asterisk does not replay them
            self._events.put(event)

    def _new_id(self) -> str:
        return f"{self.node_id}-1700000000.{next(self._ids)}"

    def _find(self, channel_id: str) -> FakeChannel:
        """Driver-side lookup: the world does not care about our connection."""
        chan = self.channels.get(channel_id)
        if chan is None:
            raise KeyError(f"no channel {channel_id!r} in the fake")
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
_CAUSE_TEXT = {16: "Normal Clearing", 17: "User busy", 19: "User alerting, no answer", 21: "Call Rejected",
               34: "Circuit/channel congestion"}

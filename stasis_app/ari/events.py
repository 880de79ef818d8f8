"""Typed ARI events: frozen values decoded once at the edge, plus the connection markers.

`decode(raw)` turns one websocket JSON object into an `AriEvent`, or None for types the app does not
use (logged at debug) and for malformed events (logged at warning; the reader never dies on input).

Sequences observed on Asterisk 22.10.1 (`subscribeAll=false`, one app), the contract the fake copies:

* Caller via dialplan `Stasis(app,q1)`: StasisStart(args=("q1",), state Ring). `answer` ->
  ChannelStateChanged(Up); `ring`, MOH start/stop -> no event. `play` -> PlaybackStarted, then
  PlaybackFinished (also after `stop_playback`, and when the channel hangs up mid-playback).
  Caller hangs up -> ChannelHangupRequested(cause), [PlaybackFinished], [ChannelLeftBridge], StasisEnd;
  NO ChannelDestroyed (the app's subscription ends with Stasis). `continue_in_dialplan` -> StasisEnd.
* Originated leg (`originate`, app=ours): Asterisk subscribes the app to the new channel AND to a Local
  channel's `;2` peer before dialing (res/ari/resource_channels.c, ari_channels_handle_originate_with_id),
  so no explicit subscription is needed:
    answer    Dial(""), ChannelStateChanged(Up), Dial("ANSWER"), StasisStart(state Up)
    busy      Dial(""), Dial("BUSY"), ChannelDestroyed(cause 0)         (Local/ to Busy(); a SIP 486
    congested Dial(""), Dial("CONGESTION"), ChannelDestroyed(cause 0)   should give 17 / 34: unverified)
    rejected  Dial(""), ChannelHangupRequested(21), Dial("NOANSWER"), ChannelDestroyed(21)
    far end hangs up busy (e.g. the agent phone rejects with cause 17):
              Dial(""), ChannelHangupRequested(17), Dial("BUSY"), ChannelDestroyed(17)
    no answer Dial(""), ChannelDestroyed(cause 19) after `timeout` s, with no final Dial status
    no exten  ChannelDestroyed(cause 0) for `<id>;2` and `<id>`, no Dial at all
    SIP peer not answering (no listener): Dial(""), ChannelDestroyed(19) after `timeout` s
    we hang up a ringing leg: ChannelHangupRequested(32), Dial("NOANSWER"), ChannelDestroyed(16)
  i.e. a failed leg is a ChannelDestroyed for an originated id that never had StasisStart; its reason is
  the last non-empty Dial.dialstatus if any, else the cause (`failure_reason`). After StasisStart an
  originated leg ends with StasisEnd then ChannelDestroyed. Events of `<id>;2` halves also arrive.
* Device state (`subscribe_device`): DeviceStateChanged {"device_state": {"name", "state"}} for each
  change of a subscribed device, often twice in a row with the same state (both halves of a Local
  call change it). A Local agent "Local/alice@ctx/n" is the device "Local/alice@ctx": INUSE as soon
  as a channel to it rings (Local never says RINGING) and while it talks, NOT_INUSE after its hangup.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from stasis_app.ari.app_args import split_app_args

__all__ = [
    "ApplicationReplaced",
    "AriConnected",
    "AriDisconnected",
    "AriEvent",
    "BridgeInfo",
    "ChannelDestroyed",
    "ChannelEnteredBridge",
    "ChannelHangupRequested",
    "ChannelInfo",
    "ChannelLeftBridge",
    "ChannelStateChanged",
    "DeviceStateChanged",
    "Dial",
    "DtmfReceived",
    "PlaybackFinished",
    "PlaybackStarted",
    "StasisEnd",
    "StasisStart",
    "bridge_info",
    "channel_info",
    "decode",
    "failure_reason",
    "in_stasis_app",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ChannelInfo:
    """A snapshot of one channel as ARI reported it."""

    id: str
    name: str
    state: str
    caller_number: str
    caller_name: str
    dialplan_context: str
    dialplan_exten: str
    app_data: str
    creation_time: datetime


@dataclass(frozen=True)
class BridgeInfo:
    """A snapshot of one bridge: its id, name and member channels (`GET /bridges`)."""

    id: str
    name: str
    channel_ids: tuple[str, ...]


@dataclass(frozen=True)
class StasisStart:
    """A channel entered our Stasis app; `args` are the Stasis() arguments after the app name."""

    channel: ChannelInfo
    args: tuple[str, ...]
    replace_channel_id: str | None


@dataclass(frozen=True)
class StasisEnd:
    """A channel left our Stasis app (hung up or continued in the dialplan)."""

    channel_id: str


@dataclass(frozen=True)
class ChannelStateChanged:
    """A channel's state changed (e.g. Ring -> Up)."""

    channel: ChannelInfo


@dataclass(frozen=True)
class ChannelHangupRequested:
    """A hangup was requested on the channel with a Q.850 cause."""

    channel_id: str
    cause: int


@dataclass(frozen=True)
class ChannelDestroyed:
    """A channel is gone (seen only for subscribed channels, e.g. originated legs)."""

    channel_id: str
    cause: int
    cause_txt: str


@dataclass(frozen=True)
class DtmfReceived:
    """The channel received a DTMF digit."""

    channel_id: str
    digit: str
    duration_ms: int


@dataclass(frozen=True)
class PlaybackStarted:
    """A playback began; `target_channel_id` is None for bridge playbacks."""

    playback_id: str
    target_channel_id: str | None


@dataclass(frozen=True)
class PlaybackFinished:
    """A playback ended (done, stopped, or its channel went away)."""

    playback_id: str
    target_channel_id: str | None


@dataclass(frozen=True)
class ChannelEnteredBridge:
    """A channel joined a bridge."""

    bridge_id: str
    channel_id: str


@dataclass(frozen=True)
class ChannelLeftBridge:
    """A channel left a bridge."""

    bridge_id: str
    channel_id: str


@dataclass(frozen=True)
class Dial:
    """Dial progress of an outgoing channel: `dialstatus` is "" (started), ANSWER, BUSY, NOANSWER, ..."""

    channel_id: str
    dialstatus: str
    dialstring: str
    caller_channel_id: str | None


@dataclass(frozen=True)
class DeviceStateChanged:
    """A subscribed device changed state; `state` is Asterisk's name (NOT_INUSE, INUSE, RINGING, ...)."""

    device: str
    state: str


@dataclass(frozen=True)
class AriConnected:
    """The event websocket is up; `resync` is True after a reconnect (events may have been missed)."""

    resync: bool


@dataclass(frozen=True)
class AriDisconnected:
    """The connection is lost (websocket closed, Asterisk stalled or down, or close()); a reconnect
    follows unless the port is closing."""

    reason: str


@dataclass(frozen=True)
class ApplicationReplaced:
    """Another client registered our app on this Asterisk; this port stands down for good."""


AriEvent = (
    StasisStart
    | StasisEnd
    | ChannelStateChanged
    | ChannelHangupRequested
    | ChannelDestroyed
    | DtmfReceived
    | PlaybackStarted
    | PlaybackFinished
    | ChannelEnteredBridge
    | ChannelLeftBridge
    | Dial
    | DeviceStateChanged
    | AriConnected
    | AriDisconnected
    | ApplicationReplaced
)


def in_stasis_app(app_name: str, app_data: str, app: str) -> bool:
    """True when a channel's current dialplan application is `Stasis(<app>[,args])`.

    Checked on Asterisk 22: channels in Stasis report `dialplan.app_name == "Stasis"` and `app_data`
    `"<app>,<args>"` (or `"<app>"`), whether they came from the dialplan or from an originate; an
    originated leg still dialing shows `AppDial2`, and one that continued in the dialplan shows its
    new application.
    """
    return app_name == "Stasis" and split_app_args(app_data)[0] == app


def failure_reason(last_dialstatus: str | None, cause: int) -> str:
    """Why an originated leg failed: the last non-empty Dial status, else one derived from the cause."""
    if last_dialstatus and last_dialstatus != "ANSWER":
        return last_dialstatus
    return {17: "BUSY", 18: "NOANSWER", 19: "NOANSWER", 21: "NOANSWER", 34: "CONGESTION"}.get(
        cause, "CHANUNAVAIL"
    )


def channel_info(raw: Mapping[str, Any]) -> ChannelInfo:
    """Decode an ARI `Channel` JSON object."""
    caller = raw.get("caller") or {}
    dialplan = raw.get("dialplan") or {}
    return ChannelInfo(
        id=str(raw["id"]),
        name=str(raw.get("name", "")),
        state=str(raw.get("state", "")),
        caller_number=str(caller.get("number", "")),
        caller_name=str(caller.get("name", "")),
        dialplan_context=str(dialplan.get("context", "")),
        dialplan_exten=str(dialplan.get("exten", "")),
        app_data=str(dialplan.get("app_data", "")),
        creation_time=datetime.fromisoformat(str(raw["creationtime"])),
    )


def bridge_info(raw: Mapping[str, Any]) -> BridgeInfo:
    """Decode an ARI `Bridge` JSON object."""
    return BridgeInfo(id=str(raw["id"]), name=str(raw.get("name", "")),
                      channel_ids=tuple(str(c) for c in raw.get("channels", ())))


def _target_channel(playback: Mapping[str, Any]) -> str | None:
    kind, _, ident = str(playback.get("target_uri", "")).partition(":")
    return ident if kind == "channel" and ident else None


def _stasis_start(raw: Mapping[str, Any]) -> AriEvent:
    replace = raw.get("replace_channel")
    return StasisStart(
        channel=channel_info(raw["channel"]),
        args=tuple(str(a) for a in raw.get("args", ())),
        replace_channel_id=str(replace["id"]) if replace else None,
    )


def _dial(raw: Mapping[str, Any]) -> AriEvent:
    caller = raw.get("caller")
    return Dial(
        channel_id=str(raw["peer"]["id"]),
        dialstatus=str(raw.get("dialstatus", "")),
        dialstring=str(raw.get("dialstring", "")),
        caller_channel_id=str(caller["id"]) if caller else None,
    )


def _cid(raw: Mapping[str, Any]) -> str:
    return str(raw["channel"]["id"])


_DECODERS: dict[str, Callable[[Mapping[str, Any]], AriEvent]] = {
    "StasisStart": _stasis_start,
    "StasisEnd": lambda r: StasisEnd(_cid(r)),
    "ChannelStateChange": lambda r: ChannelStateChanged(channel_info(r["channel"])),
    "ChannelHangupRequest": lambda r: ChannelHangupRequested(_cid(r), int(r.get("cause", 0))),
    "ChannelDestroyed": lambda r: ChannelDestroyed(_cid(r), int(r["cause"]), str(r.get("cause_txt", ""))),
    "ChannelDtmfReceived": lambda r: DtmfReceived(_cid(r), str(r["digit"]), int(r.get("duration_ms", 0))),
    "PlaybackStarted": lambda r: PlaybackStarted(str(r["playback"]["id"]), _target_channel(r["playback"])),
    "PlaybackFinished": lambda r: PlaybackFinished(str(r["playback"]["id"]), _target_channel(r["playback"])),
    "ChannelEnteredBridge": lambda r: ChannelEnteredBridge(str(r["bridge"]["id"]), _cid(r)),
    "ChannelLeftBridge": lambda r: ChannelLeftBridge(str(r["bridge"]["id"]), _cid(r)),
    "Dial": _dial,
    "DeviceStateChanged": lambda r: DeviceStateChanged(str(r["device_state"]["name"]),
                                                       str(r["device_state"]["state"])),
    "ApplicationReplaced": lambda r: ApplicationReplaced(),
}


def decode(raw: Mapping[str, Any]) -> AriEvent | None:
    """Decode one ARI websocket event; None for unused types (debug log) or malformed ones (warning)."""
    kind = raw.get("type")
    decoder = _DECODERS.get(kind) if isinstance(kind, str) else None
    if decoder is None:
        log.debug("dropping ARI event of type %r", kind)
        return None
    try:
        return decoder(raw)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        log.warning("dropping malformed ARI %s event: %r", kind, exc)
        return None

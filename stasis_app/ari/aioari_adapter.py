"""The real `AriPort`: aioari 0.10.2 loads the Swagger API, reads the event websocket and sends every
REST request; the adapter adds what aioari lacks: reconnect with jittered backoff, resync markers, a
heartbeat, error mapping and a header-authenticated, pooled transport. Its three modules: the commands and
their error mapping (here), the websocket connection and its upkeep (aioari_connection.py) and the HTTP
transport (transport.py).

Evidence on aioari 0.10.2 / aioswagger11 0.9.1 (source in site-packages, behaviour on Asterisk 22.10.1):

1. No reconnect: `Client.run()` just returns when the websocket ends (EOF after `core stop now`, or a
   close frame). -> `run()` (aioari_connection.py) redials with `backoff_delay()` and emits the markers.
2. No stall detection: aioswagger's `ws_connect` sets no heartbeat or receive timeout, so
   `ws.receive()` waits forever on a SIGSTOPped Asterisk (TCP stays open and silent). -> a heartbeat
   sends `GET /asterisk/ping` (aioari's Swagger operation) every `heartbeat_interval` s; no answer
   within `heartbeat_timeout` s is a disconnect. Bound: interval + timeout (measured 3.00-3.01 s with
   the 1 s / 2 s defaults); reconnect 0.02-0.4 s after SIGCONT.
3. `aioari.connect()` puts `api_key=user:password` in the query string of every URL (secret in URLs,
   error texts, Asterisk logs); its `BasicAuthenticator` cannot authenticate the websocket (its
   `ws_connect` applies it to query params). -> `aioari.Client` gets our HTTP client object (its
   `http_client` argument) sending an `Authorization` header; no secret ever appears in a URL.
4. aioswagger's `ws_connect` joins query params unencoded, and aiohttp waits up to 10 s for a close
   handshake a stalled peer never sends. -> our `ws_connect` lets aiohttp encode, bounds that to 1 s.
5. aioari's model layer logs INFO "No mapping for ..." for every response without a model (ping,
   variables) and turns HTTP errors into `aiohttp.web_exceptions`. -> requests use
   `client.swagger.<resource>.<operation>` (aioari's operation objects without model promotion); our
   transport (transport.py) raises `HttpStatus`, mapped here to the port.py errors; nothing leaks.
6. One pool of 10 connections (Asterisk listens with backlog 10) for commands, shared out by
   `RequestSlots` (urgent requests first, background ones on at most 6; the wait for a connection is
   not part of the time-out); the heartbeat has its own connection so a busy pool cannot fake a stall.
   aioari awaits listeners inside its reader; ours only decodes and enqueues, so the reader never
   blocks (Asterisk drops slow websockets).
No request bypasses aioari's operations: aiohttp is only the transport aioari itself uses.
Measured on the test machine: connect (13 Swagger files + websocket) 40 ms; websocket cut ->
AriDisconnected 2 ms -> AriConnected(resync=True) 0.15-0.25 s; Asterisk restart -> reconnect 0.4-0.6 s
after ARI answers again (503 "not booted" / 404 while modules load count as failed attempts).
"""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import aiohttp

from stasis_app.ari.aioari_connection import AioAriConnection, _brief
from stasis_app.ari.events import BridgeInfo, ChannelInfo, bridge_info, channel_info, in_stasis_app
from stasis_app.ari.port import AriError, AriSettings, AriUnavailable, ChannelGone, check_device_name
from stasis_app.ari.slots import RequestSlots
from stasis_app.ari.transport import POOL_SIZE, HttpStatus

__all__ = ["AioAriAdapter"]

# Requests nobody waits for (see slots.py): they may hold at most 6 of the 10 connections, and they
# may take longer, since a variable set during a prompt is only answered when the prompt ends.
_BACKGROUND = frozenset({"setChannelVar", "getChannelVar", "playWithId", "startMoh"})
_BACKGROUND_SLOTS = 6
_BACKGROUND_PATIENCE = 4.0  # x request_timeout


class AioAriAdapter(AioAriConnection):
    """`AriPort` over aioari: one websocket reader, a heartbeat, reconnect with backoff, typed events.
    The connection (events, run, close) is inherited from `AioAriConnection`; the commands are here."""

    def __init__(self, settings: AriSettings, *, rand: Callable[[], float] = random.random) -> None:
        super().__init__(settings, rand=rand)
        self._slots = RequestSlots(POOL_SIZE, _BACKGROUND_SLOTS)  # see slots.py

    # ---- commands --------------------------------------------------------------------------------

    async def _call(self, resource: str, operation: str, gone_id: str | None = None, /, *,
                    background: bool = False, **params: Any) -> Any:
        """Run one aioari Swagger operation; return its JSON (None when empty); map every failure.
        With `gone_id`, a 404 or "not in Stasis" (409/422) answer becomes ChannelGone(gone_id)."""
        client = self._client
        if client is None:
            raise AriUnavailable(f"{operation}: {'stood down' if self._stood_down else 'not connected'}")
        params = {name: value for name, value in params.items() if value is not None}  # aioswagger: no None
        urgent = operation not in _BACKGROUND and not background
        try:
            async with self._slots.slot(urgent), asyncio.timeout(
                    self._s.request_timeout if urgent else self._s.request_timeout * _BACKGROUND_PATIENCE):
                response = await getattr(getattr(client.swagger, resource), operation)(**params)
                text = await response.text()
        except HttpStatus as exc:
            not_in_stasis = exc.status in (409, 422) and "not in stasis" in exc.message.lower()
            if gone_id is not None and (exc.status == 404 or not_in_stasis):
                raise ChannelGone(gone_id, exc.status, exc.message) from exc
            raise AriError(exc.status, exc.message) from exc
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise AriUnavailable(f"{operation}: {_brief(exc)}") from exc
        return json.loads(text) if text else None

    async def _channel(self, operation: str, channel_id: str, **params: Any) -> Any:
        """A channel operation (`channelId` in the path); a vanished channel raises ChannelGone."""
        return await self._call("channels", operation, channel_id, channelId=channel_id, **params)

    async def answer(self, channel_id: str) -> None:
        """Answer a channel in our app."""
        await self._channel("answer", channel_id)

    async def ring(self, channel_id: str) -> None:
        """Indicate ringing to the channel."""
        await self._channel("ring", channel_id)

    async def hangup(self, channel_id: str, reason: str = "normal") -> None:
        """Hang the channel up with an ARI reason."""
        await self._channel("hangup", channel_id, reason=reason)

    async def start_moh(self, channel_id: str, moh_class: str) -> None:
        """Start music on hold."""
        await self._channel("startMoh", channel_id, mohClass=moh_class)

    async def stop_moh(self, channel_id: str) -> None:
        """Stop music on hold."""
        await self._channel("stopMoh", channel_id)

    async def play(self, channel_id: str, media: Sequence[str], playback_id: str) -> None:
        """Play media URIs in order as one playback with our id."""
        await self._channel("playWithId", channel_id, playbackId=playback_id, media=list(media))

    async def stop_playback(self, playback_id: str) -> None:
        """Stop a playback; one that already finished (404) is fine."""
        try:
            await self._call("playbacks", "stop", playbackId=playback_id)
        except AriError as exc:
            if exc.status != 404:
                raise

    async def set_var(self, channel_id: str, name: str, value: str) -> None:
        """Set a channel variable."""
        await self._channel("setChannelVar", channel_id, variable=name, value=value)

    async def get_var(self, channel_id: str, name: str) -> str | None:
        """Read a channel variable; None when unset (404 "Provided variable was not found") or empty."""
        try:
            body = await self._channel("getChannelVar", channel_id, variable=name)
        except ChannelGone as exc:
            if "variable" in exc.message.lower():
                return None
            raise
        value = str(body.get("value", "")) if isinstance(body, dict) else ""
        return value or None

    async def continue_in_dialplan(
        self,
        channel_id: str,
        context: str | None = None,
        extension: str | None = None,
        priority: int | None = None,
    ) -> None:
        """Let the channel continue in the dialplan."""
        await self._channel(
            "continueInDialplan", channel_id, context=context, extension=extension, priority=priority
        )

    async def originate(
        self,
        *,
        endpoint: str,
        channel_id: str,
        app_args: Sequence[str],
        caller_id: str = "",
        timeout: int = 30,  # the ARI dial timeout in seconds
        variables: Mapping[str, str] | None = None,
        formats: str | None = None,
        other_channel_id: str | None = None,
    ) -> None:
        """Dial into our app; Asterisk subscribes us to the new channel itself (see events.py)."""
        if any("," in arg for arg in app_args):
            raise ValueError("app_args must not contain commas (ARI splits appArgs on them)")
        await self._call(
            "channels", "originateWithId", channelId=channel_id, endpoint=endpoint, app=self._s.app,
            appArgs=",".join(app_args), callerId=caller_id or None, timeout=timeout, formats=formats,
            variables=dict(variables) if variables else None, otherChannelId=other_channel_id,
        )  # fmt: skip

    async def create_bridge(self, bridge_id: str, name: str = "", kind: str = "mixing") -> None:
        """Create a bridge of type `kind` (mixing, holding) with our id."""
        await self._call("bridges", "createWithId", bridgeId=bridge_id, type=kind, name=name or None)

    async def start_bridge_moh(self, bridge_id: str, moh_class: str) -> None:
        """Music on hold for the whole bridge (Asterisk adds an announcer channel playing it)."""
        await self._call("bridges", "startMoh", bridgeId=bridge_id, mohClass=moh_class)

    async def add_to_bridge(self, bridge_id: str, channel_ids: Sequence[str], *, background: bool = False) -> None:
        """Add channels to a bridge: 400 "Channel not found" / 422 map to ChannelGone, 404 is the bridge."""
        try:
            await self._call("bridges", "addChannel", bridgeId=bridge_id, channel=list(channel_ids),
                             background=background)
        except AriUnavailable:
            raise
        except AriError as exc:
            if exc.status == 422 or (exc.status == 400 and "channel" in exc.message.lower()):
                raise ChannelGone(",".join(channel_ids), exc.status, exc.message) from exc
            raise

    async def remove_from_bridge(self, bridge_id: str, channel_id: str) -> None:
        """Take a channel out of a bridge; 422 (not in it) is fine, a vanished one is ChannelGone."""
        try:
            await self._call("bridges", "removeChannel", bridgeId=bridge_id, channel=[channel_id])
        except AriUnavailable:
            raise
        except AriError as exc:
            if exc.status == 400 and "channel" in exc.message.lower():
                raise ChannelGone(channel_id, exc.status, exc.message) from exc
            if exc.status != 422:
                raise

    async def destroy_bridge(self, bridge_id: str) -> None:
        """Destroy a bridge; a missing one (404) is fine, and so is one that is no longer in the app
        (409 "Bridge not in Stasis application": seen on Asterisk 22 for a bridge being destroyed,
        e.g. right after its last channel hung up)."""
        try:
            await self._call("bridges", "destroy", bridgeId=bridge_id)
        except AriError as exc:
            if exc.status != 404 and not (exc.status == 409 and "not in Stasis" in exc.message):
                raise

    async def list_channels(self) -> list[ChannelInfo]:
        """Channels whose dialplan application is Stasis(<our app>[,...]) (see `in_stasis_app`)."""
        found = []
        for raw in await self._call("channels", "list") or ():
            dialplan = raw.get("dialplan") or {}
            if in_stasis_app(
                str(dialplan.get("app_name", "")), str(dialplan.get("app_data", "")), self._s.app
            ):
                found.append(channel_info(raw))
        return found

    async def list_bridges(self) -> list[BridgeInfo]:
        """Every bridge on the node with its member channels."""
        return [bridge_info(raw) for raw in await self._call("bridges", "list") or ()]

    async def send_dtmf(self, channel_id: str, digits: str) -> None:
        """Send DTMF digits to the channel."""
        await self._channel("sendDTMF", channel_id, dtmf=digits)

    async def subscribe_device(self, device: str) -> None:
        """POST /applications/{app}/subscription?eventSource=deviceState:<device> (any name is accepted;
        subscribing twice is fine)."""
        check_device_name(device)
        await self._call("applications", "subscribe", applicationName=self._s.app,
                         eventSource=f"deviceState:{device}")

    async def unsubscribe_device(self, device: str) -> None:
        """DELETE the subscription; 422 "Event source was not subscribed to" is fine."""
        check_device_name(device)
        try:
            await self._call("applications", "unsubscribe", applicationName=self._s.app,
                             eventSource=f"deviceState:{device}")
        except AriError as exc:
            if exc.status != 422 or "not subscribed" not in exc.message.lower():
                raise

    async def device_state(self, device: str) -> str:
        """GET /deviceStates/{device} (aioswagger encodes its '/' and '@'; a raw '/' would be 404)."""
        body = await self._call("deviceStates", "get", deviceName=device)
        state = body.get("state") if isinstance(body, dict) else None
        if not isinstance(state, str) or not state:
            raise AriError(200, f"device state of {device!r} without a state: {body!r}"[:200])
        return state

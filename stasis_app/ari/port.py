"""The one narrow seam between the stasis app and Asterisk's ARI: `AriPort`, its settings and its errors.

Two implementations exist: `aioari_adapter.AioAriAdapter` (real Asterisk) and `fake.FakeAri` (in memory).
Callers never see aioari, aiohttp or HTTP details; they see typed events (`events.py`) and these errors:

    AriError(status, message)      a request Asterisk refused (status = HTTP status, 0 if none came back)
     ├── ChannelGone(channel_id)   the channel no longer exists or has left our Stasis app
     │                             (ARI 404 on a channel operation; also 409/422 "not in Stasis application")
     └── AriUnavailable            not connected, Asterisk down or stalled, transport error or timeout

Guarantees of every `AriPort`:
  * `events()` has one consumer. Markers frame each connection: `AriConnected(resync)` first, then that
    connection's events, then exactly one of `AriDisconnected(reason)` (a reconnect follows, until
    `close()`) or `ApplicationReplaced()` (terminal: another client took the app; the port stands down).
  * `AriConnected.resync` is True after a reconnect: events may have been missed, so the consumer lists
    its channels (`list_channels()`) and re-reports them. Channels survive websocket drops in Asterisk.
    (resync is False on the first connection; a restarted process may still find channels it owned.)
  * A stalled Asterisk counts as disconnected within `heartbeat_interval + heartbeat_timeout`.
  * Idempotent teardown: `stop_playback` of a finished playback and `destroy_bridge` of a missing bridge
    succeed (the wanted end state holds); `get_var` of an unset variable is None; other 404s are errors.
  * Device state: `subscribe_device` and `unsubscribe_device` are idempotent (subscribing twice, or
    dropping a subscription that does not exist, succeeds); `device_state` of a device Asterisk does
    not know is "INVALID" (Asterisk 22 answers 200 with that state, never 404). Subscriptions belong
    to the app inside Asterisk: they outlive a websocket drop but not an Asterisk restart.
Non-guarantees: no event is replayed after a disconnect; commands are not retried.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from stasis_app.ari.events import AriEvent, BridgeInfo, ChannelInfo

__all__ = [
    "AriError",
    "AriPort",
    "AriSettings",
    "AriUnavailable",
    "ChannelGone",
    "RETRY_DELAYS",
    "best_effort",
    "check_device_name",
    "EventStream",
    "retried",
]

log = logging.getLogger(__name__)


class AriError(Exception):
    """Asterisk refused or could not answer a request; `status` is the HTTP status (0: no answer)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"ARI {status}: {message}")
        self.status = status
        self.message = message


class ChannelGone(AriError):
    """The channel is gone or no longer in our Stasis app (ARI 404, or 409/422 "not in Stasis").
    For `add_to_bridge` (several channels, Asterisk does not say which) `channel_id` is "id1,id2"."""

    def __init__(self, channel_id: str, status: int = 404, message: str = "Channel not found") -> None:
        super().__init__(status, message)
        self.channel_id = channel_id


class AriUnavailable(AriError):
    """No usable connection to Asterisk: not connected yet, disconnected, stalled, or stood down."""

    def __init__(self, message: str) -> None:
        super().__init__(0, message)


# Delays before the 2nd, 3rd and 4th attempt of a request that got no answer from Asterisk (busy, or
# its websocket reconnecting): about 1.7 s in all, before the caller's fate depends on the failure.
RETRY_DELAYS = (0.2, 0.5, 1.0)


async def retried(request: Callable[[], Awaitable[object]], delays: Sequence[float] = RETRY_DELAYS) -> None:
    """Run an ARI request, again after each of `delays` while Asterisk gives no answer
    (AriUnavailable); a refusal (any other AriError) and the last attempt's failure are raised."""
    for delay in delays:
        try:
            await request()
            return
        except AriUnavailable as exc:
            log.info("ARI request without answer (%s): again in %.1f s", exc, delay)
        await asyncio.sleep(delay)
    await request()


async def create_bridge_once(ari: AriPort, bridge_id: str, name: str) -> None:
    """create_bridge that takes 409 (the bridge exists) as done: an earlier attempt whose answer was
    lost made it. For use under `retried`, which repeats attempts while Asterisk gives no answer."""
    try:
        await ari.create_bridge(bridge_id, name=name)
    except AriError as exc:
        if exc.status != 409:
            raise


async def best_effort(request: Awaitable[object]) -> None:
    """Await an ARI request whose failure changes nothing for the call (e.g. stopping music on a
    channel about to leave): any AriError is ignored."""
    try:
        await request
    except AriError:
        pass


@dataclass(frozen=True, repr=False, kw_only=True)
class AriSettings:
    """Connection settings of one node's ARI. The password comes from env/file via the caller.

    `url` is Asterisk's HTTP root (`http://127.0.0.1:8088`); a trailing `/ari` is accepted and ignored.
    Timing: a stalled Asterisk is detected within `heartbeat_interval + heartbeat_timeout` seconds
    (one `GET /asterisk/ping` every `heartbeat_interval` s; one missed answer is a disconnect).
    Reconnect delays grow from `backoff_initial` doubling up to `backoff_max`, each jittered to [d/2, d].
    """

    url: str
    username: str
    password: str
    app: str = "clusterq"
    node_id: str
    backoff_initial: float = 0.2
    backoff_max: float = 5.0
    heartbeat_interval: float = 1.0
    heartbeat_timeout: float = 2.0
    request_timeout: float = 5.0
    """Upper bound for one REST command (aiohttp's default of 300 s would hang a call flow)."""

    def __post_init__(self) -> None:
        if not self.url.startswith(("http://", "https://")):
            raise ValueError("AriSettings.url must be an http(s) URL")
        if not self.app or "," in self.app:
            raise ValueError("AriSettings.app must be a non-empty name without commas")
        if not 0 < self.backoff_initial <= self.backoff_max:
            raise ValueError("need 0 < backoff_initial <= backoff_max")
        if self.heartbeat_interval <= 0 or self.heartbeat_timeout <= 0 or self.request_timeout <= 0:
            raise ValueError("heartbeat_interval, heartbeat_timeout and request_timeout must be > 0")

    @property
    def http_root(self) -> str:
        """Asterisk's HTTP root with a trailing slash, e.g. `http://127.0.0.1:8088/`."""
        root = self.url.rstrip("/")
        if root.endswith("/ari"):
            root = root[: -len("/ari")]
        return root + "/"

    def __repr__(self) -> str:
        # The password is a secret: never printed, whatever logs a settings object.
        return (
            f"AriSettings(url={self.url!r}, username={self.username!r}, password='***', "
            f"app={self.app!r}, node_id={self.node_id!r}, backoff_initial={self.backoff_initial}, "
            f"backoff_max={self.backoff_max}, heartbeat_interval={self.heartbeat_interval}, "
            f"heartbeat_timeout={self.heartbeat_timeout}, request_timeout={self.request_timeout})"
        )


class EventStream:
    """The one-consumer event stream behind `AriPort.events()`, shared by both implementations.

    Unlike an async generator, cancelling a pending read (e.g. `asyncio.wait_for(anext(s), t)`) loses
    nothing and does not end the stream; `end()` ends it once the queued events are read. Unbounded on
    purpose: blocking the websocket reader would make Asterisk drop the connection (write timeout).
    """

    def __init__(self) -> None:
        self._queue: asyncio.Queue[AriEvent | None] = asyncio.Queue()

    def put(self, event: AriEvent) -> None:
        """Queue one event (never blocks)."""
        self._queue.put_nowait(event)

    def end(self) -> None:
        """End the stream after the events already queued."""
        self._queue.put_nowait(None)

    def __aiter__(self) -> EventStream:
        return self

    async def __anext__(self) -> AriEvent:
        item = await self._queue.get()
        if item is None:
            self._queue.put_nowait(None)  # stays ended for every later read
            raise StopAsyncIteration
        return item


def check_device_name(device: str) -> None:
    """Refuse a device name ARI would read as more than one device (see `AriPort.subscribe_device`)."""
    if not device or "," in device:
        raise ValueError(f"not a device name ARI can subscribe to alone: {device!r}")


class AriPort(Protocol):
    """What the stasis app may ask of one Asterisk node (see the module docstring for guarantees)."""

    node_id: str

    def events(self) -> AsyncIterator[AriEvent]:
        """The typed event stream (one consumer), markers included; ends after `close()`."""
        ...

    async def run(self) -> None:
        """Connect, read events and heartbeat; reconnect with backoff until `close()` or stand-down."""
        ...

    async def close(self) -> None:
        """Stop `run()`, drop the connection and end `events()`."""
        ...

    async def answer(self, channel_id: str) -> None:
        """Answer a channel in our app."""
        ...

    async def ring(self, channel_id: str) -> None:
        """Indicate ringing to the channel instead of answering it."""
        ...

    async def hangup(self, channel_id: str, reason: str = "normal") -> None:
        """Hang a channel up; `reason` is an ARI reason (normal, busy, congestion, no_answer, ...)."""
        ...

    async def start_moh(self, channel_id: str, moh_class: str) -> None:
        """Start music on hold of `moh_class` on the channel (no event follows)."""
        ...

    async def stop_moh(self, channel_id: str) -> None:
        """Stop music on hold on the channel (no event follows)."""
        ...

    async def play(self, channel_id: str, media: Sequence[str], playback_id: str) -> None:
        """Play media URIs in order (e.g. `["sound:queue-youarenext", "number:3"]`) as one playback."""
        ...

    async def stop_playback(self, playback_id: str) -> None:
        """Stop a playback; a playback that already finished is not an error."""
        ...

    async def set_var(self, channel_id: str, name: str, value: str) -> None:
        """Set a channel variable (or writable function such as `PJSIP_HEADER(add,X)`)."""
        ...

    async def get_var(self, channel_id: str, name: str) -> str | None:
        """Read a channel variable or function; None when unset or empty."""
        ...

    async def continue_in_dialplan(
        self,
        channel_id: str,
        context: str | None = None,
        extension: str | None = None,
        priority: int | None = None,
    ) -> None:
        """Let the channel leave Stasis and continue in the dialplan (StasisEnd follows)."""
        ...

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
        """Dial `endpoint` into our own app; events of the new channel (Dial, ChannelDestroyed on
        failure, StasisStart once answered) are delivered without any extra subscription."""
        ...

    async def create_bridge(self, bridge_id: str, name: str = "", kind: str = "mixing") -> None:
        """Create a bridge: "mixing" (a call) or "holding" (waiting callers hearing its music)."""
        ...

    async def start_bridge_moh(self, bridge_id: str, moh_class: str) -> None:
        """Music on hold for everyone in the bridge: ONE stream, played by an announcer channel."""
        ...

    async def add_to_bridge(self, bridge_id: str, channel_ids: Sequence[str], *, background: bool = False) -> None:
        """Move channels (all in our app) into the bridge, out of any bridge they were in.
        `background`: not urgent (e.g. music for a joining caller), a call's bridge goes first."""
        ...

    async def remove_from_bridge(self, bridge_id: str, channel_id: str) -> None:
        """Take a channel out of a bridge (it stays in Stasis); one not in it is not an error."""
        ...

    async def destroy_bridge(self, bridge_id: str) -> None:
        """Destroy a bridge; its channels stay in Stasis. A missing bridge is not an error."""
        ...

    async def list_channels(self) -> list[ChannelInfo]:
        """The channels currently in OUR Stasis app (dialplan app `Stasis`, data `<app>` / `<app>,...`)."""
        ...

    async def list_bridges(self) -> list[BridgeInfo]:
        """Every bridge on the node with its member channels (a restarted app finds its calls)."""
        ...

    async def send_dtmf(self, channel_id: str, digits: str) -> None:
        """Send DTMF digits to the channel."""
        ...

    async def subscribe_device(self, device: str) -> None:
        """Deliver DeviceStateChanged events of `device` (e.g. "PJSIP/alice") to our app.
        `device` must be non-empty and free of commas: ARI reads "deviceState:" alone as every
        device and splits its event sources on commas (ValueError here)."""
        ...

    async def unsubscribe_device(self, device: str) -> None:
        """Stop the DeviceStateChanged events of `device`; one not subscribed is not an error."""
        ...

    async def device_state(self, device: str) -> str:
        """The device's current state name (NOT_INUSE, INUSE, ...; INVALID when Asterisk does not
        know the device)."""
        ...

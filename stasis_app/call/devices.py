"""Device state for the leader, like app_queue's state_interface: the node watches the devices the
leader names (WatchDevices) and reports their states (DeviceStateChanged).

The leader sends the whole list (replace) after the node registers, then deltas as agents log in or
out. For each watched device the node subscribes its app in Asterisk and reports the state: once
when the watch starts (for a replace list, every listed device, watched before or not: a new leader
knows no states), then on every change, and again for every device after each ARI (re)connect
(events were missed meanwhile, and an Asterisk restart dropped the subscriptions).

Guarantees:
- once the requests settle, the last state reported for a device is its current state: the node
  subscribes before it asks for the state (GET), and drops a GET's answer when an event of that
  device was reported while it was out (events come in order; the answer may be older than them);
- the same state twice in a row is reported once (Asterisk sends most changes twice);
- what a leader can make a node do is bounded: MAX_DEVICES watched, names of at most MAX_NAME
  printable characters without commas (ARI would read "a,b" as two devices and "" as all of them),
  CONCURRENCY requests at once; the excess is logged and ignored;
- a failed subscribe or GET is reported as UNKNOWN (app_queue offers a member whose device is
  UNKNOWN: a device the node cannot read never blocks its agent, and never keeps a stale INUSE) and
  retried at the next ARI (re)connect or when a WatchDevices names the device again, not in a loop
  against a refusing Asterisk. It stops nothing else. A failed unsubscribe is only logged: the
  device's events are ignored anyway. A request lost to an ARI disconnect reports nothing: the
  resync after the reconnect reports the real state.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from clusterq_proto.v1 import node_pb2
from stasis_app.ari.events import DeviceStateChanged
from stasis_app.ari.port import AriPort, AriUnavailable

__all__ = ["CONCURRENCY", "MAX_DEVICES", "MAX_NAME", "UNKNOWN", "DeviceWatch"]

log = logging.getLogger(__name__)

MAX_DEVICES = 10_000
MAX_NAME = 256
CONCURRENCY = 16
UNKNOWN = "UNKNOWN"


def _usable(name: str) -> bool:
    return 0 < len(name) <= MAX_NAME and "," not in name and name.isprintable() and name.strip() == name


class DeviceWatch:
    """The devices one node watches for the leader (see the module docstring)."""

    def __init__(self, ari: AriPort, send: Callable[[node_pb2.NodeEvent], None], *,
                 max_devices: int = MAX_DEVICES, concurrency: int = CONCURRENCY) -> None:
        self._ari = ari
        self._send = send
        self._max = max_devices
        self._slots = asyncio.Semaphore(concurrency)
        self.watched: set[str] = set()
        # Devices Asterisk holds our subscription for, as far as we know; a device in it but no longer
        # watched is unsubscribed by the worker.
        self._subscribed: set[str] = set()
        self._to_get: set[str] = set()  # watched devices whose current state must be read and reported
        self._failed: set[str] = set()  # failed since the last connect: left alone until then
        # The state last reported per watched device; None: none since the watch or the last connect
        # (then the next GET answer or event is reported whatever it says).
        self._reported: dict[str, str | None] = {}
        # Per device, when its report was last reset by a WatchDevices (a count of such resets): a GET
        # answer or failure of a request started before the latest reset is stale, and the reset has
        # queued a new GET. Without it, an answer in flight across a replace list was reported after a
        # newer event, and the fresh answer then dropped (the leader kept a state Asterisk had left).
        self._resets = 0
        self._reset_at: dict[str, int] = {}
        self._connected = False
        self._generation = 0  # bumped per connect: answers to requests of an older one are ignored
        self._task: asyncio.Task[None] | None = None

    # ---- inputs (synchronous: the node's decision callback and event loop) ----------------------
    def apply(self, decision: node_pb2.WatchDevices) -> None:
        """Carry out one WatchDevices: replace (the whole list) or unwatch, then watch."""
        names = [n for n in dict.fromkeys(decision.watch) if _usable(n)]
        bad = len(set(decision.watch)) - len(names) + sum(not _usable(n) for n in decision.unwatch)
        if bad:
            log.warning("WatchDevices: ignoring %d unusable device names (empty, longer than %d, comma, "
                        "unprintable)", bad, MAX_NAME)
        if decision.replace:
            keep = set(names[: self._max])
            for device in self.watched - keep:
                self._drop(device)
        else:
            for device in decision.unwatch:
                self._drop(device)
        refused = 0
        for device in names:
            if device not in self.watched and len(self.watched) >= self._max:
                refused += 1
                continue
            if decision.replace or device not in self.watched:
                self.watched.add(device)
                self._failed.discard(device)  # named again: try again
                self._to_get.add(device)
                self._reported[device] = None
                self._resets += 1
                self._reset_at[device] = self._resets
        if refused:
            log.warning("WatchDevices: %d devices over the limit of %d ignored", refused, self._max)
        self._kick()

    def on_event(self, event: DeviceStateChanged) -> None:
        """Report a watched device's change (the same state twice in a row once); ignore others."""
        if event.device in self.watched and self._reported.get(event.device) != event.state:
            self._report(event.device, event.state)

    def known(self) -> list[node_pb2.DeviceStateChanged]:
        """The state last reported for each watched device that has one, for a Register: a new leader
        takes them before it offers this node's agents (it would otherwise see every device UNKNOWN,
        i.e. free, until the reports its WatchDevices asks for arrive)."""
        return [node_pb2.DeviceStateChanged(device=device, state=state)
                for device, state in sorted(self._reported.items()) if state is not None]

    def connected(self) -> None:
        """ARI is (re)connected and resynced: subscribe every watched device again and report each."""
        self._connected = True
        self._generation += 1
        self._subscribed -= self.watched
        self._failed.clear()
        self._to_get = set(self.watched)
        self._reported = dict.fromkeys(self.watched)
        self._kick()

    def disconnected(self) -> None:
        """ARI is down: requests wait for the next `connected()`."""
        self._connected = False

    def close(self) -> None:
        """Stop the worker (shutdown)."""
        self._connected = False
        if self._task is not None:
            self._task.cancel()

    # ---- the worker: Asterisk requests --------------------------------------------------------
    def _drop(self, device: str) -> None:
        self.watched.discard(device)
        self._to_get.discard(device)
        self._failed.discard(device)
        self._reported.pop(device, None)
        self._reset_at.pop(device, None)

    def _report(self, device: str, state: str) -> None:
        self._reported[device] = state
        self._send(node_pb2.NodeEvent(device_state_changed=node_pb2.DeviceStateChanged(device=device, state=state)))

    def _kick(self) -> None:
        if self._connected and (self._task is None or self._task.done()):
            self._task = asyncio.ensure_future(self._work())

    async def _work(self) -> None:
        """Rounds of requests until Asterisk matches the watched set; one round at a time, so that an
        unsubscribe and a later subscribe of the same device never overtake each other."""
        while self._connected:
            drop = self._subscribed - self.watched
            add = self.watched - self._subscribed - self._failed
            get = self._to_get - self._failed
            if not (drop or add or get):
                return
            self._subscribed = (self._subscribed - drop) | add
            self._to_get -= get
            await asyncio.gather(*(self._unsubscribe(d) for d in drop),
                                 *(self._sync(d, d in add) for d in add | get))

    async def _unsubscribe(self, device: str) -> None:
        async with self._slots:
            try:
                await self._ari.unsubscribe_device(device)
            except Exception as exc:  # its events are ignored anyway
                log.info("unsubscribing device %s failed: %s", device, exc)

    async def _sync(self, device: str, subscribe: bool) -> None:
        """Subscribe (before the GET: no change may fall between the two) and/or read and report."""
        generation, reset = self._generation, self._reset_at.get(device)
        async with self._slots:
            try:
                if subscribe:
                    await self._ari.subscribe_device(device)
                    subscribe = False
                state = await self._ari.device_state(device)  # a new subscription reports too
            except Exception as exc:  # this device only: the others and the decisions go on
                self._failure(device, generation, reset, exc, unsubscribed=subscribe)
                return
        if (generation == self._generation and reset == self._reset_at.get(device) and device in self.watched
                and self._reported.get(device) is None):
            self._report(device, state)

    def _failure(self, device: str, generation: int, reset: int | None, exc: Exception, *,
                 unsubscribed: bool) -> None:
        if generation != self._generation:
            return  # the connect since then redoes it
        if unsubscribed:
            self._subscribed.discard(device)
        if device not in self.watched or reset != self._reset_at.get(device):
            return  # unwatched, or watched again since: that queued a new GET
        self._failed.add(device)
        if isinstance(exc, AriUnavailable) and not self._connected:
            return  # the resync after the reconnect reports the real state
        log.warning("device %s: cannot read its state (%s): reporting %s until the next ARI connect",
                    device, exc, UNKNOWN)
        if self._reported.get(device) is None:
            self._report(device, UNKNOWN)


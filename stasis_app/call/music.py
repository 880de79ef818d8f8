"""A waiting caller's music on Asterisk: its own generator, or one shared stream per music class.

Per channel (the default, like app_queue): each caller gets `startMoh`, so each runs its own music
generator (reading and decoding the music file: most of a waiting caller's CPU).

Shared (`StasisSettings.shared_music`, like FreeSWITCH's local_stream): one holding bridge per music
class and node, `<node>-hold-<class>_`, with bridge music: Asterisk plays the class ONCE through an
announcer channel and copies its frames to every caller in the bridge. Measured on Asterisk 22.10
(200 Local callers): 2.9 instead of 3.5 ms CPU per second per caller. What Asterisk does for us there
(checked on 22.10): a prompt played to a caller in the bridge replaces the music for that caller
only, and the music comes back by itself when the prompt ends; adding the caller to a call's bridge
moves it out of the holding bridge; `continue` works from inside it; DTMF events still arrive; adding
a caller that is already in the bridge is accepted. So the music costs no request to stop before a
connection, a prompt or leaving. The bridge lives as long as the node (an empty one still plays).
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from clusterq_common.channel_names import holding_bridge_id
from stasis_app.ari.port import AriError, ChannelGone, best_effort, retried
from stasis_app.call import records as r

if TYPE_CHECKING:
    from stasis_app.node import NodeApp

__all__ = ["Music"]

log = logging.getLogger(__name__)


class Music:
    """Starts and stops callers' music for one NodeApp."""

    def __init__(self, app: NodeApp) -> None:
        self.app = app
        self.ari = app.ari
        self.shared = app.settings.shared_music
        self._ready: set[str] = set()  # holding bridges made (and playing) on this Asterisk
        self._making: dict[str, asyncio.Lock] = {}

    def forget_bridges(self) -> None:
        """After an ARI reconnect: Asterisk may have restarted without our holding bridges."""
        self._ready.clear()

    def left_bridge(self, bridge: str, channel_id: str) -> None:
        """A channel left a bridge. A waiting caller taken out of its holding bridge by someone else
        (the bridge destroyed by an operator or another ARI application: our own moves forget the
        bridge first) gets its music back; it heard nothing until its next caller of the class came."""
        c = self.app.callers.get(channel_id)
        if c is None or c.hanging_up or c.hold_bridge != bridge:
            return
        log.warning("caller %s was taken out of its holding bridge %s: its music starts again", c.call_id, bridge)
        c.hold_bridge, c.moh_on = "", False
        self._ready.discard(bridge)  # made again on the next start
        self.app.actions.resume_music(c)

    def adopted(self, c: r.Caller) -> None:
        """A restarted app adopts a waiting caller: with shared music it is in its class's bridge."""
        if self.shared and c.moh_on:
            c.hold_bridge = holding_bridge_id(self.app.node_id, c.music_class)

    async def start(self, c: r.Caller, music_class: str) -> None:
        """Start the caller's music, retried while Asterisk gives no answer. If it still cannot be
        started the caller is marked without music, so the next chance (a prompt's end, the next
        ARI resync) starts it: a waiting caller must never be left in silence."""
        c.moh_on = True
        try:
            if self.shared:
                await self._hold(c, music_class)
            else:
                await retried(lambda: self.ari.start_moh(c.call_id, music_class))
        except ChannelGone:
            pass  # its StasisEnd / ChannelDestroyed ends it
        except AriError as exc:
            c.moh_on = False
            log.warning("music for caller %s could not be started: %s", c.call_id, exc)

    async def stop(self, c: r.Caller, *, moving: bool) -> None:
        """Stop the caller's music. `moving`: its next request takes it out of its holding bridge
        anyway (into a call's bridge, or back to the dialplan), so none is sent for the music."""
        if not c.moh_on:
            return
        c.moh_on = False
        if c.hold_bridge:
            bridge, c.hold_bridge = c.hold_bridge, ""
            if not moving:
                await best_effort(self.ari.remove_from_bridge(bridge, c.call_id))
        else:
            await best_effort(self.ari.stop_moh(c.call_id))

    def stops_for_prompts(self, c: r.Caller) -> bool:
        """Whether a prompt must stop the music first (not in a holding bridge, where Asterisk plays
        the prompt instead of the music to that caller and gives the music back afterwards)."""
        return c.moh_on and not c.hold_bridge

    async def _hold(self, c: r.Caller, music_class: str) -> None:
        bridge = holding_bridge_id(self.app.node_id, music_class)
        for attempt in (1, 2):
            await self._make(bridge, music_class)
            try:
                await retried(lambda: self.ari.add_to_bridge(bridge, [c.call_id], background=True))
            except ChannelGone:
                raise
            except AriError as exc:
                if exc.status != 404 or attempt == 2:
                    raise
                self._ready.discard(bridge)  # Asterisk lost it (restarted meanwhile): make it again
                continue
            c.hold_bridge = bridge
            return

    async def _make(self, bridge: str, music_class: str) -> None:
        """Create the class's holding bridge and start its music, once (callers joining at the same
        time wait for the first one)."""
        if bridge in self._ready:
            return
        async with self._making.setdefault(bridge, asyncio.Lock()):
            if bridge in self._ready:
                return
            try:
                await retried(lambda: self.ari.create_bridge(bridge, name=f"clusterq-music-{music_class}",
                                                             kind="holding"))
            except AriError as exc:
                if exc.status != 409:  # 409: it exists (made before this process, or by a lost answer)
                    raise
            await retried(lambda: self.ari.start_bridge_moh(bridge, music_class))
            self._ready.add(bridge)

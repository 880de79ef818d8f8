"""Announcements a waiting caller hears on its node: position / hold-time prompts and periodic
announcements, played over its music (stopped first when its music class needs it) and followed by the
music again.

Invariant: a caller has at most one prompt (Caller.playback_id), and every prompt it is given ends in
its music coming back: at PlaybackFinished, when the prompt cannot be started, or after an ARI
reconnect lost its PlaybackFinished (recover_media).
"""

from __future__ import annotations

import logging
import uuid
from typing import TYPE_CHECKING

from clusterq_proto.v1 import node_pb2
from stasis_app.ari.port import AriError, ChannelGone, best_effort
from stasis_app.call import records as r
from stasis_app.call.prompts import announcement

if TYPE_CHECKING:
    from stasis_app.call.callers import CallerActions
    from stasis_app.node import NodeApp

__all__ = ["Announcements"]

log = logging.getLogger(__name__)


class Announcements:
    """The prompts of one NodeApp's callers (see the module docstring)."""

    def __init__(self, app: NodeApp, actions: CallerActions) -> None:
        self.app = app
        self.ari = app.ari
        self.actions = actions
        self.music = actions.music
        self._playbacks: dict[str, str] = {}  # playback id -> call id

    async def stop(self, c: r.Caller) -> None:
        """Cut the caller's prompt short (its music, if any, is not given back here)."""
        if c.playback_id:
            pid, c.playback_id = c.playback_id, ""
            self._playbacks.pop(pid, None)
            await best_effort(self.ari.stop_playback(pid))

    def announce(self, m: node_pb2.Announce) -> None:
        """Play position / hold time (interrupting the music, which resumes afterwards)."""
        c = self.app.callers.get(m.call_id)
        if c is None:
            return
        self.actions.tell_position(c, m.position)
        self._play(c, announcement(m.position, m.estimated_wait, m.say_position, m.say_holdtime, m.more_than))

    def periodic(self, m: node_pb2.PeriodicAnnounce) -> None:
        """Play a periodic announcement prompt."""
        c = self.app.callers.get(m.call_id)
        if c is not None and m.prompt:
            self._play(c, [m.prompt if ":" in m.prompt else f"sound:{m.prompt}"])

    def _play(self, c: r.Caller, media: list[str]) -> None:
        if not media or c.state not in (r.WAITING, r.RINGING) or c.playback_id:
            return
        pid = f"{c.call_id}-pb-{uuid.uuid4().hex[:8]}"
        c.playback_id = pid
        self._playbacks[pid] = c.call_id
        ari = self.ari

        async def play() -> None:
            if c.playback_id != pid:
                return  # superseded (connected or leaving) before it started
            try:
                if self.music.stops_for_prompts(c):
                    c.moh_on = False
                    await best_effort(ari.stop_moh(c.call_id))  # the prompt is played anyway
                await ari.play(c.call_id, media, pid)
            except ChannelGone:
                self._playbacks.pop(pid, None)  # its StasisEnd / ChannelDestroyed ends the caller
            except AriError as exc:
                self._play_failed(c, pid, exc)

        self.app.serial.run(c.call_id, play, "announce")

    def _play_failed(self, c: r.Caller, pid: str, exc: AriError) -> None:
        """The prompt could not be started: no PlaybackFinished will come for it, so the caller must
        not wait for one, in silence and skipping every later announcement: forget the prompt and give
        the music back. A prompt whose start only lost its answer is stopped first (a no-op otherwise)."""
        log.warning("prompt %s for caller %s could not be played: %s", pid, c.call_id, exc)
        self._playbacks.pop(pid, None)
        if c.playback_id != pid:
            return
        c.playback_id = ""
        self.app.serial.run(c.call_id, lambda: best_effort(self.ari.stop_playback(pid)), "stop-failed-prompt")
        self.actions.resume_music(c)

    def recover_media(self, c: r.Caller) -> None:
        """After an ARI reconnect: this prompt's PlaybackFinished may have been lost with the
        websocket, so stop it (a no-op if it ended) and give the caller its music back."""
        if not c.playback_id:
            return
        pid, c.playback_id = c.playback_id, ""
        self._playbacks.pop(pid, None)

        async def recover() -> None:
            await best_effort(self.ari.stop_playback(pid))
            if c.state in (r.WAITING, r.RINGING) and not c.args.ringing and c.music_class:
                await self.music.start(c, c.music_class)

        self.app.serial.run(c.call_id, recover, "recover-media")

    def playback_finished(self, playback_id: str, channel_id: str | None) -> None:
        """An announcement ended: music resumes if the caller still waits."""
        call_id = self._playbacks.pop(playback_id, None)
        if call_id is None and channel_id and playback_id.startswith(f"{channel_id}-pb-"):
            # A prompt an earlier process of this app started (it was restarted while the prompt
            # played): adoption took the music as playing, but that prompt had stopped it.
            adopted = self.app.callers.get(channel_id)
            if adopted is not None and not adopted.playback_id and not adopted.hold_bridge:
                adopted.moh_on = False
                self.actions.resume_music(adopted)
            return
        c = self.app.callers.get(call_id or "")
        if c is None or c.playback_id != playback_id:
            return
        c.playback_id = ""
        self.actions.resume_music(c)

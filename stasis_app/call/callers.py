"""What happens to callers on their own node: answer, music, announcements, leaving, bridging.

Invariant: a caller is removed from NodeApp.callers exactly once (leave() or caller_gone()), and
exactly one of CallLeft / CallEnded is reported for it unless the leader itself decided it left.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from typing import TYPE_CHECKING

from clusterq_proto.v1 import common_pb2, node_pb2
from stasis_app.ari.port import AriError, ChannelGone
from stasis_app.call import records as r
from stasis_app.call.names import bridge_id
from stasis_app.call.prompts import announcement

if TYPE_CHECKING:
    from stasis_app.node import NodeApp

log = logging.getLogger(__name__)

# A trunk leg from an agent's node may arrive before the leader's Offer / Connect for its caller reach
# this node (the agent's node dials as soon as it gets its own Connect): it waits this long for them.
INBOUND_WAIT = 10.0


def status_name(status: common_pb2.CallerStatus.ValueType) -> str:
    """CLUSTERQ_STATUS value of a proto status (enum name without its prefix)."""
    return common_pb2.CallerStatus.Name(status).removeprefix("CALLER_STATUS_")


class CallerActions:
    """Caller-side behaviour of a NodeApp."""

    def __init__(self, app: NodeApp) -> None:
        self.app = app
        self.ari = app.ari
        self._playbacks: dict[str, str] = {}  # playback id -> call id
        self._early_inbound: dict[str, str] = {}  # offer id -> trunk leg that arrived before its decision

    # ---- joining ---------------------------------------------------------------------------
    def start(self, c: r.Caller, adopted: bool) -> None:
        """Answer (or ring), start music, remember join data on the channel, report the join.

        An adopted caller (found on the channel list by a restarted app) is neither answered nor
        reported here: Asterisk kept its music playing, and NodeApp's resync reports it.
        """
        if adopted:
            c.moh_on = c.state == r.WAITING and not c.args.ringing and bool(c.music_class)
            self._arm_timeout(c)
            return
        ari = self.ari

        async def setup() -> None:
            if c.args.ringing:
                await ari.ring(c.call_id)
            else:
                await ari.answer(c.call_id)
            await ari.set_var(c.call_id, r.VAR_JOINED, f"{c.joined_wall:.3f}")
            await ari.set_var(c.call_id, r.VAR_ORDER, str(c.join_order))
            # With a leader connected, music starts when its QueueMedia names the queue's class
            # (so a queue with music off never starts any); without one, default music at once.
            if not self.app.coord.connected and not c.args.ringing and c.state in (r.WAITING, r.RINGING):
                await ari.start_moh(c.call_id, c.music_class)
                c.moh_on = True

        self.app.serial.run(c.call_id, setup, "join")
        self.report_join(c)
        self._arm_timeout(c)

    def report_join(self, c: r.Caller) -> None:
        """Tell the leader about the caller (dropped while no stream is up: the Register covers it)."""
        self.app.send(node_pb2.NodeEvent(call_joined=c.joined_pb(time.time() - c.joined_wall)))

    def _arm_timeout(self, c: r.Caller) -> None:
        if c.args.timeout:
            self.app.serial.run(c.call_id + "/timeout", lambda: self._timeout(c), "timeout")

    async def _timeout(self, c: r.Caller) -> None:
        await asyncio.sleep(max(0.0, c.joined_wall + c.args.timeout - time.time()))
        if self.app.callers.get(c.call_id) is c and c.state in (r.WAITING, r.RINGING):
            self.app.send(node_pb2.NodeEvent(call_left=node_pb2.CallLeft(call_id=c.call_id, reason="timeout")))
            self.leave(c, "TIMEOUT")

    def reject_early(self, channel_id: str, status: str, message: str) -> None:
        """A caller we never queued (bad arguments, no coordinator): straight back to the dialplan."""
        async def back() -> None:
            await self.ari.set_var(channel_id, "CLUSTERQ_STATUS", status)
            await self.ari.set_var(channel_id, "CLUSTERQ_WAIT", "0")
            await self.ari.set_var(channel_id, r.VAR_POSITION, "0")
            await self.ari.set_var(channel_id, "CLUSTERQ_MESSAGE", message[:200])
            await self.ari.continue_in_dialplan(channel_id)

        self.app.serial.run(channel_id, back, "reject")

    def join_ack(self, m: node_pb2.JoinAck) -> None:
        """The leader sequenced the caller: keep the sequence ON the channel (survives restarts).
        The position is written first, so a CLUSTERQ_SEQ seen on the channel means both are there."""
        c = self.app.callers.get(m.call_id)
        if c is None:
            return
        self.tell_position(c, m.position)
        if m.arrival_seq != c.arrival_seq:  # a re-join after a leader change keeps its sequence
            c.arrival_seq = m.arrival_seq
            self._write(c, r.VAR_SEQ, str(m.arrival_seq))

    def tell_position(self, c: r.Caller, position: int) -> None:
        """Keep the caller's last told position on its channel (CLUSTERQ_POSITION); unchanged
        values are not written again."""
        c.position = position
        if position != c.told_position:
            c.told_position = position
            self._write(c, r.VAR_POSITION, str(position))

    def _write(self, c: r.Caller, name: str, value: str) -> None:
        """Set a variable on the caller's channel without ever holding its bridging back.

        ARI runs a channel's synchronous commands (set variable, add to bridge...) one by one on the
        channel's thread, so a write sent while a prompt plays returns only when the prompt ends.
        While a prompt plays the write goes on a chain of its own (on the caller's main chain it would
        hold the bridging back behind the prompt); otherwise on the main chain, so it lands before
        whatever the caller's next action is (e.g. the announcement telling that position).
        """
        if c.playback_id:
            self._set_aside(c, name, value)
        else:
            self.app.serial.run(c.call_id, lambda: _quiet(self.ari.set_var(c.call_id, name, value)), name)

    def _set_aside(self, c: r.Caller, name: str, value: str) -> None:
        self.app.serial.run(c.call_id + "/vars", lambda: _quiet(self.ari.set_var(c.call_id, name, value)), name)

    def queue_media(self, m: node_pb2.QueueMedia) -> None:
        """Music class and exit context of the caller's queue."""
        c = self.app.callers.get(m.call_id)
        if c is None:
            return
        music = m.music_class if m.music_class not in ("", "none") else ""
        # Kept on the channel for a restarted app; written only when they change, so a queue with
        # the defaults (default music, no exit context) costs no extra ARI request.
        if m.exit_context != c.exit_context:
            self._set_aside(c, r.VAR_EXIT_CONTEXT, m.exit_context)
        if music != c.music_class:
            self._set_aside(c, r.VAR_MUSIC, music or "none")
        c.exit_context = m.exit_context
        changed = music != c.music_class or not c.moh_on
        c.music_class = music
        if c.args.ringing or c.state not in (r.WAITING, r.RINGING) or c.playback_id or not changed:
            return

        async def moh() -> None:
            if not music:  # music off for this queue (music_class "none"): silence
                if c.moh_on:
                    c.moh_on = False
                    await self.ari.stop_moh(c.call_id)
                return
            c.moh_on = True
            await self.ari.start_moh(c.call_id, music)

        self.app.serial.run(c.call_id, moh, "moh")

    def rejected(self, m: node_pb2.JoinReject) -> None:
        """The leader refused the join (unknown queue, full, joinempty...)."""
        c = self.app.callers.get(m.call_id)
        if c is not None:
            self.leave(c, status_name(m.status), message=m.message)

    # ---- leaving ---------------------------------------------------------------------------
    def leave(self, c: r.Caller, status: str, *, context: str = "", extension: str = "", message: str = "") -> None:
        """Give the caller back to the dialplan with CLUSTERQ_STATUS / _WAIT / _POSITION."""
        if self.app.callers.pop(c.call_id, None) is None:
            return
        c.state = r.LEAVING
        # The time spent waiting in the queue: for a caller that talked to an agent, until then.
        wait = max(0, round((c.connected_wall or time.time()) - c.joined_wall))
        ari = self.ari

        async def back() -> None:
            await self._silence(c)
            await ari.set_var(c.call_id, "CLUSTERQ_STATUS", status)
            await ari.set_var(c.call_id, "CLUSTERQ_WAIT", str(wait))
            await ari.set_var(c.call_id, r.VAR_POSITION, str(c.position))
            if message:
                await ari.set_var(c.call_id, "CLUSTERQ_MESSAGE", message[:200])
            if context:
                await ari.continue_in_dialplan(c.call_id, context=context, extension=extension, priority=1)
            else:
                await ari.continue_in_dialplan(c.call_id)

        self.app.serial.run(c.call_id, back, "leave")

    def continue_decision(self, m: node_pb2.ContinueInDialplan) -> None:
        """The leader sends the caller back (timeout, leave-empty, queue deleted, node lost...)."""
        c = self.app.callers.get(m.call_id)
        if c is not None:
            c.position = m.position or c.position
            self.leave(c, status_name(m.status), context=m.context, extension=m.extension)

    def digit(self, c: r.Caller, digit: str) -> None:
        """A DTMF digit from a waiting caller: exit to <digit>@<exit context> when that extension
        exists there (like app_queue); any other digit is only reported."""
        if c.state not in (r.WAITING, r.RINGING) or not c.exit_context:
            self._report_digit(c, digit)
            return
        context = c.exit_context

        async def check() -> None:
            if not await self._exit_exists(c.call_id, context, digit):
                self._report_digit(c, digit)
            elif self.app.callers.get(c.call_id) is c and c.state in (r.WAITING, r.RINGING):
                self.app.send(node_pb2.NodeEvent(call_left=node_pb2.CallLeft(call_id=c.call_id, reason="exitkey")))
                self.leave(c, "EXITWITHKEY", context=context, extension=digit)

        self.app.serial.run(c.call_id + "/digit", check, "exit-digit")

    def _report_digit(self, c: r.Caller, digit: str) -> None:
        self.app.send(node_pb2.NodeEvent(digit_pressed=node_pb2.DigitPressed(call_id=c.call_id, digit=digit)))

    async def _exit_exists(self, call_id: str, context: str, digit: str) -> bool:
        """Whether <digit>@<context> exists (DIALPLAN_EXISTS, read at once even while a prompt plays).

        Continuing to a missing extension would hang the caller up. Without func_dialplan loaded
        Asterisk cannot tell: every digit exits then, as documented in docs/dialplan.md."""
        try:
            found = await self.ari.get_var(call_id, f"DIALPLAN_EXISTS({context},{digit},1)")
        except ChannelGone:
            return False
        except AriError as exc:
            log.info("cannot check exit digit %s@%s (%s): exiting anyway", digit, context, exc)
            return True
        return found != "0"

    def caller_gone(self, c: r.Caller) -> None:
        """The caller's channel left Stasis or hung up."""
        if self.app.callers.pop(c.call_id, None) is None:
            return
        if c.state in (r.CONNECTED, r.CONNECTING):
            self.app.send(node_pb2.NodeEvent(call_ended=node_pb2.CallEnded(
                call_id=c.call_id, offer_id=c.offer_id, agent_hung_up=False)))
            self._teardown(c, hang_peer=True)
        elif c.state != r.LEAVING:
            self.app.send(node_pb2.NodeEvent(call_left=node_pb2.CallLeft(call_id=c.call_id, reason="hangup")))
            self.app.legs.caller_left(c.call_id)

    def peer_gone(self, channel_id: str) -> None:
        """The agent's leg (or trunk leg) of a connected caller hung up: the caller continues."""
        c = next((x for x in self.app.callers.values() if x.peer_channel == channel_id), None)
        if c is None or c.state not in (r.CONNECTED, r.CONNECTING):
            return
        self.app.send(node_pb2.NodeEvent(call_ended=node_pb2.CallEnded(
            call_id=c.call_id, offer_id=c.offer_id, agent_hung_up=True)))
        self._teardown(c, hang_peer=False)
        self.leave(c, "CONTINUE")

    def _teardown(self, c: r.Caller, hang_peer: bool) -> None:
        ari, peer, bridge = self.ari, c.peer_channel, c.bridge_id

        async def down() -> None:
            if hang_peer and peer:
                await _quiet(ari.hangup(peer))
            if bridge:
                await _quiet(ari.destroy_bridge(bridge))

        self.app.serial.run(c.call_id + "/teardown", down, "teardown")

    # ---- offers and bridging ---------------------------------------------------------------
    def offered(self, m: node_pb2.Offer) -> None:
        """An agent rings for this caller."""
        c = self.app.callers.get(m.call_id)
        if c is not None and c.state == r.WAITING:
            # The agent too: a trunk leg may be bridged before Connect arrives (see inbound), and a
            # Register snapshot of the connected call must name its agent.
            c.state, c.offer_id, c.agent_id = r.RINGING, m.offer_id, m.agent_id
            self._take_early_inbound(m.offer_id)

    def offer_cancelled(self, m: node_pb2.CancelOffer) -> None:
        """The leader cancelled an offer: the caller waits again (keeping its place)."""
        c = self.app.callers.get(m.call_id)
        # CONNECTING too: the agent's leg failed before the call was bridged (Connect came too late).
        if c is not None and c.state in (r.RINGING, r.CONNECTING) and c.offer_id == m.offer_id:
            c.state, c.offer_id, c.agent_id = r.WAITING, "", ""

    def bridge_local(self, call_id: str, offer_id: str, agent_id: str, peer_channel: str) -> bool:
        """Bridge the caller with a channel on this node (agent leg or inbound trunk leg)."""
        c = self.app.callers.get(call_id)
        if c is None or c.state not in (r.WAITING, r.RINGING, r.CONNECTING):
            return False
        c.state, c.offer_id, c.agent_id, c.peer_channel = r.CONNECTED, offer_id, agent_id, peer_channel
        c.bridge_id, c.connected_wall = bridge_id(self.app.node_id, offer_id), time.time()
        ari, bridge = self.ari, c.bridge_id

        async def connect() -> None:
            # Stop any announcement first: a prompt must never delay the connection.
            await self._silence(c)
            await ari.create_bridge(bridge, name=f"clusterq-{c.args.queue}")
            await ari.add_to_bridge(bridge, [c.call_id, peer_channel])
            await _quiet(ari.set_var(c.call_id, r.VAR_AGENT, agent_id))

        self.app.serial.run(c.call_id, connect, "bridge")
        return True

    def expect_remote(self, call_id: str, offer_id: str, agent_id: str) -> None:
        """Connect for a caller here and an agent on another node: wait for its trunk leg."""
        c = self.app.callers.get(call_id)
        if c is not None and c.state in (r.WAITING, r.RINGING):
            c.state, c.offer_id, c.agent_id = r.CONNECTING, offer_id, agent_id
            self._take_early_inbound(offer_id)

    def inbound(self, channel_id: str, offer_id: str) -> None:
        """A trunk leg from the agent's node arrived: answer it and bridge it with the caller."""
        c = next((x for x in self.app.callers.values() if x.offer_id == offer_id), None)
        if c is None or c.state not in (r.CONNECTING, r.RINGING):
            # Probably ahead of the leader's decisions for its caller: keep it for INBOUND_WAIT.
            log.info("inbound leg %s for offer %s before its decision: waiting", channel_id, offer_id)
            self._early_inbound[offer_id] = channel_id
            asyncio.get_running_loop().call_later(INBOUND_WAIT, self._drop_early_inbound, offer_id, channel_id)
            return
        self.app.serial.run(c.call_id, lambda: self.ari.answer(channel_id), "answer-inbound")
        self.bridge_local(c.call_id, offer_id, c.agent_id, channel_id)

    def _take_early_inbound(self, offer_id: str) -> None:
        channel_id = self._early_inbound.pop(offer_id, None)
        if channel_id is not None:
            self.inbound(channel_id, offer_id)

    def _drop_early_inbound(self, offer_id: str, channel_id: str) -> None:
        if self._early_inbound.get(offer_id) == channel_id:
            del self._early_inbound[offer_id]
            log.info("inbound leg %s for unknown offer %s: hanging up", channel_id, offer_id)
            self.app.serial.run(channel_id, lambda: _quiet(self.ari.hangup(channel_id)), "hangup")

    # ---- media -----------------------------------------------------------------------------
    async def _silence(self, c: r.Caller) -> None:
        if c.playback_id:
            pid, c.playback_id = c.playback_id, ""
            self._playbacks.pop(pid, None)
            await _quiet(self.ari.stop_playback(pid))
        if c.moh_on:
            c.moh_on = False
            await _quiet(self.ari.stop_moh(c.call_id))

    def announce(self, m: node_pb2.Announce) -> None:
        """Play position / hold time (interrupting the music, which resumes afterwards)."""
        c = self.app.callers.get(m.call_id)
        if c is None:
            return
        self.tell_position(c, m.position)
        self._play(c, announcement(m.position, m.estimated_wait, m.say_position, m.say_holdtime))

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
            if c.moh_on:
                c.moh_on = False
                await ari.stop_moh(c.call_id)
            await ari.play(c.call_id, media, pid)

        self.app.serial.run(c.call_id, play, "announce")

    def recover_media(self, c: r.Caller) -> None:
        """After an ARI reconnect: this prompt's PlaybackFinished may have been lost with the
        websocket, so stop it (a no-op if it ended) and give the caller its music back."""
        if not c.playback_id:
            return
        pid, c.playback_id = c.playback_id, ""
        self._playbacks.pop(pid, None)

        async def recover() -> None:
            await _quiet(self.ari.stop_playback(pid))
            if c.state in (r.WAITING, r.RINGING) and not c.args.ringing and c.music_class:
                c.moh_on = True
                await self.ari.start_moh(c.call_id, c.music_class)

        self.app.serial.run(c.call_id, recover, "recover-media")

    def playback_finished(self, playback_id: str, channel_id: str | None) -> None:
        """An announcement ended: music resumes if the caller still waits."""
        call_id = self._playbacks.pop(playback_id, None)
        c = self.app.callers.get(call_id or "")
        if c is None or c.playback_id != playback_id:
            return
        c.playback_id = ""
        if c.state in (r.WAITING, r.RINGING) and not c.args.ringing and c.music_class:
            c.moh_on = True
            self.app.serial.run(c.call_id, lambda: self.ari.start_moh(c.call_id, c.music_class), "moh")


async def _quiet(aw: object) -> None:
    try:
        await aw  # type: ignore[misc]
    except AriError:
        pass

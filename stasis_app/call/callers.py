"""What happens to callers on their own node: answer, music, leaving, bridging (announcements:
announcements.py).

Invariant: a caller is removed from NodeApp.callers exactly once (leave() or caller_gone()), and
exactly one of CallLeft / CallEnded is reported for it unless the leader itself decided it left.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from typing import TYPE_CHECKING

from clusterq_proto.v1 import common_pb2, node_pb2
from stasis_app.ari.port import AriError, ChannelGone, best_effort, retried
from stasis_app.call import records as r
from stasis_app.call.announcements import Announcements
from stasis_app.call.music import Music

if TYPE_CHECKING:
    from stasis_app.node import NodeApp

log = logging.getLogger(__name__)

# Delays between attempts to send a leaving caller back to the dialplan while Asterisk gives no answer
# (about 10 s in all, then the caller is hung up rather than left in silence).
LEAVE_RETRIES = (0.2, 0.5, 1.0, 2.0, 3.0, 3.0)


def status_name(status: common_pb2.CallerStatus.ValueType) -> str:
    """CLUSTERQ_STATUS value of a proto status (enum name without its prefix).

    A value this build does not know (a newer coordinator during a rolling upgrade) still sends the
    caller back: as UNAVAILABLE, the status of "the queue could not serve this caller"."""
    try:
        return common_pb2.CallerStatus.Name(status).removeprefix("CALLER_STATUS_")
    except ValueError:
        log.warning("unknown caller status %d from the coordinator: reported as UNAVAILABLE", status)
        return "UNAVAILABLE"


class CallerActions:
    """Caller-side behaviour of a NodeApp."""

    def __init__(self, app: NodeApp) -> None:
        self.app = app
        self.ari = app.ari
        self.music = Music(app)
        self.prompts = Announcements(app, self)

    # ---- joining ---------------------------------------------------------------------------
    def start(self, c: r.Caller, adopted: bool) -> None:
        """Answer (or ring), start music, remember join data on the channel, report the join.

        An adopted caller (found on the channel list by a restarted app) is not reported here
        (NodeApp's resync does). It is answered if its channel shows no answer (`c.answered` comes
        from the channel), and its music is taken as playing only once sequenced: the music starts
        with the JoinAck, whose CLUSTERQ_SEQ is written after the music request. What is missing
        is started (recover), so a caller whose old process died half-way is not left in silence.
        """
        if adopted:
            # With shared music a sequenced caller sits in its class's holding bridge, whose music
            # plays on (prompts too play inside it). Its own music may have ended with a prompt while
            # no process listened (the PlaybackFinished is lost): started again by recover below (a
            # restart of the music costs a moment; silence lasted until the next prompt).
            c.moh_on = (c.state == r.WAITING and not c.args.ringing and bool(c.music_class)
                        and c.arrival_seq != 0 and self.music.shared)
            self.music.adopted(c)
            self._arm_timeout(c)
            self.recover(c)
            return
        ari = self.ari

        async def setup() -> None:
            await self._answer(c)
            # Only for a restarted app's adoption: their loss costs the caller nothing now.
            await best_effort(ari.set_var(c.call_id, r.VAR_JOINED, f"{c.joined_wall:.3f}"))
            await best_effort(ari.set_var(c.call_id, r.VAR_ORDER, str(c.join_order)))
            # With a leader connected, music starts when its JoinAck names the queue's music class
            # (so a queue with music off never starts any); without one, default music at once.
            if not self.app.coord.connected and not c.args.ringing and c.state in (r.WAITING, r.RINGING):
                await self.music.start(c, c.music_class)

        self.app.serial.run(c.call_id, setup, "join")
        self.report_join(c)
        self.app.counters.callers_joined += 1
        self._arm_timeout(c)

    async def _answer(self, c: r.Caller) -> None:
        """Answer the caller (or indicate ringing, per its option), retried while Asterisk gives no
        answer; if that still fails, the next ARI resync tries again (see recover)."""
        if c.args.ringing:
            await retried(lambda: self.ari.ring(c.call_id))
        else:
            await retried(lambda: self.ari.answer(c.call_id))
        c.answered = True

    def recover(self, c: r.Caller) -> None:
        """After an ARI reconnect: answer a caller whose answer was lost, end a prompt whose end may
        have been lost, and give music back to a waiting caller whose music could not be started."""
        if c.state not in (r.WAITING, r.RINGING):
            return
        if not c.answered:
            self.app.serial.run(c.call_id, lambda: self._answer(c), "answer-again")
        if c.playback_id:
            self.prompts.recover_media(c)  # music comes back after the prompt is stopped
        else:
            self.resume_music(c)

    def report_join(self, c: r.Caller) -> None:
        """Tell the leader about the caller (dropped while no stream is up: the Register covers it)."""
        self.app.send(node_pb2.NodeEvent(call_joined=c.joined_pb(time.time() - c.joined_wall)))

    def _arm_timeout(self, c: r.Caller) -> None:
        # A timer, not a sleeping task: it is cancelled when the caller leaves (leave / caller_gone),
        # so a long timeout= (up to a day) keeps nothing alive after the call.
        if c.args.timeout:
            delay = max(0.0, c.joined_wall + c.args.timeout - time.time())
            c.timeout_timer = asyncio.get_running_loop().call_later(delay, self._timeout, c)

    def rearm_timeout(self, c: r.Caller) -> None:
        """A caller waiting again (its call failed before the bridge): its timeout= counts again; one
        that fired while it was connecting fires now."""
        if c.timeout_timer is None:
            self._arm_timeout(c)

    def _timeout(self, c: r.Caller) -> None:
        c.timeout_timer = None
        if self.app.callers.get(c.call_id) is c and c.state in (r.WAITING, r.RINGING):
            self.app.send(node_pb2.NodeEvent(call_left=node_pb2.CallLeft(call_id=c.call_id, reason="timeout")))
            self.leave(c, "TIMEOUT")

    @staticmethod
    def _disarm_timeout(c: r.Caller) -> None:
        if c.timeout_timer is not None:
            c.timeout_timer.cancel()
            c.timeout_timer = None

    def reject_early(self, channel_id: str, status: str, message: str) -> None:
        """A caller we never queued (bad arguments, no coordinator): straight back to the dialplan."""
        variables = {"CLUSTERQ_STATUS": status, "CLUSTERQ_WAIT": "0", r.VAR_POSITION: "0",
                     "CLUSTERQ_MESSAGE": message[:200]}
        self.app.counters.caller_sent_back(status)
        self.app.serial.run(channel_id, lambda: self.continue_channel(channel_id, variables), "reject")

    def join_ack(self, m: node_pb2.JoinAck) -> None:
        """The leader sequenced the caller: keep the sequence ON the channel (survives restarts).
        The position is written first, so a CLUSTERQ_SEQ seen on the channel means both are there."""
        c = self.app.callers.get(m.call_id)
        if c is None:
            return
        self.tell_position(c, m.position)
        if not c.original_position:
            c.original_position = m.position  # the first JoinAck's: app_queue's origposition
        if m.arrival_seq != c.arrival_seq:  # a re-join after a leader change keeps its sequence
            c.arrival_seq = m.arrival_seq
            self._write(c, r.VAR_SEQ, str(m.arrival_seq))

    def set_priority(self, m: node_pb2.CallerPriority) -> None:
        """An operator changed the caller's priority: reported from now on (Register snapshots) and
        kept on its channel (CLUSTERQ_PRIORITY) for a restarted app, as its Stasis argument cannot be."""
        c = self.app.callers.get(m.call_id)
        if c is not None and c.args.priority != m.priority:
            c.args = dataclasses.replace(c.args, priority=m.priority)
            c.priority_set = True
            self._write(c, r.VAR_PRIORITY, str(m.priority))

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
            self.app.serial.run(c.call_id, lambda: best_effort(self.ari.set_var(c.call_id, name, value)), name)

    def _set_aside(self, c: r.Caller, name: str, value: str) -> None:
        self.app.serial.run(c.call_id + "/vars", lambda: best_effort(self.ari.set_var(c.call_id, name, value)), name)

    def queue_media(self, call_id: str, m: node_pb2.QueueMedia) -> None:
        """Music class and exit context of the caller's queue (from its JoinAck)."""
        c = self.app.callers.get(call_id)
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
                await self.music.stop(c, moving=False)
                return
            await self.music.start(c, music)

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
        self._disarm_timeout(c)
        c.state = r.LEAVING
        self.app.counters.caller_sent_back(status)
        # The time spent waiting in the queue: for a caller that talked to an agent, until then.
        wait = max(0, round((c.connected_wall or time.time()) - c.joined_wall))
        variables = {"CLUSTERQ_STATUS": status, "CLUSTERQ_WAIT": str(wait), r.VAR_POSITION: str(c.position)}
        if message:
            variables["CLUSTERQ_MESSAGE"] = message[:200]
        if c.priority_set:  # an operator's change was for this visit: a later Stasis() takes its own argument
            variables[r.VAR_PRIORITY] = ""

        async def back() -> None:
            await self.silence(c)
            await self.continue_channel(c.call_id, variables, context, extension)

        self.app.serial.run(c.call_id, back, "leave")

    async def continue_channel(self, call_id: str, variables: dict[str, str], context: str = "",
                               extension: str = "") -> None:
        """Set the result variables, then continue in the dialplan. A variable that cannot be set must
        not keep the caller in silence: the variables are best effort, the continue is tried again
        while Asterisk gives no answer (the caller is no longer tracked, nothing else would). Also
        used for channels that never were callers (agent operations, call/agent_ops.py)."""
        await asyncio.gather(*(best_effort(self.ari.set_var(call_id, k, v)) for k, v in variables.items()))
        for delay in LEAVE_RETRIES:
            try:
                if context:
                    await self.ari.continue_in_dialplan(call_id, context=context, extension=extension, priority=1)
                else:
                    await self.ari.continue_in_dialplan(call_id)
                return
            except ChannelGone:
                return
            except AriError as exc:
                log.warning("continue of %s failed (%s): again in %.1f s", call_id, exc, delay)
            await asyncio.sleep(delay)
        log.error("caller %s could not be sent back to the dialplan: hanging it up", call_id)
        await best_effort(self.ari.hangup(call_id))

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
                self.app.send(node_pb2.NodeEvent(call_left=node_pb2.CallLeft(call_id=c.call_id, reason="exitkey",
                                                                             key=digit)))
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
        self._disarm_timeout(c)
        if c.state in (r.CONNECTED, r.CONNECTING):
            self.app.counters.callers_hung_up_connected += 1
            self.app.send(node_pb2.NodeEvent(call_ended=node_pb2.CallEnded(
                call_id=c.call_id, offer_id=c.offer_id, agent_hung_up=False)))
            self.app.connections.teardown(c, hang_peer=True)
        elif c.state != r.LEAVING:
            self.app.counters.callers_hung_up_waiting += 1
            self.app.send(node_pb2.NodeEvent(call_left=node_pb2.CallLeft(call_id=c.call_id, reason="hangup")))
            self.app.legs.caller_left(c.call_id)

    # ---- media -----------------------------------------------------------------------------
    async def silence(self, c: r.Caller) -> None:
        """Stop the caller's prompt and music (before a bridge or leaving the queue)."""
        await self.prompts.stop(c)
        # Every caller of silence() next leaves its holding bridge anyway (a call's bridge, the dialplan).
        await self.music.stop(c, moving=True)

    def resume_music(self, c: r.Caller) -> None:
        """Give a waiting caller its queue's music back (unless a prompt plays or it hears ringing)."""
        if (c.state in (r.WAITING, r.RINGING) and not c.args.ringing and c.music_class and not c.moh_on
                and not c.playback_id):
            c.moh_on = True  # at once: a second resume before the request runs must not start it twice
            self.app.serial.run(c.call_id, lambda: self.music.start(c, c.music_class), "moh")

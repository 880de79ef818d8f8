"""queue_log: app_queue's call-centre event log, written by the leader for the whole cluster.

Reporting tools built on Asterisk's `/var/log/asterisk/queue_log` read the same lines here:
`epoch|callid|queue|agent|event|data1|data2|...` (docs.asterisk.org, Operation/Logging/Queue-Logs), with
the caller's channel id as callid, the agent id as agent ("NONE" when there is none) and times in whole
seconds, except RINGNOANSWER's and RINGCANCELED's ring time in ms, as app_queue writes them (its
CONNECT ring time is whole seconds, truncated). A caller's position when it leaves is its 1-based place
in the line at that moment (as app_queue renumbers its callers); origposition is its position at join:

  ENTERQUEUE||callerid|position        CONNECT|holdtime|agent leg channel id|ringtime s
  COMPLETECALLER / COMPLETEAGENT|holdtime|calltime|origposition
  ABANDON / EXITWITHTIMEOUT / EXITEMPTY|position|origposition|waittime
  EXITWITHKEY|key|position|origposition|waittime
  RINGNOANSWER|ringtime ms             RINGCANCELED|ringtime ms (before the caller's ABANDON)
  ADDMEMBER| / REMOVEMEMBER|           PAUSEALL|reason, then PAUSE|reason per queue (UNPAUSEALL, UNPAUSE)
  PAUSEALL|Auto-Pause, PAUSE|Auto-Pause (autopause after unanswered rings, like app_queue's autopause=all)
An event without data ends with "|"; a "|" or a control character inside a field (a caller id is
whatever the far end sent) is written as "_", so that every line has its fields. A caller refused at
join (full, joinempty) gets no line, as in app_queue. Checked against the lines Asterisk 22.10's
app_queue writes for the same scenarios.
A caller whose node was lost is logged as ABANDON, one whose queue was deleted as EXITEMPTY: only
app_queue's own ending events, so that no call stays open in a reporting tool.

`QueueLogBook` turns each engine step (the event, the decisions it produced, the leader's clock) into
lines: pure and synchronous like the engine, so it runs on the leader's event path without I/O; the
lines go to a `write` callable (a buffered file appender, see `QueueLogFile`). Each leader writes its
own file from its term on: after a leader change the call's earlier lines are in the old leader's file
(a re-reported caller gets no second ENTERQUEUE); merge the replicas' files sorted by time.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from clusterq_common.channel_names import agent_leg_id
from clusterq_common.text import breaks_line, one_line
from coordinator.queue import (
    AgentLoggedIn,
    AgentLoggedOut,
    AgentPaused,
    AgentStateChanged,
    AgentUnpaused,
    Announce,
    CallAdopted,
    CallEnded,
    CallerExit,
    CallerJoined,
    CallerLeft,
    CallerStatus,
    CancelOffer,
    Connect,
    Decision,
    Event,
    JoinAccepted,
    JoinRejected,
    NodeLost,
    Offer,
    OfferFailed,
)

__all__ = ["QueueLogBook", "QueueLogFile"]

log = logging.getLogger(__name__)

# Every way a waiting caller ends is one of app_queue's ending events, which reporting tools know: a
# caller whose node was lost is gone unanswered (ABANDON); one whose queue was deleted goes back to the
# dialplan as a queue without members sends it (EXITEMPTY). clusterq's own reason is the caller's
# CLUSTERQ_STATUS and the coordinator's log; a verb of its own here left the call open in the tools.
_EXITS = {CallerStatus.TIMEOUT: "EXITWITHTIMEOUT", CallerStatus.LEAVEEMPTY: "EXITEMPTY",
          CallerStatus.LEAVEUNAVAIL: "EXITEMPTY", CallerStatus.NODE_LOST: "ABANDON",
          CallerStatus.QUEUE_DELETED: "EXITEMPTY", CallerStatus.EXITWITHKEY: "EXITWITHKEY"}
_LEFT = {"hangup": "ABANDON", "timeout": "EXITWITHTIMEOUT", "exitkey": "EXITWITHKEY"}


@dataclass(slots=True)
class _Call:
    queue: str
    node: str
    number: str
    joined_at: float  # leader clock
    orig_position: int = 0
    position: int = 0
    agent: str = ""
    connected: bool = False
    connected_at: float = 0.0  # leader clock; meaningful while connected


@dataclass(slots=True)
class _Ring:
    call_id: str
    queue: str
    agent: str
    at: float


class QueueLogBook:
    """Engine steps in, queue_log lines out (see the module docstring)."""

    def __init__(self, write: Callable[[str], None]) -> None:
        self._write = write
        self._calls: dict[str, _Call] = {}
        self._rings: dict[str, _Ring] = {}  # offer id -> ring
        self._queues_of: dict[str, tuple[str, ...]] = {}  # agent -> queues it is a member of

    def record(self, event: Event, decisions: Sequence[Decision], now: float, wall: float,
               position: int | None = None) -> None:
        """Log one engine step: `now` on the leader's clock (the engine's), `wall` the Unix time;
        `position`: for a CallerLeft, the caller's 1-based position just before it left (the engine's,
        read before the step), which app_queue logs in ABANDON and EXITWITHKEY."""
        stamp = f"{int(wall)}"
        if isinstance(event, CallerLeft):
            # app_queue ends the ring (RINGCANCELED) before the caller's ABANDON: a tool closing the
            # call at ABANDON would see a stray ring line after it.
            for d in decisions:
                self._decision(d, now, stamp)
            self._left(event, now, stamp, position)
            return
        self._event(event, now, stamp)
        for d in decisions:
            self._decision(d, now, stamp)

    def _line(self, stamp: str, call_id: str, queue: str, agent: str, kind: str, *data: object) -> None:
        # An event without data still ends with "|" ("...|QUEUESTART|"), as Asterisk's logger writes it.
        fields = (stamp, call_id or "NONE", queue or "NONE", agent or "NONE", kind,
                  *((str(x) for x in data) if data else ("",)))
        line = "|".join(fields)
        # The last line of defence: a "|" or a line break inside a field (a caller id as the far end set
        # it, a call id a node reported, any text a check upstream let through) would forge fields and
        # whole lines in every tool that reads the file. One pass over the clean line in C decides.
        if line.count("|") != len(fields) - 1 or not one_line(line):
            line = "|".join(map(_clean, fields))
        self._write(line + "\n")

    def _pause_lines(self, stamp: str, agent_id: str, paused: bool, reason: str) -> None:
        """A clusterq pause is the agent's, in every queue: app_queue's pause without a queue, PAUSEALL
        (UNPAUSEALL) then one PAUSE (UNPAUSE) per queue, each with the reason."""
        queues = self._queues_of.get(agent_id, ())
        if not queues:
            return
        self._line(stamp, "", "", agent_id, "PAUSEALL" if paused else "UNPAUSEALL", reason)
        for q in queues:
            self._line(stamp, "", q, agent_id, "PAUSE" if paused else "UNPAUSE", reason)

    def _complete(self, stamp: str, call_id: str, c: _Call, kind: str, now: float) -> None:
        """A connected call's end: COMPLETECALLER / COMPLETEAGENT|holdtime|calltime|origposition."""
        self._line(stamp, call_id, c.queue, c.agent, kind, _secs(c.connected_at - c.joined_at),
                   _secs(now - c.connected_at), _orig(c))

    def _left(self, event: CallerLeft, now: float, stamp: str, position: int | None) -> None:
        c = self._calls.pop(event.call_id, None)
        if c is None:
            return
        if c.connected:
            # The hangup crossed the Connect (the node still thought the caller was ringing): the
            # engine ends the call, so the CONNECT logged for it gets its end.
            self._complete(stamp, event.call_id, c, "COMPLETECALLER", now)
            return
        kind = _LEFT.get(event.reason, "ABANDON")
        key = (event.key,) if kind == "EXITWITHKEY" else ()
        self._line(stamp, event.call_id, c.queue, "", kind, *key, position or c.position, _orig(c),
                   _secs(now - c.joined_at))

    def _event(self, event: Event, now: float, stamp: str) -> None:
        if isinstance(event, CallerJoined):
            if event.call_id not in self._calls:
                joined = now if event.joined_at is None else event.joined_at
                re_report = event.re_report if event.re_report is not None else event.arrival_seq is not None
                # A re-report was entered by an earlier leader: its ENTERQUEUE is in that leader's log.
                self._calls[event.call_id] = _Call(event.queue, event.node_id, event.caller_number, joined,
                                                   orig_position=(event.original_position or -1) if re_report else 0)
        elif isinstance(event, CallAdopted):
            # Connected under an earlier leader (its CONNECT is in that leader's log): only the end is
            # logged here, with the hold and call times and the original position the node re-reported
            # (from now, and the current position, where it could not).
            if event.call_id not in self._calls and event.queue:
                self._calls[event.call_id] = _Call(event.queue, event.node_id, "", now - event.waited,
                                                   orig_position=event.original_position or -1,
                                                   agent=event.agent_id, connected=True,
                                                   connected_at=now - event.connected_for)
        elif isinstance(event, OfferFailed):
            ring = self._rings.pop(event.offer_id, None)
            if ring is not None:
                self._line(stamp, ring.call_id, ring.queue, ring.agent, "RINGNOANSWER", _ms(now - ring.at))
        elif isinstance(event, CallEnded):
            c = self._calls.pop(event.call_id, None)
            if c is not None and c.connected:
                self._complete(stamp, event.call_id, c, "COMPLETEAGENT" if event.agent_hung_up else "COMPLETECALLER",
                               now)
        elif isinstance(event, NodeLost):
            # Connected calls of a lost node ended with it (the engine ends them without a CallEnded).
            for call_id, c in [(k, v) for k, v in self._calls.items() if v.node == event.node_id and v.connected]:
                del self._calls[call_id]
                self._complete(stamp, call_id, c, "COMPLETECALLER", now)
        elif isinstance(event, AgentLoggedIn):
            queues = tuple(m.queue for m in event.agent.memberships)
            old = self._queues_of.get(event.agent.agent_id, ())
            # app_queue's data is empty ("PAUSED" for a member added paused: clusterq logs the pause
            # of a paused login as its own PAUSE lines right after).
            for q in queues:
                if q not in old:
                    self._line(stamp, "", q, event.agent.agent_id, "ADDMEMBER")
            for q in old:
                if q not in queues:
                    self._line(stamp, "", q, event.agent.agent_id, "REMOVEMEMBER")
            self._queues_of[event.agent.agent_id] = queues
        elif isinstance(event, AgentLoggedOut):
            for q in self._queues_of.pop(event.agent_id, ()):
                self._line(stamp, "", q, event.agent_id, "REMOVEMEMBER")
        elif isinstance(event, AgentPaused):
            self._pause_lines(stamp, event.agent_id, True, event.reason)
        elif isinstance(event, AgentUnpaused):
            self._pause_lines(stamp, event.agent_id, False, "")

    def _decision(self, d: Decision, now: float, stamp: str) -> None:
        if isinstance(d, JoinAccepted):
            c = self._calls.get(d.call_id)
            if c is None:
                return
            c.position = d.position
            if c.orig_position == 0:  # a new caller (not a re-report): it enters the queue now
                c.orig_position = d.position
                self._line(stamp, d.call_id, d.queue, "", "ENTERQUEUE", "", c.number, d.position)
        elif isinstance(d, JoinRejected):
            # app_queue logs nothing for a caller Queue() refuses (full, joinempty): it never entered.
            self._calls.pop(d.call_id, None)
        elif isinstance(d, Announce):
            c = self._calls.get(d.call_id)
            if c is not None:
                c.position = d.position
        elif isinstance(d, Offer):
            self._rings[d.offer_id] = _Ring(d.call_id, d.queue, d.agent_id, now)
        elif isinstance(d, AgentStateChanged):
            if d.state == "paused" and d.reason == "autopause":
                # app_queue's rna() pauses the member with the reason "Auto-Pause"; clusterq's pause is
                # in every queue, as app_queue's autopause=all logs it.
                self._pause_lines(stamp, d.agent_id, True, "Auto-Pause")
        elif isinstance(d, Connect):
            ring = self._rings.pop(d.offer_id, None)
            c = self._calls.get(d.call_id)
            if c is not None:
                c.agent, c.connected, c.connected_at = d.agent_id, True, now
                # app_queue: (orig - to) / 1000, the ring time in ms divided down to whole seconds.
                ring_s = _ms(now - ring.at) // 1000 if ring is not None else 0
                # data2: the member channel's id, as app_queue logs it (to join CDRs and recordings).
                self._line(stamp, d.call_id, c.queue, d.agent_id, "CONNECT", _secs(now - c.joined_at),
                           agent_leg_id(d.agent_node, d.offer_id), ring_s)
        elif isinstance(d, CancelOffer):
            ring = self._rings.pop(d.offer_id, None)
            if ring is None:
                c = self._calls.get(d.call_id)
                if c is not None and c.connected and c.agent == d.agent_id:
                    c.agent, c.connected = "", False  # failed before the bridge: it waits again
                return
            if d.reason == "timeout":
                self._line(stamp, d.call_id, ring.queue, d.agent_id, "RINGNOANSWER", _ms(now - ring.at))
            elif d.reason != "answered_elsewhere":  # ringall's losers: app_queue logs nothing either
                self._line(stamp, d.call_id, ring.queue, d.agent_id, "RINGCANCELED", _ms(now - ring.at))
        elif isinstance(d, CallerExit):
            kind = _EXITS.get(d.status)
            c = self._calls.get(d.call_id)
            if kind is None or c is None or c.connected:
                return  # CONTINUE after a call: its COMPLETEAGENT comes with CallEnded
            del self._calls[d.call_id]
            key = ("",) if kind == "EXITWITHKEY" else ()
            self._line(stamp, d.call_id, c.queue, "", kind, *key, d.position or c.position, _orig(c),
                       _secs(now - c.joined_at))


def _clean(field: str) -> str:
    """`field` with each "|" and each character that breaks a line (control characters, line and
    paragraph separators: clusterq_common.text.breaks_line) replaced by "_"."""
    return "".join("_" if c == "|" or breaks_line(c) else c for c in field)


# Durations come from clocks and from nodes (a re-reported caller's wait): a non-finite one is
# logged as 0 rather than raising inside the leader's event path after the engine changed state.
def _secs(seconds: float) -> int:
    return max(0, round(seconds)) if math.isfinite(seconds) else 0


def _ms(seconds: float) -> int:
    return max(0, round(seconds * 1000)) if math.isfinite(seconds) else 0


def _orig(c: _Call) -> int:
    return c.orig_position if c.orig_position > 0 else c.position


MAX_BUFFERED = 200_000  # lines kept while the file cannot be written; the oldest are dropped beyond


class QueueLogFile:
    """Appends lines to a file; `flush()` writes what was buffered (call it on a short timer)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._buffer: list[str] = []
        path.parent.mkdir(parents=True, exist_ok=True)

    def write(self, line: str) -> None:
        """Buffer one line (no I/O on the event path)."""
        self._buffer.append(line)

    def flush(self) -> None:
        """Append the buffered lines; an I/O error is logged and the lines are kept for the next try."""
        if not self._buffer:
            return
        try:
            with self.path.open("a", encoding="utf-8") as f:
                f.write("".join(self._buffer))
        except OSError as exc:
            dropped = max(0, len(self._buffer) - MAX_BUFFERED)
            del self._buffer[:dropped]
            log.error("queue_log %s: %s (%d lines kept, %d dropped)", self.path, exc, len(self._buffer), dropped)
            return
        self._buffer.clear()

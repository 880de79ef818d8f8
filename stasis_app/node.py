"""NodeApp: ARI events and coordinator decisions in, ARI actions and node events out.

State changes happen synchronously in one consumer loop (ARI events) and in the decision callback
(same asyncio loop), so they never interleave; the ARI requests they cause run per call in order
(KeyedSerializer) and concurrently across calls. Asterisk is the source of truth after a restart:
the caller's arrival sequence and join time live in channel variables (records.VAR_*), so a
restarted app re-adopts its callers with their place (call/resync.py). The coordinator stream is
opened only after the first resync (bounded by FIRST_RESYNC_WAIT), so the first Register already
carries every adopted caller with its arrival sequence.

Without a coordinator, callers keep their music for `grace` seconds; then the waiting ones (and
those still waiting for a cross-node trunk leg) leave with UNAVAILABLE, unanswered agent legs are
hung up, and until a coordinator is back new callers leave at once with UNAVAILABLE.

The devices the leader names (WatchDevices, the agents' state interfaces) are watched by
call/devices.py, which reports their states (DeviceStateChanged) through the same event path.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time

from clusterq_proto.v1 import node_pb2
from stasis_app.ari import events as ev
from stasis_app.ari.port import AriPort
from stasis_app.call import records as r
from stasis_app.call.agent_args import AGENT_OPS
from stasis_app.call.agent_legs import UNANSWERED, AgentLegs
from stasis_app.call.agent_ops import AgentOps
from stasis_app.call.args import BadArgs, parse_args
from stasis_app.call.callers import CallerActions
from stasis_app.call.connections import CallerConnections
from stasis_app.call.devices import DeviceWatch
from stasis_app.call.resync import RESERVED_FIRST_ARGS, Reconciler
from stasis_app.call.serial import KeyedSerializer
from stasis_app.config import StasisSettings
from stasis_app.coordinator_client import CoordinatorClient
from stasis_app.health import Readiness
from stasis_app.metrics import NodeCounters

log = logging.getLogger(__name__)

# Longest wait for Asterisk before the coordinator stream opens anyway (e.g. Asterisk is down).
FIRST_RESYNC_WAIT = 5.0


class NodeApp:
    """The stasis app of one Asterisk node."""

    def __init__(self, settings: StasisSettings, ari: AriPort) -> None:
        self.settings = settings
        self.node_id = settings.node_id
        self.ari = ari
        self.serial = KeyedSerializer()
        self.callers: dict[str, r.Caller] = {}
        self.counters = NodeCounters()  # /metrics totals, incremented by the call modules (metrics.py)
        self._ringing_epoch = 0  # the leader epoch whose offers callers may be ringing for
        self.coord = CoordinatorClient(settings.node_id, settings.coordinators, self.snapshot, self.on_decision,
                                       self.on_coordinator, flush_delay=settings.flush_interval,
                                       tls=settings.coordinator_tls)
        self.actions = CallerActions(self)
        self.connections = CallerConnections(self)
        self.legs = AgentLegs(self)
        self.devices = DeviceWatch(ari, self.send)  # the leader's WatchDevices (call/devices.py)
        self.agent_ops = AgentOps(self)  # agent-login & co. from the dialplan (call/agent_ops.py)
        self._join_order = 0
        self._grace_task: asyncio.Task[None] | None = None
        # True once no coordinator was reachable for the grace time, until one is again.
        self.unavailable = False
        self.ready = asyncio.Event()  # set once a coordinator stream came up; stays set (health.py)
        self.first_resync = asyncio.Event()
        # True from the end of a resync after AriConnected until the next AriDisconnected.
        self.ari_connected = False
        self.stopping = False  # run() is ending (SIGTERM): not ready any more
        self._stopped = asyncio.Event()

    # ---- lifecycle -------------------------------------------------------------------------
    async def run(self) -> None:
        """Run the ARI adapter, the coordinator stream and the event loop until cancelled or replaced."""
        tasks = [asyncio.ensure_future(self.ari.run()), asyncio.ensure_future(self._coordinator()),
                 asyncio.ensure_future(self._consume()), asyncio.ensure_future(self._stopped.wait())]
        self._start_grace()
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for t in done:
                exc = None if t.cancelled() else t.exception()
                if exc is not None:
                    log.error("node app task failed", exc_info=exc)
                    # Raised, so that the process exits non-zero and its supervisor restarts it.
                    raise exc
        finally:
            self.stopping = True
            self.coord.close()
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self.serial.cancel_all()
            self.devices.close()
            await self.agent_ops.close()

    async def _coordinator(self) -> None:
        try:
            # asyncio.timeout: wait_for (3.11) can swallow a cancellation that comes as the wait completes.
            async with asyncio.timeout(FIRST_RESYNC_WAIT):
                await self.first_resync.wait()
        except TimeoutError:
            log.warning("Asterisk not reachable after %.0f s: connecting to the coordinator anyway",
                        FIRST_RESYNC_WAIT)
        await self.coord.run()

    async def _consume(self) -> None:
        async for event in self.ari.events():
            try:
                await self.on_ari_event(event)
            except Exception:
                log.exception("handling %s failed", type(event).__name__)

    def readiness(self) -> Readiness:
        """What the /readyz probe answers from (stasis_app/health.py)."""
        return Readiness(ari_connected=self.ari_connected, coordinator_seen=self.ready.is_set(),
                         stood_down=self._stopped.is_set(), stopping=self.stopping)

    def send(self, event: node_pb2.NodeEvent) -> None:
        """Report one event to the leader."""
        self.coord.send(event)

    # ---- coordinator side ------------------------------------------------------------------
    def snapshot(self) -> node_pb2.Register:
        """Everything this node holds, for a Register after (re)connecting."""
        now = time.time()
        reg = node_pb2.Register()
        for c in sorted(self.callers.values(), key=lambda c: c.join_order):
            if c.state == r.LEAVING:
                continue
            state = "connected" if c.state in (r.CONNECTED, r.CONNECTING) else "waiting"
            c.reported_connected = c.reported_connected or state == "connected"
            reg.calls.append(node_pb2.CallSnapshot(joined=c.joined_pb(now - c.joined_wall),
                                                   arrival_seq=c.arrival_seq, state=state,
                                                   offer_id=c.offer_id, agent_id=c.agent_id,
                                                   connected_for=max(0.0, now - c.connected_wall)
                                                   if c.connected_wall else 0.0))
        for leg in self.legs.legs.values():
            reg.agent_legs.append(node_pb2.AgentLegSnapshot(offer_id=leg.offer_id, agent_id=leg.agent_id,
                                                            call_id=leg.call_id, state=leg.state,
                                                            caller_node=leg.caller_node))
        reg.devices.extend(self.devices.known())
        return reg

    def on_coordinator(self, connected: bool) -> None:
        """Stream up or down: unanswered offers of an old leader are void; start/stop the grace timer."""
        if connected:
            self.unavailable = False
            if self._grace_task is not None:
                self._grace_task.cancel()
                self._grace_task = None
            self.legs.drop_stale(self.coord.highest_epoch)
            if self.coord.highest_epoch > self._ringing_epoch:
                # Offers of an older leader are void; the new one re-offers. The same leader's go on
                # (it kept them while the stream was down): reset, a caller whose agent answered
                # meanwhile was reported plainly waiting, and the leader took its call for failed.
                self._ringing_epoch = self.coord.highest_epoch
                for c in self.callers.values():
                    if c.state == r.RINGING:
                        c.state, c.offer_id = r.WAITING, ""
            self.ready.set()
        else:
            self._start_grace()
            for c in self.callers.values():
                if c.state == r.WAITING and not c.arrival_seq:
                    # Its JoinAck (which starts the music) never came and no leader may answer for
                    # the whole grace: default music now, as for a caller joining without a leader.
                    self.actions.resume_music(c)

    def _start_grace(self) -> None:
        if self._grace_task is None and not self.coord.connected:
            self._grace_task = asyncio.ensure_future(self._grace())

    async def _grace(self) -> None:
        await asyncio.sleep(self.settings.grace)
        self._grace_task = None
        if self.coord.connected:
            return
        self.unavailable = True
        # CONNECTING too: the trunk leg it waits for would have to be bridged without a leader, and a
        # lost trunk leg would keep it in Stasis forever.
        waiting = [c for c in self.callers.values() if c.state in (r.WAITING, r.RINGING, r.CONNECTING)]
        log.warning("no coordinator for %.1f s: giving %d waiting callers back to the dialplan (UNAVAILABLE)",
                    self.settings.grace, len(waiting))
        for c in waiting:
            self.actions.leave(c, "UNAVAILABLE")
        # Nobody can Connect an answered agent leg now: release the agents.
        self.legs.drop_stale(UNANSWERED)

    def on_decision(self, dec: node_pb2.Decision) -> None:
        """Execute one decision of the leader (already checked against the highest epoch)."""
        kind = dec.WhichOneof("decision")
        epoch = dec.stamp.epoch
        if kind == "join_ack":
            ack = dec.join_ack
            # The music first: a restarted app takes a CLUSTERQ_SEQ on the channel (written by
            # join_ack, after the music request on the caller's chain) as "its music was started".
            if ack.HasField("media"):
                self.actions.queue_media(ack.call_id, ack.media)
            self.actions.join_ack(ack)
        elif kind == "queue_media":  # from a leader older than JoinAck.media
            self.actions.queue_media(dec.queue_media.call_id, dec.queue_media)
        elif kind == "join_reject":
            self.actions.rejected(dec.join_reject)
        elif kind == "offer":
            if self._gone_caller(dec.offer.caller_node, dec.offer.call_id):
                # The leader still holds a caller of ours that is gone (it hung up while this process
                # was down, so nobody reported it): tell it, and ring nobody for it.
                self.send(node_pb2.NodeEvent(call_left=node_pb2.CallLeft(call_id=dec.offer.call_id, reason="hangup")))
                return
            self.legs.offer(dec.offer, epoch)
            if dec.offer.caller_node == self.node_id:
                self.connections.offered(dec.offer)
        elif kind == "connect":
            if self._gone_caller(dec.connect.caller_node, dec.connect.call_id):
                # Same for a connect: end the call at once so the leader frees the agent.
                self.send(node_pb2.NodeEvent(call_ended=node_pb2.CallEnded(
                    call_id=dec.connect.call_id, offer_id=dec.connect.offer_id, agent_hung_up=False)))
            self.legs.connect(dec.connect)
        elif kind == "cancel_offer":
            self.legs.cancel(dec.cancel_offer)
            self.connections.offer_cancelled(dec.cancel_offer)
        elif kind == "continue_in_dialplan":
            self.actions.continue_decision(dec.continue_in_dialplan)
        elif kind == "announce":
            self.actions.prompts.announce(dec.announce)
        elif kind == "periodic_announce":
            self.actions.prompts.periodic(dec.periodic_announce)
        elif kind == "watch_devices":
            self.devices.apply(dec.watch_devices)
        elif kind == "caller_priority":
            self.actions.set_priority(dec.caller_priority)
        else:  # a newer leader's kind this node does not know (None: unknown to our proto)
            log.debug("ignoring decision of unknown kind %s", kind)

    def _gone_caller(self, caller_node: str, call_id: str) -> bool:
        return caller_node == self.node_id and call_id not in self.callers

    # ---- ARI side --------------------------------------------------------------------------
    async def on_ari_event(self, event: ev.AriEvent) -> None:
        """Route one typed ARI event."""
        if isinstance(event, ev.StasisStart):
            self._stasis_start(event)
        elif isinstance(event, (ev.StasisEnd, ev.ChannelDestroyed)):
            cause = event.cause if isinstance(event, ev.ChannelDestroyed) else -1
            self._channel_gone(event.channel_id, cause)
        elif isinstance(event, ev.DtmfReceived):
            c = self.callers.get(event.channel_id)
            if c is not None:
                self.actions.digit(c, event.digit)
        elif isinstance(event, ev.ChannelHangupRequested):
            c = self.callers.get(event.channel_id)
            if c is not None:
                c.hanging_up = True
        elif isinstance(event, ev.ChannelLeftBridge):
            self.actions.music.left_bridge(event.bridge_id, event.channel_id)
        elif isinstance(event, ev.PlaybackFinished):
            self.actions.prompts.playback_finished(event.playback_id, event.target_channel_id)
        elif isinstance(event, ev.DeviceStateChanged):
            self.devices.on_event(event)
        elif isinstance(event, ev.AriConnected):
            if event.resync:
                self.counters.ari_reconnects += 1
            await self.resync()
            self.ari_connected = True
            self.devices.connected()  # after the resync: subscribe again and re-report every state
        elif isinstance(event, ev.AriDisconnected):
            self.ari_connected = False
            self.devices.disconnected()
        elif isinstance(event, ev.ApplicationReplaced):
            self.devices.disconnected()
            # A newer instance (rolling update) owns the app now: stand down, never fight.
            log.warning("another instance took over app %s on this node: standing down", self.settings.app)
            self._stopped.set()

    def _stasis_start(self, e: ev.StasisStart) -> None:
        first = e.args[0] if e.args else ""
        if first == "agentleg" and len(e.args) >= 2:
            self.legs.answered(e.channel.id, e.args[1])
        elif first == "trunk" and len(e.args) >= 2:
            self.legs.trunk_up(e.channel.id, e.args[1])
        elif first == "inbound":
            token = e.args[1] if len(e.args) >= 2 else e.channel.dialplan_exten
            self.connections.inbound(e.channel.id, token.removeprefix("cq-"))
        elif first in AGENT_OPS:
            self.agent_ops.start(e.channel, e.args)
        else:
            c = self.add_caller(e.channel, e.args)
            if c is not None:
                self.actions.start(c, adopted=False)

    def add_caller(self, ch: ev.ChannelInfo, args: tuple[str, ...], adopted: r.Adopted | None = None
                   ) -> r.Caller | None:
        """Record a caller (new, or adopted from its channel variables); None when it was sent
        straight back to the dialplan (invalid arguments, or no coordinator for the grace time)."""
        parsed = parse_args(args)
        if isinstance(parsed, BadArgs) or (args and (args[0] in RESERVED_FIRST_ARGS or args[0] in AGENT_OPS)):
            msg = parsed.message if isinstance(parsed, BadArgs) else f"{args[0]} is a reserved name"
            log.info("caller %s: invalid Stasis args %r: %s", ch.id, args, msg)
            self.actions.reject_early(ch.id, "INVALID_ARGS", msg)
            return None
        if adopted is None and self.unavailable:
            self.actions.reject_early(ch.id, "UNAVAILABLE", "no coordinator reachable")
            return None
        order = adopted.join_order if adopted is not None else None
        if order is None:
            self._join_order += 1
            order = self._join_order
        else:
            self._join_order = max(self._join_order, order)
        c = r.Caller(call_id=ch.id, args=parsed, caller_number=ch.caller_number, caller_name=ch.caller_name,
                     join_order=order, joined_wall=adopted.joined_wall if adopted else time.time())
        if adopted is not None:
            c.arrival_seq, c.position, c.told_position = adopted.arrival_seq, adopted.position, adopted.position
            c.music_class, c.exit_context = adopted.music_class, adopted.exit_context
            c.answered = adopted.answered
            if adopted.priority is not None:  # changed by an operator while it waited
                c.args = dataclasses.replace(c.args, priority=adopted.priority)
                c.priority_set = True
        self.callers[c.call_id] = c
        return c

    def _channel_gone(self, channel_id: str, cause: int) -> None:
        self.agent_ops.gone(channel_id)
        c = self.callers.get(channel_id)
        if c is not None:
            self.actions.caller_gone(c)
            return
        self.legs.channel_gone(channel_id, cause)
        self.connections.peer_gone(channel_id)

    async def resync(self) -> None:
        """After (re)connecting to ARI: reconcile with Asterisk (call/resync.py)."""
        try:
            await Reconciler(self).run()
        finally:
            self.first_resync.set()

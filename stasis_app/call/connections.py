"""Caller-side connections: offers ringing for a caller, bridging it with its agent's leg (on this node)
or with the trunk leg from the agent's node, and tearing the connection down."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING

from clusterq_common.channel_names import bridge_id
from clusterq_proto.v1 import node_pb2
from stasis_app.ari.port import AriError, ChannelGone, best_effort, create_bridge_once, retried
from stasis_app.call import records as r
from stasis_app.call.bridge_order import BridgeOrder

if TYPE_CHECKING:
    from stasis_app.node import NodeApp

__all__ = ["INBOUND_WAIT", "TRUNK_WAIT", "CallerConnections"]

log = logging.getLogger(__name__)

# A trunk leg from an agent's node may arrive before the leader's Offer / Connect for its caller reach
# this node (the agent's node dials as soon as it gets its own Connect): it waits this long for them.
INBOUND_WAIT = 10.0
# After Connect, a caller here waits this long for the trunk leg from its agent's node (it arrives
# within a network round trip of that node's Connect). Past it the trunk leg is taken as lost (its
# failure report may have been lost with the stream): the caller waits again rather than forever.
TRUNK_WAIT = 15.0


class CallerConnections:
    """Connects a NodeApp's callers with their agents."""

    def __init__(self, app: NodeApp) -> None:
        self.app = app
        self.ari = app.ari
        self._early_inbound: dict[str, str] = {}  # offer id -> trunk leg that arrived before its decision
        self.order = BridgeOrder(app.callers)

    def offered(self, m: node_pb2.Offer) -> None:
        """An agent rings for this caller."""
        c = self.app.callers.get(m.call_id)
        if c is not None and c.state == r.WAITING:
            # The agent too: a trunk leg may be bridged before Connect arrives (see inbound), and a
            # Register snapshot of the connected call must name its agent.
            c.state, c.offer_id, c.agent_id = r.RINGING, m.offer_id, m.agent_id
            self.order.offered(c)
            self._take_early_inbound(m.offer_id)

    def agent_answered(self, call_id: str, offer_id: str) -> None:
        """The agent of this caller's offer, homed on this node too, answered: a bridge comes soon."""
        c = self.app.callers.get(call_id)
        if c is not None and c.state == r.RINGING and c.offer_id == offer_id:
            self.order.on_the_way(c)
            if c.playback_id:
                # Its prompt is cut now, while the leader's Connect is on its way, not after: a channel
                # hearing a prompt takes no other command before the prompt has really stopped.
                self.app.serial.run(c.call_id, lambda: self.app.actions.prompts.stop(c), "stop-prompt")

    def offer_cancelled(self, m: node_pb2.CancelOffer) -> None:
        """The leader cancelled an offer: the caller waits again (keeping its place)."""
        c = self.app.callers.get(m.call_id)
        # CONNECTING too: the agent's leg failed before the call was bridged (Connect came too late).
        if c is not None and c.state in (r.RINGING, r.CONNECTING) and c.offer_id == m.offer_id:
            self._wait_again(c)

    def _requeue_on_leader(self, c: r.Caller) -> None:
        """After a call failed before its bridge (and its AgentLegFailed was sent), for a caller some
        Register reported connected: register again with a fresh snapshot, in which it waits. A leader
        that adopted the call from such a re-report (connected under an earlier leader) does not
        re-queue it on AgentLegFailed; seeing it waiting, it cancels the call and queues the caller
        again with its sequence. Other failed calls are re-queued by the AgentLegFailed alone (a
        reconnect makes the node's agents unavailable for a moment and re-reads its devices)."""
        if c.reported_connected:
            c.reported_connected = False
            self.app.coord.request_reregister()

    def _wait_again(self, c: r.Caller) -> None:
        """The caller's offer is over before any bridge: it waits again in its place, with its music
        (its prompt may have been cut when its agent answered)."""
        c.state, c.offer_id, c.agent_id = r.WAITING, "", ""
        self.order.done(c)
        self.app.actions.resume_music(c)
        self.app.actions.rearm_timeout(c)

    def bridge_local(self, call_id: str, offer_id: str, agent_id: str, peer_channel: str) -> bool:
        """Bridge the caller with a channel on this node (agent leg or inbound trunk leg)."""
        c = self.app.callers.get(call_id)
        if c is None or c.state not in (r.WAITING, r.RINGING, r.CONNECTING):
            return False
        c.state, c.offer_id, c.agent_id, c.peer_channel = r.CONNECTED, offer_id, agent_id, peer_channel
        c.bridge_id, c.connected_wall = bridge_id(self.app.node_id, offer_id), time.time()
        ari, bridge = self.ari, c.bridge_id
        self.order.on_the_way(c)

        async def connect() -> None:
            # The prompt and music must be stopped before the caller joins the bridge (a prompt would
            # hold the join back until it ends); the bridge is created meanwhile, one round trip less.
            try:
                create = retried(lambda: create_bridge_once(ari, bridge, f"clusterq-{c.args.queue}"))
                _, created = await asyncio.gather(self.app.actions.silence(c), create, return_exceptions=True)
                if isinstance(created, BaseException):  # only once the music is surely off
                    raise created
                await self.order.wait_turn(c)  # callers offered earlier are connected first
                await retried(lambda: ari.add_to_bridge(bridge, [c.call_id, peer_channel]))
            except ChannelGone:
                return  # a side hung up: its StasisEnd / ChannelDestroyed ends the call
            except AriError as exc:
                self._bridge_failed(c, offer_id, exc)
                return
            finally:
                self.order.done(c)
            await best_effort(ari.set_var(c.call_id, r.VAR_AGENT, agent_id))

        self.app.serial.run(c.call_id, connect, "bridge")
        return True

    def _bridge_failed(self, c: r.Caller, offer_id: str, exc: AriError) -> None:
        """Asterisk would not bridge the pair: the call never started. The caller waits again in its
        place (the leader re-queues it on AgentLegFailed of a connected offer) and the peer leg is hung
        up, which on a cross-node call also ends the agent's leg on its node."""
        if self.app.callers.get(c.call_id) is not c or c.state != r.CONNECTED or c.offer_id != offer_id:
            return
        log.warning("bridging caller %s (offer %s) failed: %s; it waits again", c.call_id, offer_id, exc)
        peer, bridge = c.peer_channel, c.bridge_id
        c.state, c.offer_id, c.agent_id, c.peer_channel, c.bridge_id = r.WAITING, "", "", "", ""
        c.connected_wall = 0.0  # its wait goes on
        self.app.send(node_pb2.NodeEvent(agent_leg_failed=node_pb2.AgentLegFailed(offer_id=offer_id,
                                                                                  reason="failed")))
        self._requeue_on_leader(c)

        async def undo() -> None:
            await best_effort(self.ari.hangup(peer))
            await best_effort(self.ari.destroy_bridge(bridge))

        self.app.serial.run(c.call_id + "/teardown", undo, "bridge-failed")
        self._wait_again(c)

    def expect_remote(self, call_id: str, offer_id: str, agent_id: str) -> None:
        """Connect for a caller here and an agent on another node: wait for its trunk leg."""
        c = self.app.callers.get(call_id)
        if c is not None and c.state in (r.WAITING, r.RINGING):
            c.state, c.offer_id, c.agent_id = r.CONNECTING, offer_id, agent_id
            self.order.on_the_way(c)
            asyncio.get_running_loop().call_later(TRUNK_WAIT, self._trunk_missing, c, offer_id)
            self._take_early_inbound(offer_id)

    def _trunk_missing(self, c: r.Caller, offer_id: str) -> None:
        """No trunk leg came for the caller's Connect: the offer failed (the leader re-queues a caller
        whose connected offer failed, in its place, and cancels the agent's side), and the caller
        waits again with its music."""
        if self.app.callers.get(c.call_id) is not c or c.state != r.CONNECTING or c.offer_id != offer_id:
            return  # bridged, back to waiting, or gone meanwhile
        log.warning("no trunk leg for caller %s (offer %s) after %.0f s: it waits again", c.call_id, offer_id,
                    TRUNK_WAIT)
        self.app.send(node_pb2.NodeEvent(agent_leg_failed=node_pb2.AgentLegFailed(offer_id=offer_id,
                                                                                  reason="failed")))
        self._wait_again(c)
        self._requeue_on_leader(c)

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
            self.app.serial.run(channel_id, lambda: best_effort(self.ari.hangup(channel_id)), "hangup")

    def peer_gone(self, channel_id: str) -> None:
        """The agent's leg (or trunk leg) of a connected caller hung up: the caller continues."""
        c = next((x for x in self.app.callers.values() if x.peer_channel == channel_id), None)
        if c is None or c.state not in (r.CONNECTED, r.CONNECTING):
            return
        self.call_over(c)

    def call_over(self, c: r.Caller) -> None:
        """The agent's side of the caller's call is gone: CallEnded, its bridge goes, the caller
        continues in the dialplan (CONTINUE)."""
        self.app.send(node_pb2.NodeEvent(call_ended=node_pb2.CallEnded(
            call_id=c.call_id, offer_id=c.offer_id, agent_hung_up=True)))
        self.teardown(c, hang_peer=False)
        self.app.actions.leave(c, "CONTINUE")

    def teardown(self, c: r.Caller, hang_peer: bool) -> None:
        """Destroy the caller's bridge (and hang up its peer leg with `hang_peer`)."""
        ari, peer, bridge = self.ari, c.peer_channel, c.bridge_id

        async def down() -> None:
            if hang_peer and peer:
                await best_effort(ari.hangup(peer))
            if bridge:
                await best_effort(ari.destroy_bridge(bridge))

        self.app.serial.run(c.call_id + "/teardown", down, "teardown")

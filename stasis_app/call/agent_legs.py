"""Agent legs rung from this node (agents homed here), and cross-node trunk legs.

Cross-node path (caller on node A, agent homed on node B):
  1. the leader sends Offer to B (rings the agent) and to A (marks the caller ringing);
  2. the agent answers on B: B reports AgentLegAnswered and waits;
  3. the leader sends Connect to both: B originates PJSIP/cq-<offer>@A over the inter-node trunk
     into its own app (args trunk,<offer>) and, once A answers it, bridges it with the agent leg;
     A receives the leg in Stasis(clusterq,inbound,cq-<offer>), answers it and bridges it with
     the caller. The offer id is the correlation token (it is the dialled extension).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from typing import TYPE_CHECKING

from clusterq_common.channel_names import agent_leg_id, bridge_id, trunk_leg_id
from clusterq_proto.v1 import node_pb2
from stasis_app.ari.port import AriError, AriUnavailable, ChannelGone, best_effort, create_bridge_once, retried
from stasis_app.call.records import AgentLeg

if TYPE_CHECKING:
    from stasis_app.node import NodeApp

log = logging.getLogger(__name__)

UNANSWERED = 2**63  # drop_stale(UNANSWERED): every unanswered leg, whatever its epoch


def failure_reason(cause: int) -> str:
    """Map a Q.850 hangup cause of an unanswered leg to an AgentLegFailed reason."""
    if cause in (17, 21):
        return "busy"
    if cause in (0, 16, 18, 19, 102, -1):
        return "noanswer"
    return "unavailable"


# The longest an originate waits for the previous one to be sent (see AgentLegs.offer).
ORDER_WAIT = 2.0
# The longest an agent's next leg waits for the end of the leg hung up before it (see _hangup).
GONE_WAIT = 1.0


def _agent_key(leg: AgentLeg) -> str:
    return f"agent/{leg.agent_id}"


def _caller_id(name: str, number: str) -> str:
    name = name.replace('"', "")
    return f'"{name}" <{number}>' if name else number


class AgentLegs:
    """Agent-side behaviour of a NodeApp."""

    def __init__(self, app: NodeApp) -> None:
        self.app = app
        self.ari = app.ari
        self.legs: dict[str, AgentLeg] = {}
        self._by_channel: dict[str, str] = {}
        self._gone: dict[str, asyncio.Event] = {}  # channel we hung up -> set when its end is seen
        self._last_originate: asyncio.Future[None] | None = None  # done once the last ring's originate was sent

    def owns(self, channel_id: str) -> bool:
        """Whether a channel is one of our agent or trunk legs."""
        return channel_id in self._by_channel

    def _report_failed(self, leg: AgentLeg, reason: str) -> None:
        log.info("agent leg of offer %s (agent %s) failed: %s", leg.offer_id, leg.agent_id, reason)
        self.app.send(node_pb2.NodeEvent(agent_leg_failed=node_pb2.AgentLegFailed(offer_id=leg.offer_id,
                                                                                  reason=reason)))

    def _forget(self, leg: AgentLeg) -> None:
        self.legs.pop(leg.offer_id, None)
        self._by_channel.pop(leg.channel_id, None)
        self._by_channel.pop(leg.trunk_channel, None)

    def _hangup(self, leg: AgentLeg, *channels: str) -> None:
        async def down() -> None:
            for ch in channels:
                if ch:
                    # The agent's next leg (same serializer key) rings only once this one is really gone
                    # on Asterisk, not just asked to go (bounded: a lost event must not block the agent).
                    gone = self._gone.setdefault(ch, asyncio.Event())
                    try:
                        await self.ari.hangup(ch)
                        # asyncio.timeout: wait_for (3.11) can swallow a cancellation that comes as
                        # the wait completes.
                        with contextlib.suppress(TimeoutError):
                            async with asyncio.timeout(GONE_WAIT):
                                await gone.wait()
                    except AriError:  # gone already (404), or Asterisk unreachable: nothing to wait for
                        pass
                    finally:
                        self._gone.pop(ch, None)
            if leg.bridge_id:
                await best_effort(self.ari.destroy_bridge(leg.bridge_id))

        self.app.serial.run(_agent_key(leg), down, "hangup-leg")

    def offer(self, m: node_pb2.Offer, epoch: int) -> None:
        """Ring the agent if it is homed on this node."""
        if m.agent_node != self.app.node_id or m.offer_id in self.legs:
            return
        leg = AgentLeg(offer_id=m.offer_id, call_id=m.call_id, agent_id=m.agent_id,
                       channel_id=agent_leg_id(self.app.node_id, m.offer_id), caller_node=m.caller_node, epoch=epoch)
        self.legs[leg.offer_id] = leg
        self._by_channel[leg.channel_id] = leg.offer_id
        local = m.endpoint.lower().startswith("local/")
        # Legs are created in the order the leader made its offers (its ranking), never in the order
        # concurrent requests happen to reach Asterisk: each originate waits for the previous one.
        previous, mine = self._last_originate, asyncio.get_running_loop().create_future()
        self._last_originate = mine

        async def ring() -> None:
            try:
                if previous is not None:  # bounded: a ring cancelled before it started never sets it
                    await asyncio.wait({previous}, timeout=ORDER_WAIT)
                await self.ari.originate(
                    endpoint=m.endpoint, channel_id=leg.channel_id, app_args=["agentleg", m.offer_id],
                    caller_id=_caller_id(m.caller_name, m.caller_number), timeout=max(1, math.ceil(m.ring_timeout)),
                    formats="ulaw" if local else None)
                self.app.counters.agent_legs_originated += 1
            except AriUnavailable as exc:
                # Asterisk is unreachable (reconnecting): do not fail the offer at once, or the leader
                # would re-offer this agent at once and fail again, in a tight loop for the whole
                # outage. The leg stays "ringing" without a channel until the leader's ring timeout
                # cancels it (the agent is then offered again, by then usually with Asterisk back).
                log.info("originate %s for offer %s: Asterisk unavailable (%s)", m.endpoint, m.offer_id, exc)
            except AriError as exc:
                log.info("originate %s for offer %s failed: %s", m.endpoint, m.offer_id, exc)
                if self.legs.get(leg.offer_id) is leg and leg.state == "ringing":
                    self._forget(leg)
                    self._report_failed(leg, "unavailable")
            finally:
                mine.set_result(None)

        # Per agent, not per offer: a new offer for this agent rings only once the hangup of its
        # previous leg (e.g. a stale offer of an old leader) went out, so one agent never has two
        # legs ringing at once.
        self.app.serial.run(_agent_key(leg), ring, "ring")

    def answered(self, channel_id: str, offer_id: str) -> None:
        """The agent picked up (its leg entered our app): report it and wait for Connect."""
        leg = self.legs.get(offer_id)
        if leg is None or leg.state != "ringing":
            self.app.serial.run(channel_id, lambda: best_effort(self.ari.hangup(channel_id)), "hangup-stray")
            return
        leg.state = "answered"
        self.app.counters.agent_legs_answered += 1
        log.info("agent %s answered offer %s", leg.agent_id, offer_id)
        if leg.caller_node == self.app.node_id:
            self.app.connections.agent_answered(leg.call_id, offer_id)
        self.app.send(node_pb2.NodeEvent(agent_leg_answered=node_pb2.AgentLegAnswered(offer_id=offer_id)))

    def connect(self, m: node_pb2.Connect) -> None:
        """The leader picked this offer: bridge locally, or start the cross-node path."""
        me = self.app.node_id
        leg = self.legs.get(m.offer_id)
        if m.agent_node == me and leg is None:
            log.warning("connect for unknown offer %s", m.offer_id)
            return
        if leg is not None and leg.state == "connected":
            # Sent again by a leader that could not tell whether the first one arrived (a node's
            # Register after a stream drop): acting on it twice hung up the agent of a live call.
            log.info("connect for offer %s again: already connected", m.offer_id)
            return
        if m.agent_node == me and m.caller_node == me:
            assert leg is not None
            if self.app.connections.bridge_local(m.call_id, m.offer_id, m.agent_id, leg.channel_id):
                leg.state = "connected"
            else:
                self._forget(leg)
                self._hangup(leg, leg.channel_id)
        elif m.agent_node == me:
            assert leg is not None
            leg.state = "connected"
            leg.trunk_channel = trunk_leg_id(me, m.offer_id)
            self._by_channel[leg.trunk_channel] = leg.offer_id

            async def trunk() -> None:
                try:
                    await self.ari.originate(
                        endpoint=f"{self.app.settings.trunk_tech}/cq-{m.offer_id}@{m.caller_node}",
                        channel_id=leg.trunk_channel, app_args=["trunk", m.offer_id], timeout=10)
                except AriError as exc:
                    log.warning("trunk leg for offer %s to node %s failed: %s", m.offer_id, m.caller_node, exc)
                    if self.legs.get(leg.offer_id) is leg:
                        self.channel_gone(leg.trunk_channel, -1)

            self.app.serial.run(leg.offer_id, trunk, "trunk")
        elif m.caller_node == me:
            self.app.connections.expect_remote(m.call_id, m.offer_id, m.agent_id)

    def trunk_up(self, channel_id: str, offer_id: str) -> None:
        """Our trunk leg to the caller's node answered: bridge it with the agent leg here."""
        leg = self.legs.get(offer_id)
        if leg is None or leg.trunk_channel != channel_id:
            self.app.serial.run(channel_id, lambda: best_effort(self.ari.hangup(channel_id)), "hangup-stray")
            return
        leg.bridge_id = bridge = bridge_id(self.app.node_id, offer_id)

        async def connect() -> None:
            try:
                await retried(lambda: create_bridge_once(self.ari, bridge, f"clusterq-agent-{leg.agent_id}"))
                await retried(lambda: self.ari.add_to_bridge(bridge, [leg.channel_id, channel_id]))
            except ChannelGone:
                return  # a side hung up: its StasisEnd / ChannelDestroyed ends the call
            except AriError as exc:
                self._trunk_bridge_failed(leg, exc)

        self.app.serial.run(leg.offer_id, connect, "bridge-trunk")

    def _trunk_bridge_failed(self, leg: AgentLeg, exc: AriError) -> None:
        """Asterisk would not bridge the agent with the trunk leg: caller and agent would hear silence.
        Both legs are hung up: the caller's node sees its trunk leg end (CallEnded, the caller goes
        back to the dialplan), and the bridge counts as never made, so channel_gone reports CallEnded
        from here too (in case the caller's node cannot)."""
        if self.legs.get(leg.offer_id) is not leg:
            return
        log.warning("bridging agent %s with the trunk leg of offer %s failed: %s; hanging both up",
                    leg.agent_id, leg.offer_id, exc)
        bridge, leg.bridge_id = leg.bridge_id, ""
        self.app.serial.run(leg.offer_id, lambda: best_effort(self.ari.destroy_bridge(bridge)), "destroy-bridge")
        self._hangup(leg, leg.trunk_channel, leg.channel_id)

    def cancel(self, m: node_pb2.CancelOffer) -> None:
        """Stop ringing an agent (another agent won, the caller left, or the ring timed out).

        A connected offer is cancelled only when it failed before its call started (the caller's node
        could not bridge it, or never got its trunk leg): the agent's side of a cross-node call whose
        bridge is not made yet is released then; a bridged call ends by its legs' hangups."""
        leg = self.legs.get(m.offer_id)
        if leg is None:
            return
        if leg.state != "connected":
            self._cancel_leg(leg, leg.channel_id)
        elif leg.trunk_channel and not leg.bridge_id:
            self._cancel_leg(leg, leg.trunk_channel, leg.channel_id)  # no report: the leader failed the offer

    def _cancel_leg(self, leg: AgentLeg, *channels: str) -> None:
        """Forget a leg that must not ring or talk any more and hang up its channels (nothing is reported)."""
        self._forget(leg)
        leg.state = "cancelled"
        self._hangup(leg, *channels)

    def caller_left(self, call_id: str) -> None:
        """The caller hung up while its agent rang here: stop ringing (the leader cancels too)."""
        for leg in [x for x in self.legs.values() if x.call_id == call_id and x.state != "connected"]:
            self._cancel_leg(leg, leg.channel_id)

    def channel_gone(self, channel_id: str, cause: int) -> None:
        """One of our legs hung up or failed."""
        waiter = self._gone.get(channel_id)
        if waiter is not None:
            waiter.set()
        offer_id = self._by_channel.get(channel_id)
        leg = self.legs.get(offer_id or "")
        if leg is None:
            return
        self._forget(leg)
        if leg.state == "ringing":
            self._report_failed(leg, failure_reason(cause))
        elif leg.state == "answered":
            self._report_failed(leg, "failed")
        elif leg.state == "connected":
            # Either end of a cross-node call hung up: take down the other half on this node.
            other = leg.trunk_channel if channel_id == leg.channel_id else leg.channel_id
            self._hangup(leg, other)
            if leg.trunk_channel and not leg.bridge_id:
                # The cross-node path never came up (trunk failed, or the agent hung up while it was
                # being dialled): the caller's node waits for a trunk leg that will not come. The
                # leader releases the caller (CONTINUE) and starts the agent's wrap-up.
                self.app.send(node_pb2.NodeEvent(call_ended=node_pb2.CallEnded(
                    call_id=leg.call_id, offer_id=leg.offer_id, agent_hung_up=True)))

    def drop_stale(self, epoch: int) -> None:
        """A new leader: unanswered legs of older leaders are void (the new leader re-offers).
        `drop_stale(UNANSWERED)` voids every unanswered leg (no coordinator for the grace time)."""
        for leg in [x for x in self.legs.values() if x.epoch < epoch and x.state in ("ringing", "answered")]:
            self._cancel_leg(leg, leg.channel_id)

    def adopt_connected(self, offer_id: str, channel_id: str, call_id: str, agent_id: str, trunk_channel: str,
                        bridge_id: str) -> None:
        """A restarted app found one of its agent legs bridged: track it so hangups tear down."""
        leg = AgentLeg(offer_id=offer_id, call_id=call_id, agent_id=agent_id, channel_id=channel_id,
                       caller_node="", epoch=0, state="connected", trunk_channel=trunk_channel,
                       bridge_id=bridge_id)
        self.legs[offer_id] = leg
        self._by_channel[channel_id] = offer_id
        if trunk_channel:
            self._by_channel[trunk_channel] = offer_id

    def forget_missing(self, present: set[str]) -> None:
        """After an ARI resync: answered or bridged legs whose channels vanished while we were away.

        `present` holds the channels in our Stasis app; a leg still ringing is not in Stasis yet (it
        is dialling), so it is left alone: its end is reported if seen, else the leader's ring
        timeout cancels it.
        """
        for leg in list(self.legs.values()):
            if leg.state != "ringing" and leg.channel_id not in present:
                self.channel_gone(leg.channel_id, -1)

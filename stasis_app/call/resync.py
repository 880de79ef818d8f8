"""Reconciling a node's records with Asterisk after every ARI (re)connect.

Asterisk is the source of truth: channels survive a websocket drop and a restart of this process.
After each (re)connect the app lists the channels in its Stasis app and the bridges, then:
- ends the records whose channels vanished (CallLeft / CallEnded / AgentLegFailed as usual);
- stops a prompt whose PlaybackFinished may have been lost with the websocket and resumes music;
- adopts the channels it does not know (a restarted process, or one replacing another):
    caller alone                  -> waiting, with the arrival sequence, join time, node join order,
                                     position and queue media read back from its channel variables
                                     (records.VAR_*), so it keeps its place in the queue; answered
                                     and given music if the old process died before doing so;
    caller in our bridge          -> connected with the bridge's other channel (agent or trunk leg);
    agent leg + trunk leg bridged -> the agent's side of a cross-node call;
    any other leg                 -> hung up (an offer of the old process: the leader offers again);
    agent operation channel       -> its operation is performed again (call/agent_ops.py): it was
                                     never sent back, so it never got an answer.
Our bridges are named `<node>-br-<offer id>_` on both sides of a call (see names.py).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import math
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from clusterq_common.channel_names import offer_of_bridge
from clusterq_common.dialplan import LEG_ARGS, MAX_PRIORITY
from stasis_app.ari.app_args import split_app_args
from stasis_app.ari.events import ChannelInfo
from stasis_app.ari.port import AriError
from stasis_app.call import records as r
from stasis_app.call.agent_args import AGENT_OPS

if TYPE_CHECKING:
    from stasis_app.node import NodeApp

log = logging.getLogger(__name__)

RESERVED_FIRST_ARGS = LEG_ARGS  # clusterq_common.dialplan: the coordinator refuses them as queue names


@dataclass(frozen=True)
class _Found:
    """A channel of our app with its Stasis arguments split off."""

    channel: ChannelInfo
    args: tuple[str, ...]

    @property
    def role(self) -> str:
        """"caller", "agent-op" (agent-login & co.), or the reserved first argument of a leg (agentleg,
        trunk, inbound)."""
        first = self.args[0] if self.args else ""
        if first in AGENT_OPS:
            return "agent-op"
        return first if first in RESERVED_FIRST_ARGS else "caller"


def _parse_adopted(values: dict[str, str | None], channel_state: str) -> r.Adopted:
    # The variables live on the channel, where the dialplan (or anyone with ARI) can change them: a
    # value out of its protobuf field's range made every Register fail to encode, and the restarted
    # process died and re-adopted the same channel in a loop. Out of range counts as not set.
    def count(name: str, upper: int) -> int:
        try:
            value = int(values.get(name) or 0)
        except ValueError:
            return 0
        return value if 0 <= value < upper else 0

    now = time.time()
    try:
        joined = float(values.get(r.VAR_JOINED) or now)
    except ValueError:
        joined = now
    if not math.isfinite(joined) or joined > now:
        joined = now
    music = values.get(r.VAR_MUSIC) or r.DEFAULT_MUSIC
    order = count(r.VAR_ORDER, 2**63)
    return r.Adopted(
        arrival_seq=count(r.VAR_SEQ, 2**63), joined_wall=joined,
        join_order=order or None, position=count(r.VAR_POSITION, 2**31),
        music_class="" if music == "none" else music, exit_context=values.get(r.VAR_EXIT_CONTEXT) or "",
        agent_id=values.get(r.VAR_AGENT) or "",
        answered=channel_state == "Up" or bool(values.get(r.VAR_JOINED)),
        priority=_priority(values.get(r.VAR_PRIORITY)))


def _priority(text: str | None) -> int | None:
    """CLUSTERQ_PRIORITY as written by set_priority; anything else (unset, not a number, out of the
    range a Stasis argument may give) counts as not set."""
    try:
        value = int(text or "")
    except ValueError:
        return None
    return value if -MAX_PRIORITY <= value <= MAX_PRIORITY else None


class Reconciler:
    """Runs one resync of a NodeApp (see the module docstring)."""

    def __init__(self, app: NodeApp) -> None:
        self.app = app

    async def run(self) -> None:
        """List channels and bridges, end vanished records, adopt unknown channels."""
        app = self.app
        try:
            channels = await app.ari.list_channels()
            bridges = await app.ari.list_bridges()
        except AriError as exc:
            log.warning("resync: cannot list channels/bridges: %s", exc)
            return
        app.actions.music.forget_bridges()
        present = {ch.id for ch in channels}
        for call_id in [cid for cid in app.callers if cid not in present]:
            app.actions.caller_gone(app.callers[call_id])
        app.legs.forget_missing(present)
        ended = [c for c in app.callers.values() if c.peer_channel and c.peer_channel not in present]
        for c in ended:
            # Its agent's (or trunk) leg hung up while the websocket was down: the call is over, as
            # the lost StasisEnd would have said. Left alone, the caller stayed alone in its bridge,
            # in silence, for good, and the leader kept the agent busy.
            app.connections.peer_gone(c.peer_channel)
        sent_back = {c.call_id for c in ended}  # still listed in Stasis until their continue runs
        for c in list(app.callers.values()):
            app.actions.recover(c)
        unknown: dict[str, _Found] = {}
        for ch in channels:
            parts = split_app_args(ch.app_data)  # as Asterisk split them for StasisStart
            if (ch.id not in app.callers and ch.id not in sent_back and not app.legs.owns(ch.id)
                    and not app.agent_ops.handled(ch.id) and parts[0] == app.settings.app):
                unknown[ch.id] = _Found(ch, parts[1:])
        if not unknown:
            return
        pairs: list[tuple[str, str, _Found, _Found]] = []
        for b in bridges:
            offer_id = offer_of_bridge(app.node_id, b.id)
            if offer_id and len(b.channel_ids) == 2 and all(c in unknown for c in b.channel_ids):
                x, y = (unknown[c] for c in b.channel_ids)
                pairs.append((b.id, offer_id, x, y))
        # A caller alone in one of our call bridges: its agent hung up while no process listened.
        lone = {b.channel_ids[0]: (b.id, offer_id) for b in bridges
                if len(b.channel_ids) == 1 and (offer_id := offer_of_bridge(app.node_id, b.id))}
        waiting: list[_Found] = []
        for bridge_id, offer_id, x, y in pairs:
            if await self._adopt_bridged(bridge_id, offer_id, x, y):
                unknown.pop(x.channel.id)
                unknown.pop(y.channel.id)
        for found in unknown.values():
            if found.role == "caller" and found.channel.id in lone:
                await self._end_lone(found, *lone[found.channel.id])
            elif found.role == "caller":
                waiting.append(found)
            elif found.role == "inbound":
                # A trunk leg from an agent's node that arrived while the websocket was down (its
                # StasisStart lost): taken as the event would have, not hung up as stray (that ended
                # the answered agent's call and sent the caller back).
                token = found.args[1] if len(found.args) >= 2 else found.channel.dialplan_exten
                app.connections.inbound(found.channel.id, token.removeprefix("cq-"))
            elif found.role == "agent-op":
                log.info("resync: performing the agent operation of %s again", found.channel.id)
                app.agent_ops.start(found.channel, found.args)
            else:  # a leg of an offer this process never made or no longer tracks
                log.info("resync: hanging up stray %s leg %s", found.role, found.channel.id)
                app.serial.run(found.channel.id, functools.partial(self._hangup, found.channel.id), "hangup-stray")
        await self._adopt_waiting(waiting)

    async def _read(self, channel: ChannelInfo) -> r.Adopted:
        async def var(name: str) -> str | None:
            try:
                return await self.app.ari.get_var(channel.id, name)
            except AriError:
                return None

        values = await asyncio.gather(*(var(name) for name in r.ADOPT_VARS))
        return _parse_adopted(dict(zip(r.ADOPT_VARS, values, strict=True)), channel.state)

    async def _adopt_bridged(self, bridge_id: str, offer_id: str, x: _Found, y: _Found) -> bool:
        """A bridged pair: a connected caller (with its agent or trunk leg), or an agent's side."""
        app = self.app
        roles = {x.role: x, y.role: y}
        caller = roles.get("caller")
        peer = roles.get("agentleg") or roles.get("inbound")
        if caller is not None and peer is not None and len(roles) == 2:
            adopted = await self._read(caller.channel)
            c = app.add_caller(caller.channel, caller.args, adopted)
            if c is None:
                return False
            c.state, c.offer_id, c.agent_id = r.CONNECTED, offer_id, adopted.agent_id
            c.peer_channel, c.bridge_id = peer.channel.id, bridge_id
            if peer.role == "agentleg":
                app.legs.adopt_connected(offer_id, peer.channel.id, c.call_id, adopted.agent_id, "", "")
            app.actions.start(c, adopted=True)
            log.info("adopting connected caller %s (bridge %s)", c.call_id, bridge_id)
            return True
        agent, trunk = roles.get("agentleg"), roles.get("trunk")
        if agent is not None and trunk is not None:
            app.legs.adopt_connected(offer_id, agent.channel.id, "", "", trunk.channel.id, bridge_id)
            log.info("adopting the agent side of cross-node call %s (bridge %s)", offer_id, bridge_id)
            return True
        return False

    async def _end_lone(self, found: _Found, bridge_id: str, offer_id: str) -> None:
        """A caller alone in its call's bridge: the call ended while no process listened. It goes on
        in the dialplan with CONTINUE, as if this process had seen its agent hang up (adopted as
        waiting, it sat in silence in that bridge and was queued for a second agent)."""
        app = self.app
        adopted = await self._read(found.channel)
        c = app.add_caller(found.channel, found.args, adopted)
        if c is None:
            return
        c.state, c.offer_id, c.agent_id, c.bridge_id = r.CONNECTED, offer_id, adopted.agent_id, bridge_id
        log.info("caller %s is alone in its call's bridge %s: its call ended meanwhile", c.call_id, bridge_id)
        app.connections.call_over(c)

    async def _adopt_waiting(self, found: list[_Found]) -> None:
        """Waiting callers, adopted in their node join order; the leader learns of them by a fresh
        Register when any has an arrival sequence (a CallJoined event cannot carry it)."""
        app = self.app
        read = await asyncio.gather(*(self._read(f.channel) for f in found))
        ordered = sorted(zip(found, read, strict=True), key=lambda p: (p[1].join_order or 0, p[1].joined_wall))
        adopted: list[r.Caller] = []
        for f, vars_ in ordered:
            if f.channel.id in app.callers:
                continue
            c = app.add_caller(f.channel, f.args, vars_)
            if c is not None:
                log.info("adopting caller %s (seq %d, position %d)", c.call_id, c.arrival_seq, c.position)
                app.actions.start(c, adopted=True)
                adopted.append(c)
        if not adopted or not app.coord.connected:
            return  # the Register sent on connecting carries them, sequences included
        if any(c.arrival_seq for c in adopted):
            app.coord.request_reregister()
        else:
            for c in adopted:
                app.actions.report_join(c)

    async def _hangup(self, channel_id: str) -> None:
        try:
            await self.app.ari.hangup(channel_id)
        except AriError:
            pass

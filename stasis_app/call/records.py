"""What a node knows about the calls it holds (mutable records owned by NodeApp)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from clusterq_proto.v1 import common_pb2, node_pb2
from stasis_app.call.args import QueueArgs

# Channel variables clusterq keeps ON the caller's channel, so a restarted stasis app can
# re-adopt the caller with its place: the leader's arrival sequence, the join time and node join
# order, the last position told, and the queue's media settings (only when not the defaults).
VAR_SEQ = "CLUSTERQ_SEQ"
VAR_JOINED = "CLUSTERQ_JOINED"
VAR_ORDER = "CLUSTERQ_ORDER"
VAR_POSITION = "CLUSTERQ_POSITION"
VAR_MUSIC = "CLUSTERQ_MUSIC"
VAR_EXIT_CONTEXT = "CLUSTERQ_EXIT_CONTEXT"
VAR_AGENT = "CLUSTERQ_AGENT"
VAR_PRIORITY = "CLUSTERQ_PRIORITY"  # set only when an operator changed it (else the Stasis argument's)
ADOPT_VARS = (VAR_SEQ, VAR_JOINED, VAR_ORDER, VAR_POSITION, VAR_MUSIC, VAR_EXIT_CONTEXT, VAR_AGENT, VAR_PRIORITY)
DEFAULT_MUSIC = "default"

# Caller states.
WAITING, RINGING, CONNECTING, CONNECTED, LEAVING = "waiting", "ringing", "connecting", "connected", "leaving"


@dataclass(frozen=True)
class Adopted:
    """What a restarted app reads back from a caller's channel variables (see VAR_*)."""

    arrival_seq: int
    joined_wall: float
    join_order: int | None
    position: int
    music_class: str
    exit_context: str
    agent_id: str
    # Answered (or ringing indicated) by an earlier process: the channel is Up, or carries VAR_JOINED
    # (written right after the answer). A restarted app answers a caller without either.
    answered: bool
    priority: int | None = None  # VAR_PRIORITY: an operator's change, which wins over the Stasis argument


@dataclass(eq=False)
class Caller:
    """A caller in Stasis on this node."""

    call_id: str
    args: QueueArgs
    caller_number: str
    caller_name: str
    join_order: int
    joined_wall: float
    arrival_seq: int = 0
    state: str = WAITING
    music_class: str = DEFAULT_MUSIC
    moh_on: bool = False  # its music plays (own generator, or its holding bridge's: see hold_bridge)
    hold_bridge: str = ""  # the holding bridge it hears music in (shared music), "" when none
    exit_context: str = ""
    playback_id: str = ""
    offer_id: str = ""
    agent_id: str = ""
    peer_channel: str = ""  # agent leg (same node) or trunk leg (agent on another node)
    bridge_id: str = ""
    position: int = 0
    told_position: int = 0  # the value last written to CLUSTERQ_POSITION
    original_position: int = 0  # the first JoinAck's position (0: not known, e.g. adopted after a restart)
    # Reported "connected" in a Register: a leader may have adopted the call, and an adopted call is not
    # re-queued on AgentLegFailed (see connections._requeue_on_leader).
    reported_connected: bool = False
    hanging_up: bool = False  # ChannelHangupRequested seen: its leaving a bridge is no loss of music
    priority_set: bool = False  # its channel carries VAR_PRIORITY (an operator's change): cleared as it leaves
    connected_wall: float = 0.0  # when bridged with an agent (0: never): the wait ends there
    answered: bool = False  # answered (or ringing indicated) on Asterisk
    offer_rank: int = 0  # place of its latest offer in the order this node received offers (0: none)
    timeout_timer: asyncio.TimerHandle | None = None  # its own timeout= (cancelled when it leaves)

    def joined_pb(self, waited: float) -> node_pb2.CallJoined:
        """The CallJoined message for this caller (also used in Register snapshots)."""
        a = self.args
        return node_pb2.CallJoined(
            call_id=self.call_id, queue=a.queue, priority=a.priority, position=a.position,
            requirements=[common_pb2.Requirement(key=k, value=v) for k, v in a.requirements],
            caller_number=self.caller_number, caller_name=self.caller_name, timeout=a.timeout,
            node_join_order=self.join_order, waited=max(0.0, waited), original_position=self.original_position)


@dataclass(eq=False)
class AgentLeg:
    """An agent leg rung from this node (the agent is homed here)."""

    offer_id: str
    call_id: str
    agent_id: str
    channel_id: str
    caller_node: str
    epoch: int
    state: str = "ringing"  # ringing -> answered -> connected; "cancelled" once we hang it up
    trunk_channel: str = ""  # agent on this node, caller elsewhere: our trunk leg to the caller's node
    bridge_id: str = ""

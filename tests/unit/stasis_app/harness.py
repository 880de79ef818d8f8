"""A NodeApp on the in-memory FakeAri with a scripted coordinator, for unit tests of the call flow."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from clusterq_proto.v1 import common_pb2, node_pb2
from stasis_app.ari.fake import FakeAri
from stasis_app.call.agent_ops import OP_TIMEOUT, AgentAdmin, AgentOps
from stasis_app.config import StasisSettings
from stasis_app.node import NodeApp


class FakeCoordinator:
    """Stands in for CoordinatorClient: records what the node sends, delivers scripted decisions."""

    def __init__(self, app: NodeApp, *, connect_on_run: bool = True) -> None:
        self.app = app
        self.connect_on_run = connect_on_run
        self.connected = False
        self.highest_epoch = 0
        self.sent: list[node_pb2.NodeEvent] = []
        self.registers: list[node_pb2.Register] = []
        self.reregisters = 0
        self.refused = 0  # read by /metrics (stasis_app/metrics.py), as on the real client
        self.failed = 0
        self.pending = 0  # nothing waits: events are "sent" at once
        self._seq = 0
        self._closed = asyncio.Event()

    async def run(self) -> None:
        """Like the real client: connect (taking a Register snapshot) once run."""
        if self.connect_on_run:
            self.connect()
        await self._closed.wait()

    def close(self) -> None:
        """Stop."""
        self._closed.set()

    def connect(self, epoch: int = 1) -> None:
        """The stream is up with a leader of `epoch` (a Register snapshot is taken)."""
        self.registers.append(self.app.snapshot())
        self.connected, self.highest_epoch = True, max(self.highest_epoch, epoch)
        self.app.on_coordinator(True)

    def disconnect(self) -> None:
        """The stream is down."""
        self.connected = False
        self.app.on_coordinator(False)

    def send(self, event: node_pb2.NodeEvent) -> None:
        """Events are kept only while connected (as the real client drops them)."""
        if self.connected:
            self.sent.append(event)

    @property
    def events_sent(self) -> int:
        """Events sent so far (the real client's counter)."""
        return len(self.sent)

    def request_reregister(self) -> None:
        """A fresh Register snapshot."""
        self.reregisters += 1
        self.registers.append(self.app.snapshot())

    def decide(self, **decision: Any) -> None:
        """Deliver one decision of the current epoch, e.g. decide(join_ack=node_pb2.JoinAck(...))."""
        self._seq += 1
        stamp = common_pb2.Stamp(epoch=self.highest_epoch, seq=self._seq)
        self.app.on_decision(node_pb2.Decision(stamp=stamp, **decision))

    def kinds(self) -> list[str]:
        """The kinds of the events sent so far."""
        return [str(e.WhichOneof("event")) for e in self.sent]

    def of(self, kind: str) -> list[Any]:
        """The payloads of the sent events of one kind."""
        return [getattr(e, kind) for e in self.sent if e.WhichOneof("event") == kind]


@dataclass
class Node:
    """One NodeApp under test and its fakes."""

    app: NodeApp
    ari: FakeAri
    coord: FakeCoordinator
    task: asyncio.Task[None] | None = None
    acks: int = field(default=0)

    async def settle(self) -> None:
        """Let queued events and every ARI action chain run (the fake answers at once)."""
        for _ in range(60):
            await asyncio.sleep(0)

    async def queued_caller(self, args: tuple[str, ...] = ("support",), position: int = 1) -> str:
        """A caller enters Stasis with `args` and the leader sequences it at `position`; its id."""
        cid = self.ari.caller_enters(list(args))
        await self.settle()
        self.join(cid, position=position)
        return cid

    def join(self, call_id: str, position: int, queue: str = "support", music: str = "default",
             exit_context: str = "") -> None:
        """The leader sequences a caller (JoinAck with the next sequence and the queue's media)."""
        self.acks += 1
        self.coord.decide(join_ack=node_pb2.JoinAck(
            call_id=call_id, arrival_seq=self.acks, position=position,
            media=node_pb2.QueueMedia(music_class=music, exit_context=exit_context)))

    def offer(self, offer_id: str, call_id: str, agent: str = "alice", agent_node: str = "a",
              caller_node: str = "a") -> None:
        """The leader offers `call_id` to a Local agent homed on `agent_node`."""
        self.coord.decide(offer=node_pb2.Offer(
            offer_id=offer_id, call_id=call_id, queue="support", agent_id=agent,
            endpoint=f"Local/{agent}@agents/n", agent_node=agent_node, caller_node=caller_node, ring_timeout=5,
            caller_number="555", caller_name="Ada"))

    def connect(self, offer_id: str, call_id: str, agent: str = "alice", agent_node: str = "a",
                caller_node: str = "a") -> None:
        """The leader connects an answered offer."""
        self.coord.decide(connect=node_pb2.Connect(offer_id=offer_id, call_id=call_id, agent_id=agent,
                                                   caller_node=caller_node, agent_node=agent_node))


def settings(node_id: str = "a", grace: float = 20.0, shared_music: bool = False) -> StasisSettings:
    """Settings for a unit-test node (nothing is contacted)."""
    return StasisSettings(node_id=node_id, ari_url="http://127.0.0.1:1/", ari_user="u", ari_password="p",
                          coordinators=("127.0.0.1:1",), grace=grace, shared_music=shared_music)


@contextlib.asynccontextmanager
async def running(ari: FakeAri, *, grace: float = 20.0, connect: bool = True,
                  node_id: str = "a", shared_music: bool = False, agent_admin: AgentAdmin | None = None,
                  agent_timeout: float = OP_TIMEOUT) -> AsyncIterator[Node]:
    """Run a NodeApp on `ari` until the block ends (then stop it like a SIGKILL would: no cleanup
    on Asterisk, the channels stay). `agent_admin` answers the dialplan's agent operations (none:
    the real client, towards the unreachable coordinator of `settings`)."""
    app = NodeApp(settings(node_id, grace, shared_music), ari)
    app.agent_ops = AgentOps(app, agent_admin, agent_timeout)
    coord = FakeCoordinator(app, connect_on_run=connect)
    app.coord = coord  # type: ignore[assignment]
    node = Node(app, ari, coord)
    node.task = asyncio.create_task(app.run())
    await node.settle()
    try:
        yield node
    finally:
        node.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await node.task

"""CoordinatorClient against an in-process NodeService: fresh Register on request_reregister()."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest

from clusterq_proto.v1 import common_pb2, node_pb2, node_pb2_grpc
from stasis_app.coordinator_client import MAX_BATCH, CoordinatorClient, stamped


class RecordingLeader(node_pb2_grpc.NodeServiceServicer):
    """Accepts every Connect (epoch 1) and records the Registers and events it receives."""

    def __init__(self) -> None:
        self.registers: list[node_pb2.Register] = []
        self.events: list[node_pb2.NodeEvent] = []
        self.batch_sizes: list[int] = []

    async def Connect(self, request_iterator: Any, context: Any) -> AsyncIterator[node_pb2.CoordinatorMessage]:
        """Registered, then read until the node half-closes."""
        first = await anext(request_iterator)
        self.registers.append(first.register)
        yield node_pb2.CoordinatorMessage(registered=node_pb2.Registered(epoch=1, leader="here"))
        async for msg in request_iterator:
            self.events.extend(msg.events.events)
            self.batch_sizes.append(len(msg.events.events))


@pytest.fixture
async def leader() -> AsyncIterator[tuple[RecordingLeader, str]]:
    server = grpc.aio.server()
    servicer = RecordingLeader()
    node_pb2_grpc.add_NodeServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    yield servicer, f"127.0.0.1:{port}"
    await server.stop(None)


async def _until(cond: Any, timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not cond():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached"
        await asyncio.sleep(0.01)


async def test_reregister_sends_pending_events_then_a_fresh_register(leader: tuple[RecordingLeader, str]) -> None:
    servicer, addr = leader
    calls = ["first"]
    ups: list[bool] = []

    def snapshot() -> node_pb2.Register:
        return node_pb2.Register(calls=[node_pb2.CallSnapshot(joined=node_pb2.CallJoined(call_id=c)) for c in calls])

    client = CoordinatorClient("n1", (addr,), snapshot, lambda d: None, ups.append)
    task = asyncio.create_task(client.run())
    try:
        await _until(lambda: client.connected)
        client.send(node_pb2.NodeEvent(digit_pressed=node_pb2.DigitPressed(call_id="first", digit="1")))
        calls.append("adopted")
        client.request_reregister()
        await _until(lambda: len(servicer.registers) == 2 and client.connected)
        assert [c.joined.call_id for c in servicer.registers[1].calls] == ["first", "adopted"]
        assert servicer.registers[0].instance_id == servicer.registers[1].instance_id
        assert [e.digit_pressed.digit for e in servicer.events] == ["1"], "queued events go out before"
        assert ups == [True, False, True]
    finally:
        client.close()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_events_queued_together_leave_in_one_message_and_are_counted(
        leader: tuple[RecordingLeader, str]) -> None:
    servicer, addr = leader
    client = CoordinatorClient("n1", (addr,), node_pb2.Register, lambda d: None, lambda up: None)
    task = asyncio.create_task(client.run())
    try:
        await _until(lambda: client.connected)
        for i in range(10):
            client.send(node_pb2.NodeEvent(digit_pressed=node_pb2.DigitPressed(call_id=f"c{i}", digit="1")))
        await _until(lambda: len(servicer.events) == 10)
        assert client.messages_sent == 1
        assert client.messages_received == 0, "Registered is not a decision message"
    finally:
        client.close()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_events_are_pending_until_the_stream_takes_them_then_counted_as_sent(
        leader: tuple[RecordingLeader, str]) -> None:
    servicer, addr = leader
    client = CoordinatorClient("n1", (addr,), node_pb2.Register, lambda d: None, lambda up: None)
    client.send(node_pb2.NodeEvent(digit_pressed=node_pb2.DigitPressed(call_id="early", digit="1")))
    assert (client.pending, client.events_sent) == (0, 0), "no stream: dropped, neither pending nor sent"
    task = asyncio.create_task(client.run())
    try:
        await _until(lambda: client.connected)
        for i in range(MAX_BATCH + 3):
            client.send(node_pb2.NodeEvent(digit_pressed=node_pb2.DigitPressed(call_id=f"c{i}", digit="1")))
        assert (client.pending, client.events_sent) == (MAX_BATCH + 3, 0)
        await _until(lambda: len(servicer.events) == MAX_BATCH + 3)
        assert (client.pending, client.events_sent) == (0, MAX_BATCH + 3)
    finally:
        client.close()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def test_a_batch_stamp_stamps_every_decision_and_an_unstamped_decision_stays_stale() -> None:
    batch = node_pb2.DecisionBatch(stamp=common_pb2.Stamp(epoch=9, seq=41), decisions=[
        node_pb2.Decision(join_ack=node_pb2.JoinAck(call_id="c1")),
        node_pb2.Decision(join_ack=node_pb2.JoinAck(call_id="c2"))])
    assert [(d.stamp.epoch, d.stamp.seq) for d in stamped(batch)] == [(9, 41), (9, 42)]
    # A leader before DecisionBatch.stamp stamped each decision: kept as it is.
    old = node_pb2.DecisionBatch(decisions=[node_pb2.Decision(stamp=common_pb2.Stamp(epoch=3, seq=5)),
                                            node_pb2.Decision()])
    assert [(d.stamp.epoch, d.stamp.seq) for d in stamped(old)] == [(3, 5), (0, 0)]
    client = CoordinatorClient("n1", ("127.0.0.1:1",), lambda: node_pb2.Register(node_id="n1", instance_id="i"),
                               lambda dec: None, lambda up: None)
    client.highest_epoch = 3
    assert client.deliver(stamped(old)[0]) and not client.deliver(stamped(old)[1])


class RefusingFollower(node_pb2_grpc.NodeServiceServicer):
    """A follower: reads the Register, then refuses the stream with FAILED_PRECONDITION (no Registered)."""

    def __init__(self) -> None:
        self.refused = 0

    async def Connect(self, request_iterator: Any, context: Any) -> None:  # type: ignore[override]
        """Refuse like a replica that is not the leader."""
        await context.read()
        self.refused += 1
        await context.abort(grpc.StatusCode.FAILED_PRECONDITION, "not the leader")


def _request_pollers() -> list[asyncio.Task[Any]]:
    return [t for t in asyncio.all_tasks() if "_consume_request_iterator" in repr(t.get_coro())]


async def test_a_stream_refused_before_registered_leaves_no_request_poller_behind() -> None:
    server = grpc.aio.server()
    follower = RefusingFollower()
    node_pb2_grpc.add_NodeServiceServicer_to_server(follower, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    client = CoordinatorClient("n1", (f"127.0.0.1:{port}",), node_pb2.Register, lambda d: None, lambda up: None)
    task = asyncio.create_task(client.run())
    try:
        await _until(lambda: follower.refused >= 3)
        # Each refused stream's request generator must have ended (grpc's poller task with it):
        # before the fix one stayed suspended per refusal, destroyed later with "Task was destroyed
        # but it is pending!" and "aclose(): asynchronous generator is already running".
        await _until(lambda: len(_request_pollers()) <= 1)
    finally:
        client.close()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await server.stop(None)
    await _until(lambda: not _request_pollers())


async def test_a_backlog_leaves_in_full_messages_of_max_batch_events_in_order(
        leader: tuple[RecordingLeader, str]) -> None:
    servicer, addr = leader
    client = CoordinatorClient("n1", (addr,), node_pb2.Register, lambda d: None, lambda up: None)
    task = asyncio.create_task(client.run())
    total = 2 * MAX_BATCH + 5
    try:
        await _until(lambda: client.connected)
        for i in range(total):  # queued in one go: a burst bigger than two messages
            client.send(node_pb2.NodeEvent(digit_pressed=node_pb2.DigitPressed(call_id=f"c{i}", digit="1")))
        await _until(lambda: len(servicer.events) == total)
        assert servicer.batch_sizes == [MAX_BATCH, MAX_BATCH, 5]
        assert [e.digit_pressed.call_id for e in servicer.events] == [f"c{i}" for i in range(total)]
    finally:
        client.close()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


class DecidingLeader(node_pb2_grpc.NodeServiceServicer):
    """Registered, then one batch of JoinAcks for the call ids given, then keeps the stream open."""

    def __init__(self, call_ids: list[str]) -> None:
        self.call_ids = call_ids

    async def Connect(self, request_iterator: Any, context: Any) -> AsyncIterator[node_pb2.CoordinatorMessage]:
        """Answer the Register, send the batch, read until the node goes."""
        await anext(request_iterator)
        yield node_pb2.CoordinatorMessage(registered=node_pb2.Registered(epoch=1, leader="here"))
        yield node_pb2.CoordinatorMessage(decisions=node_pb2.DecisionBatch(
            stamp=common_pb2.Stamp(epoch=1, seq=1),
            decisions=[node_pb2.Decision(join_ack=node_pb2.JoinAck(call_id=c)) for c in self.call_ids]))
        async for _ in request_iterator:
            pass


async def test_a_decision_whose_handler_raises_is_counted_and_the_stream_goes_on() -> None:
    server = grpc.aio.server()
    node_pb2_grpc.add_NodeServiceServicer_to_server(DecidingLeader(["c1", "boom", "c3"]), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    done: list[str] = []

    def on_decision(dec: node_pb2.Decision) -> None:
        if dec.join_ack.call_id == "boom":
            raise ValueError("a handler bug")
        done.append(dec.join_ack.call_id)

    client = CoordinatorClient("n1", (f"127.0.0.1:{port}",), lambda: node_pb2.Register(node_id="n1", instance_id="i"),
                               on_decision, lambda up: None)
    task = asyncio.ensure_future(client.run())
    try:
        await _until(lambda: len(done) == 2)
        await asyncio.sleep(0.1)
        assert done == ["c1", "c3"] and client.failed == 1
        assert client.connected and not task.done(), "the stream must survive a failing handler"
    finally:
        client.close()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await server.stop(None)


async def test_an_address_that_never_answers_is_left_for_the_next_within_the_register_timeout(
        leader: tuple[RecordingLeader, str], monkeypatch: pytest.MonkeyPatch) -> None:
    """A stopped leader (or a dead pod still behind its Service) accepts connections, or swallows
    packets, and never answers: gRPC's own connect deadline is 20 s, the callers' grace too. The
    client moves on to the next address after REGISTER_TIMEOUT."""
    from stasis_app import coordinator_client

    monkeypatch.setattr(coordinator_client, "REGISTER_TIMEOUT", 0.5)
    servicer, addr = leader

    async def swallow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while await reader.read(65536):
            pass

    silent = await asyncio.start_server(swallow, "127.0.0.1", 0)
    silent_addr = f"127.0.0.1:{silent.sockets[0].getsockname()[1]}"
    ups: list[bool] = []
    client = CoordinatorClient("n1", (silent_addr, addr), node_pb2.Register, lambda d: None, ups.append)
    task = asyncio.ensure_future(client.run())
    try:
        started = asyncio.get_running_loop().time()
        await _until(lambda: ups == [True], timeout=4.0)
        assert asyncio.get_running_loop().time() - started < 3.0
        assert len(servicer.registers) == 1
    finally:
        client.close()
        task.cancel()
        silent.close()

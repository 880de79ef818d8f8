"""Agent operations from the dialplan: a channel entering Stasis(clusterq,agent-login,...) & co. is sent
back unanswered with CLUSTERQ_AGENT_STATUS / CLUSTERQ_MESSAGE, whatever the coordinator does.

Most tests use FakeAgents (an in-memory Agents service); the last two run the real AdminClient against
real gRPC servers on port 0 (nothing listening; a follower redirecting to the leader)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import grpc
import pytest

from clusterq_common.leader_client import AdminClient
from clusterq_proto.v1 import LEADER_TRAILER, admin_pb2, admin_pb2_grpc, common_pb2
from clusterq_testing.ports import free_tcp_port
from stasis_app.ari.fake import FakeAri
from stasis_app.ari.fake_model import Continued
from stasis_app.ari.port import AriUnavailable
from tests.unit.stasis_app.fake_agents import FakeAgents, rpc_error
from tests.unit.stasis_app.harness import Node, running

PHONE = "PJSIP/alice-0000001a"


async def _sent_back(ari: FakeAri, cid: str, timeout: float = 3.0) -> tuple[str, str]:
    """Wait until the channel is continued; its (CLUSTERQ_AGENT_STATUS, CLUSTERQ_MESSAGE). It must go
    back unanswered, to its next priority (no context given), and never become a caller."""
    deadline = time.monotonic() + timeout
    while not [c for c in ari.continued if c.channel_id == cid]:
        assert time.monotonic() < deadline, f"{cid} was not sent back to the dialplan"
        await asyncio.sleep(0.01)
    assert [c for c in ari.continued if c.channel_id == cid] == [Continued(cid, None, None, None)]
    chan = ari.channels[cid]
    assert chan.state == "Ring" and not chan.ringing and chan.moh_class is None, "the channel was answered"
    variables = chan.variables
    return variables["CLUSTERQ_AGENT_STATUS"], variables["CLUSTERQ_MESSAGE"]


async def _op(n: Node, *args: str, name: str = PHONE) -> tuple[str, str]:
    cid = n.ari.caller_enters(list(args), name=name)
    status = await _sent_back(n.ari, cid)
    assert cid not in n.app.callers and not n.coord.kinds(), "an agent operation is not a caller"
    return status


async def test_login_from_a_phone_defaults_to_its_own_device_and_this_node() -> None:
    agents = FakeAgents()
    async with running(FakeAri("a"), agent_admin=agents) as n:
        status = await _op(n, "agent-login", "alice", "queue=support:2:5", "queue=sales", "skill=lang:de",
                           "state_interface=PJSIP/desk7")
        assert status == ("LOGGEDIN", "agent alice is available")
        [(method, req)] = agents.requests
        assert method == "login"
        assert req == admin_pb2.LoginRequest(
            agent_id="alice", endpoint="PJSIP/alice", home_node="a",
            queues=[admin_pb2.QueueMembership(queue="support", penalty=2, weight=5),
                    admin_pb2.QueueMembership(queue="sales")],
            skills=[common_pb2.Skill(key="lang", value="de")], state_interface="PJSIP/desk7")


async def test_login_paused_with_an_endpoint_from_a_local_channel() -> None:
    agents = FakeAgents()
    async with running(FakeAri("a"), agent_admin=agents, node_id="b") as n:
        status = await _op(n, "agent-login", "dora", "queue=support", "endpoint=Local/dora@agents/n", "paused=yes",
                           name="Local/s@feature-codes-00000001;2")
        assert status == ("LOGGEDIN", "agent dora is paused (login)")
        [(_, req)] = agents.requests
        assert isinstance(req, admin_pb2.LoginRequest)
        assert (req.endpoint, req.home_node, req.paused) == ("Local/dora@agents/n", "b", True)


async def test_a_local_channel_without_endpoint_is_invalid_and_nothing_is_asked() -> None:
    agents = FakeAgents()
    async with running(FakeAri("a"), agent_admin=agents) as n:
        status, message = await _op(n, "agent-login", "dora", "queue=support", name="Local/s@codes-00000001;2")
        assert status == "INVALID" and "endpoint=" in message
        assert not agents.requests


@pytest.mark.parametrize(("args", "fragment"), [
    (("agent-login", "dora"), "at least one queue"),
    (("agent-pause", "dora", "colour=blue"), "unknown argument"),
    (("agent-logout",), "missing agent id"),
])
async def test_bad_arguments_are_invalid_and_nothing_is_asked(args: tuple[str, ...], fragment: str) -> None:
    agents = FakeAgents()
    async with running(FakeAri("a"), agent_admin=agents) as n:
        status, message = await _op(n, *args)
        assert status == "INVALID" and fragment in message
        assert not agents.requests


async def test_pause_unpause_logout_and_unknown_agents() -> None:
    agents = FakeAgents()
    async with running(FakeAri("a"), agent_admin=agents) as n:
        assert (await _op(n, "agent-pause", "alice"))[0] == "NOTFOUND"
        assert (await _op(n, "agent-unpause", "alice"))[0] == "NOTFOUND"
        status, message = await _op(n, "agent-logout", "alice")
        assert status == "NOTFOUND" and message == "agent alice is not logged in"
        assert (await _op(n, "agent-login", "alice", "queue=support"))[0] == "LOGGEDIN"
        assert await _op(n, "agent-pause", "alice", "reason=lunch") == ("PAUSED", "agent alice is paused (lunch)")
        assert agents.agents["alice"].pause_reason == "lunch"
        assert await _op(n, "agent-unpause", "alice") == ("UNPAUSED", "agent alice is available")
        assert await _op(n, "agent-logout", "alice") == ("LOGGEDOUT", "agent alice is logged out")
        assert "alice" not in agents.agents
        assert [m for m, _ in agents.requests] == ["pause", "unpause", "logout", "login", "pause", "unpause", "logout"]


async def test_login_to_an_unknown_queue_is_nosuchqueue() -> None:
    async with running(FakeAri("a"), agent_admin=FakeAgents(queues=("support",))) as n:
        assert await _op(n, "agent-login", "alice", "queue=support", "queue=nope") == (
            "NOSUCHQUEUE", "unknown queue(s): nope")


@pytest.mark.parametrize(("error", "status", "fragment"), [
    (rpc_error(grpc.StatusCode.INVALID_ARGUMENT, "endpoint must be a dial string"), "INVALID", "dial string"),
    (rpc_error(grpc.StatusCode.UNAVAILABLE, "etcd write failed"), "UNAVAILABLE", "UNAVAILABLE: etcd write failed"),
    (rpc_error(grpc.StatusCode.FAILED_PRECONDITION, "not the leader"), "UNAVAILABLE", "not the leader"),
    (rpc_error(grpc.StatusCode.DEADLINE_EXCEEDED, "deadline"), "UNAVAILABLE", "DEADLINE_EXCEEDED"),
    (rpc_error(grpc.StatusCode.PERMISSION_DENIED, "no"), "ERROR", "PERMISSION_DENIED: no"),
    (RuntimeError("a bug"), "ERROR", "failed to perform"),
])
async def test_refusals_and_failures(error: BaseException, status: str, fragment: str) -> None:
    agents = FakeAgents()
    agents.failures.append(error)
    async with running(FakeAri("a"), agent_admin=agents) as n:
        got, message = await _op(n, "agent-login", "alice", "queue=support")
        assert got == status and fragment in message, message


async def test_a_coordinator_that_never_answers_gives_unavailable_within_the_timeout() -> None:
    agents = FakeAgents()
    agents.answering.clear()
    agents.last_error = "UNAVAILABLE: connection refused"
    async with running(FakeAri("a"), agent_admin=agents, agent_timeout=0.3) as n:
        started = time.monotonic()
        status, message = await _op(n, "agent-pause", "alice")
        assert status == "UNAVAILABLE"
        assert message == ("no coordinator leader answered within 0.3 s "
                           "(last error: UNAVAILABLE: connection refused); the change may still have been made")
        assert 0.25 < time.monotonic() - started < 2.0
        assert not n.app.agent_ops.owns(n.ari.continued[0].channel_id)


async def test_variables_asterisk_does_not_take_do_not_keep_the_channel() -> None:
    ari = FakeAri("a")
    ari.errors["set_var"] = [AriUnavailable("busy"), AriUnavailable("busy")]
    async with running(ari, agent_admin=FakeAgents()) as n:
        cid = ari.caller_enters(["agent-logout", "alice"], name=PHONE)
        deadline = time.monotonic() + 3
        while not ari.continued:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.01)
        assert ari.continued == [Continued(cid, None, None, None)]
        assert not n.app.agent_ops.owns(cid)


async def test_a_restarted_app_performs_an_interrupted_operation_again() -> None:
    ari = FakeAri("a")
    stuck = FakeAgents()
    stuck.answering.clear()
    async with running(ari, agent_admin=stuck) as old:
        cid = ari.caller_enters(["agent-login", "alice", "queue=support"], name=PHONE)
        await old.settle()
        assert stuck.requests and not ari.continued  # the process dies while the leader is asked
    new_ari = ari.successor()
    agents = FakeAgents()
    async with running(new_ari, agent_admin=agents) as new:
        assert await _sent_back(new_ari, cid) == ("LOGGEDIN", "agent alice is available")
        assert [m for m, _ in agents.requests] == ["login"]
        assert cid not in new.app.callers and not new.coord.kinds()


async def test_a_reconnect_during_an_operation_does_not_start_it_twice() -> None:
    ari = FakeAri("a")
    agents = FakeAgents()
    agents.answering.clear()
    async with running(ari, agent_admin=agents) as n:
        cid = ari.caller_enters(["agent-unpause", "alice"], name=PHONE)
        await n.settle()
        ari.drop_connection()
        ari.restore_connection()  # resync: the channel is still in Stasis
        await n.settle()
        agents.answering.set()
        assert (await _sent_back(ari, cid))[0] == "NOTFOUND"
        assert [m for m, _ in agents.requests] == ["unpause"]


async def test_no_coordinator_listening_gives_unavailable_with_the_real_client() -> None:
    client = AdminClient([f"127.0.0.1:{free_tcp_port()}"])
    ari = FakeAri("a")
    async with running(ari, agent_admin=client, agent_timeout=1.0) as n:
        cid = ari.caller_enters(["agent-logout", "alice"], name=PHONE)
        status, message = await _sent_back(ari, cid, timeout=5.0)
        assert status == "UNAVAILABLE" and "within 1 s (last error: UNAVAILABLE" in message, message
        assert not n.app.agent_ops.owns(cid)


class _Leader(admin_pb2_grpc.AgentsServicer):
    def __init__(self) -> None:
        self.paused: list[tuple[str, str]] = []

    async def Pause(self, request: admin_pb2.PauseRequest, context: grpc.aio.ServicerContext[object, object]
                    ) -> admin_pb2.AgentState:
        self.paused.append((request.agent_id, request.reason))
        return admin_pb2.AgentState(agent_id=request.agent_id, state="paused", pause_reason=request.reason)


class _Follower(admin_pb2_grpc.AgentsServicer):
    def __init__(self, leader: str) -> None:
        self.leader = leader
        self.calls = 0

    async def Pause(self, request: admin_pb2.PauseRequest, context: grpc.aio.ServicerContext[object, object]
                    ) -> admin_pb2.AgentState:
        self.calls += 1
        context.set_trailing_metadata(((LEADER_TRAILER, self.leader),))
        await context.abort(grpc.StatusCode.FAILED_PRECONDITION, "not the leader")
        raise AssertionError("abort returned")


async def _serve(servicer: admin_pb2_grpc.AgentsServicer) -> tuple[grpc.aio.Server, str]:
    server = grpc.aio.server()
    admin_pb2_grpc.add_AgentsServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    return server, f"127.0.0.1:{port}"


async def test_a_followers_redirect_is_followed_to_the_leader() -> None:
    leader = _Leader()
    leader_server, leader_addr = await _serve(leader)
    follower = _Follower(leader_addr)
    follower_server, follower_addr = await _serve(follower)
    ari = FakeAri("a")
    try:
        # Only the follower is configured: the leader is found through its hint.
        async with running(ari, agent_admin=AdminClient([follower_addr]), agent_timeout=3.0):
            cid = ari.caller_enters(["agent-pause", "alice", "reason=lunch"], name=PHONE)
            assert await _sent_back(ari, cid, timeout=5.0) == ("PAUSED", "agent alice is paused (lunch)")
        assert follower.calls == 1 and leader.paused == [("alice", "lunch")]
    finally:
        await leader_server.stop(None)
        await follower_server.stop(None)


async def test_a_channel_that_hangs_up_during_the_operation_is_forgotten() -> None:
    ari = FakeAri("a")
    agents = FakeAgents()
    agents.answering.clear()
    async with running(ari, agent_admin=agents) as n:
        cid = ari.caller_enters(["agent-login", "alice", "queue=support"], name=PHONE)
        await n.settle()
        ari.caller_hangs_up(cid)
        await n.settle()
        agents.answering.set()  # the leader still logs alice in: the phone only hung up
        await n.settle()
        assert "alice" in agents.agents and not ari.continued
        assert not n.app.agent_ops.owns(cid) and not n.coord.kinds()
        # Nor remembered as sent back: its StasisEnd came while the operation ran.
        assert cid not in n.app.agent_ops._sent_back and not n.app.agent_ops._left


# ---- once per entry into Stasis ------------------------------------------------------------------
async def _quiet(n: Node, rounds: int = 20) -> None:
    for _ in range(rounds):
        await n.settle()


async def test_a_stasis_start_behind_a_reconnect_and_the_resyncs_listing_perform_it_once() -> None:
    """The channel's StasisStart is queued right behind AriConnected: the resync lists the channel and
    the event starts it too."""
    ari = FakeAri("a")
    agents = FakeAgents()
    async with running(ari, agent_admin=agents) as n:
        agents.agents["alice"] = admin_pb2.AgentState(agent_id="alice", state="available")
        ari.drop_connection()
        ari.restore_connection()
        ari.caller_enters(["agent-logout", "alice"], name=PHONE)
        await _quiet(n)
        assert [m for m, _ in agents.requests] == ["logout"] and len(ari.continued) == 1


async def test_a_listing_taken_before_the_channel_was_sent_back_does_not_perform_it_again() -> None:
    """The operation ends, and its channel is sent back, while the resync's GET /channels is in flight:
    the listing still shows the channel in Stasis with its operation (a second login would undo a pause
    made since)."""
    ari = FakeAri("a")
    agents = FakeAgents()
    agents.answering.clear()
    listed = ari.list_channels

    async def slow_listing() -> Any:
        channels = await listed()
        agents.answering.set()  # the leader answers while the listing travels back
        await asyncio.sleep(0.05)
        return channels

    ari.list_channels = slow_listing  # type: ignore[method-assign]
    async with running(ari, agent_admin=agents) as n:
        ari.caller_enters(["agent-login", "alice", "queue=support"], name=PHONE)
        await n.settle()
        ari.drop_connection()
        ari.restore_connection()
        await asyncio.sleep(0.3)
        await _quiet(n)
        assert [m for m, _ in agents.requests] == ["login"] and len(ari.continued) == 1


async def test_the_same_channel_running_a_second_operation_after_the_first_is_performed_again() -> None:
    ari = FakeAri("a")
    agents = FakeAgents()
    async with running(ari, agent_admin=agents) as n:
        cid = ari.caller_enters(["agent-login", "alice", "queue=support"], name=PHONE)
        assert (await _sent_back(ari, cid))[0] == "LOGGEDIN"
        await _quiet(n)  # its StasisEnd
        ari.caller_enters(["agent-pause", "alice", "reason=lunch"], channel_id=cid, name=PHONE)
        await _quiet(n)
        assert [m for m, _ in agents.requests] == ["login", "pause"] and len(ari.continued) == 2


async def test_each_operation_is_counted_under_its_status_for_metrics() -> None:
    ari = FakeAri("a")
    async with running(ari, agent_admin=FakeAgents()) as n:
        counted = n.app.counters.agent_operations
        assert set(counted) >= {"LOGGEDIN", "NOTFOUND", "INVALID", "UNAVAILABLE"} and not any(counted.values())
        assert (await _op(n, "agent-login", "alice", "queue=support"))[0] == "LOGGEDIN"
        assert (await _op(n, "agent-logout", "nobody"))[0] == "NOTFOUND"
        assert (await _op(n, "agent-pause"))[0] == "INVALID"
        assert {k: v for k, v in counted.items() if v} == {"LOGGEDIN": 1, "NOTFOUND": 1, "INVALID": 1}


async def test_performed_operations_are_forgotten_a_while_after_their_stasis_end(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A channel back in the dialplan gets no ChannelDestroyed: its entry goes ENDED_KEEP s after its
    StasisEnd (kept until the StasisEnd was seen, and shortly after, against stale listings), so a
    node performing operations all day does not keep every channel id."""
    from stasis_app.call import agent_ops as ops_module

    clock = [1000.0]
    monkeypatch.setattr(ops_module, "_clock", lambda: clock[0])
    ari = FakeAri("a")
    async with running(ari, agent_admin=FakeAgents()) as n:
        ops = n.app.agent_ops
        first = [await _op(n, "agent-login", f"ag{i}", "queue=support") for i in range(5)]
        assert {s for s, _ in first} == {"LOGGEDIN"}
        await _quiet(n)  # their StasisEnds
        assert len(ops._sent_back) == 5
        clock[0] += ops_module.ENDED_KEEP + 1
        assert (await _op(n, "agent-pause", "ag0"))[0] == "PAUSED"
        await _quiet(n)
        assert len(ops._sent_back) == 1, "the five older channels are forgotten, the newest is kept"

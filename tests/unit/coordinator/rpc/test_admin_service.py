"""QueueAdmin / Agents / Stats against an in-process replica: etcd errors, leadership that ends or
moves while a call awaits etcd, concurrent creates of one queue, Watch intervals."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
import pytest

from clusterq_proto.v1 import admin_pb2, admin_pb2_grpc
from coordinator.store.kv import KvAmbiguous
from tests.unit.coordinator.rpc.conftest import Replica

LOGIN = admin_pb2.LoginRequest(agent_id="a1", endpoint="PJSIP/a1", home_node="a",
                               queues=[admin_pb2.QueueMembership(queue="support")])


async def _error(call: Awaitable[Any]) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await call
    assert err.value.details(), "every refusal carries a message"
    return err.value


def _after(monkeypatch: pytest.MonkeyPatch, obj: object, name: str, then: Callable[[], Awaitable[None]]) -> None:
    """Make obj.name run as before, then run `then` (an event of the world during that await)."""
    real = getattr(obj, name)

    async def wrapped(*args: Any, **kwargs: Any) -> Any:
        result = await real(*args, **kwargs)
        await then()
        return result

    monkeypatch.setattr(obj, name, wrapped)


async def test_etcd_errors_are_unavailable_with_a_message(
        replica: Replica, channel: grpc.aio.Channel, monkeypatch: pytest.MonkeyPatch) -> None:
    qa, ag = admin_pb2_grpc.QueueAdminStub(channel), admin_pb2_grpc.AgentsStub(channel)
    await ag.Login(LOGIN)
    replica.kv.set_partitioned(True)
    err = await _error(ag.Pause(admin_pb2.PauseRequest(agent_id="a1", reason="lunch")))  # the read fails
    assert err.code() == grpc.StatusCode.UNAVAILABLE and "etcd" in (err.details() or "")
    err = await _error(ag.Login(LOGIN))  # the write fails
    assert err.code() == grpc.StatusCode.UNAVAILABLE and "nothing changed" in (err.details() or "")
    replica.kv.set_partitioned(False)

    async def ambiguous(*_: Any, **__: Any) -> Any:
        raise KvAmbiguous("connection reset after the request was sent")

    monkeypatch.setattr(replica.kv, "txn", ambiguous)
    err = await _error(qa.CreateQueue(admin_pb2.CreateQueueRequest(queue=admin_pb2.QueueDefinition(name="sales"))))
    assert err.code() == grpc.StatusCode.UNAVAILABLE and "outcome is unknown" in (err.details() or "")


@pytest.mark.parametrize("won_again", [False, True], ids=["lost", "lost-and-won-again"])
async def test_leadership_ending_during_the_agent_read_refuses_the_pause(
        replica: Replica, channel: grpc.aio.Channel, monkeypatch: pytest.MonkeyPatch, won_again: bool) -> None:
    ag = admin_pb2_grpc.AgentsStub(channel)
    await ag.Login(LOGIN)
    old = replica.state.runtime

    async def term_ends() -> None:
        replica.lose_leadership()
        if won_again:
            await replica.lead_again()

    _after(monkeypatch, replica.state.store, "load_agents", term_ends)
    err = await _error(ag.Pause(admin_pb2.PauseRequest(agent_id="a1", reason="lunch")))
    assert err.code() == grpc.StatusCode.FAILED_PRECONDITION
    monkeypatch.undo()
    assert not (await replica.state.store.load_agents())["a1"].paused, "nothing written for the ended term"
    assert old is not None and old.closed


async def test_leadership_moving_right_after_the_write_is_unavailable(
        replica: Replica, channel: grpc.aio.Channel, monkeypatch: pytest.MonkeyPatch) -> None:
    qa = admin_pb2_grpc.QueueAdminStub(channel)
    old = replica.state.runtime

    async def term_moves() -> None:
        if replica.state.runtime is old:  # once: the new term's own writes go through txn too
            replica.lose_leadership()
            await replica.lead_again()

    _after(monkeypatch, replica.kv, "txn", term_moves)
    err = await _error(qa.CreateQueue(admin_pb2.CreateQueueRequest(queue=admin_pb2.QueueDefinition(name="sales"))))
    assert err.code() == grpc.StatusCode.UNAVAILABLE and "stored" in (err.details() or "")
    assert old is not None and "sales" not in old.queues, "nothing applied to the closed runtime"
    assert "sales" in await replica.state.store.load_queues()


async def test_two_concurrent_creates_of_one_queue_one_wins(
        replica: Replica, channel: grpc.aio.Channel, monkeypatch: pytest.MonkeyPatch) -> None:
    qa = admin_pb2_grpc.QueueAdminStub(channel)
    real = replica.kv.txn

    async def slow_txn(*args: Any, **kwargs: Any) -> Any:
        await asyncio.sleep(0.1)  # etcd's round trip: both requests pass the in-memory check first
        return await real(*args, **kwargs)

    monkeypatch.setattr(replica.kv, "txn", slow_txn)
    results = await asyncio.gather(
        *(qa.CreateQueue(admin_pb2.CreateQueueRequest(queue=admin_pb2.QueueDefinition(name="sales", wrapup_time=w)))
          for w in (1, 2)), return_exceptions=True)
    errors = [r for r in results if isinstance(r, grpc.aio.AioRpcError)]
    assert [e.code() for e in errors] == [grpc.StatusCode.ALREADY_EXISTS]
    winner = next(r for r in results if isinstance(r, admin_pb2.QueueDefinition))
    assert (await replica.state.store.load_queues())["sales"].wrapup_time == winner.wrapup_time


@pytest.mark.parametrize("interval", [math.nan, math.inf, -math.inf, 0.1, -1.0, 3601.0])
async def test_watch_refuses_intervals_outside_the_bounds(channel: grpc.aio.Channel, interval: float) -> None:
    watch = admin_pb2_grpc.StatsStub(channel).Watch(admin_pb2.WatchRequest(interval=interval))
    err = await _error(asyncio.wait_for(watch.read(), 5))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT


@pytest.mark.parametrize("interval", [0.0, 0.2, 3600.0])
async def test_watch_takes_intervals_within_the_bounds(channel: grpc.aio.Channel, interval: float) -> None:
    watch = admin_pb2_grpc.StatsStub(channel).Watch(admin_pb2.WatchRequest(interval=interval))
    snap = await asyncio.wait_for(watch.read(), 5)
    assert [q.queue for q in snap.queues] == ["support"]
    watch.cancel()


async def test_one_corrupt_stored_agent_does_not_block_the_others(
        replica: Replica, channel: grpc.aio.Channel) -> None:
    ag = admin_pb2_grpc.AgentsStub(channel)
    replica.attach_node()
    await ag.Login(LOGIN)
    await replica.kv.put(b"/t/agents/broken", b"{not json")
    paused = await ag.Pause(admin_pb2.PauseRequest(agent_id="a1", reason="lunch"))
    assert (paused.state, paused.pause_reason) == ("paused", "lunch")
    assert set(await replica.state.store.load_agents()) == {"a1"}
    assert (await ag.Logout(admin_pb2.LogoutRequest(agent_id="a1"))).state == "logged_out"


async def test_login_takes_a_state_interface_and_the_agent_state_shows_the_device(
        replica: Replica, channel: grpc.aio.Channel) -> None:
    from coordinator.queue import DeviceStateChanged

    ag = admin_pb2_grpc.AgentsStub(channel)
    replica.attach_node()
    state = await ag.Login(admin_pb2.LoginRequest(agent_id="a2", endpoint="Local/a2@agents/n", home_node="a",
                                                  queues=[admin_pb2.QueueMembership(queue="support")]))
    assert (state.state, state.state_interface, state.device_state) == ("available", "Local/a2@agents", "UNKNOWN")
    state = await ag.Login(admin_pb2.LoginRequest(agent_id="a1", endpoint="PJSIP/a1", home_node="a",
                                                  queues=[admin_pb2.QueueMembership(queue="support")],
                                                  state_interface="PJSIP/desk1"))
    assert (state.state_interface, state.device_state) == ("PJSIP/desk1", "UNKNOWN")
    rt = replica.state.runtime
    assert rt is not None
    rt.apply(DeviceStateChanged("a", "PJSIP/desk1", "INUSE"))
    state = await ag.GetState(admin_pb2.AgentStateRequest(agent_id="a1"))
    assert (state.state, state.device_state) == ("busy", "INUSE")
    stats = await admin_pb2_grpc.StatsStub(channel).Snapshot(admin_pb2.StatsRequest(queue="support"))
    assert (stats.queues[0].agents_logged_in, stats.queues[0].agents_available, stats.queues[0].agents_busy) == (
        2, 1, 1)
    rt.apply(DeviceStateChanged("a", "PJSIP/desk1", "INVALID"))
    state = await ag.GetState(admin_pb2.AgentStateRequest(agent_id="a1"))
    assert (state.state, state.device_state) == ("unavailable", "INVALID")
    # Survives a leader change: the stored login keeps it.
    stored = (await replica.state.store.load_agents())["a1"]
    assert stored.config.state_interface == "PJSIP/desk1"
    err = await _error(ag.Login(admin_pb2.LoginRequest(
        agent_id="a3", endpoint="PJSIP/a3", home_node="a", queues=[admin_pb2.QueueMembership(queue="support")],
        state_interface="PJSIP/a 3")))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and "state_interface" in (err.details() or "")


@pytest.mark.parametrize("rpc", ["logout", "pause", "delete_queue"])
async def test_a_write_cancelled_by_the_client_deadline_is_still_applied(
        replica: Replica, channel: grpc.aio.Channel, monkeypatch: pytest.MonkeyPatch, rpc: str) -> None:
    """The client gives up (deadline) while etcd commits; the change is stored, so the engine must
    apply it too: a logout stored but not applied left the agent rung, and each retry NOT_FOUND."""
    qa, ag = admin_pb2_grpc.QueueAdminStub(channel), admin_pb2_grpc.AgentsStub(channel)
    await ag.Login(LOGIN)
    rt = replica.state.runtime
    assert rt is not None
    committed = asyncio.Event()
    release = asyncio.Event()
    real_txn = replica.kv.txn

    async def slow_txn(*args: Any, **kwargs: Any) -> Any:
        result = await real_txn(*args, **kwargs)  # stored in etcd ...
        committed.set()
        await release.wait()  # ... but the reply is slow
        return result

    monkeypatch.setattr(replica.kv, "txn", slow_txn)
    call = {
        "logout": lambda: ag.Logout(admin_pb2.LogoutRequest(agent_id="a1"), timeout=0.3),
        "pause": lambda: ag.Pause(admin_pb2.PauseRequest(agent_id="a1", reason="lunch"), timeout=0.3),
        "delete_queue": lambda: qa.DeleteQueue(admin_pb2.DeleteQueueRequest(name="support"), timeout=0.3),
    }[rpc]
    err = await _error(call())
    assert err.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert committed.is_set()
    release.set()
    for _ in range(100):  # the server-side commit finishes on its own
        await asyncio.sleep(0.01)
        views = {a.agent_id: a for a in rt.engine.agent_states()}
        done = {"logout": "a1" not in views, "pause": "a1" in views and views["a1"].paused,
                "delete_queue": "support" not in rt.queues}[rpc]
        if done:
            break
    assert done, f"{rpc} stored in etcd but never applied to the engine"
    monkeypatch.undo()
    stored = await replica.state.store.load_agents()
    queues = await replica.state.store.load_queues()
    assert {"logout": "a1" not in stored, "pause": stored.get("a1") is not None and stored["a1"].paused,
            "delete_queue": "support" not in queues}[rpc]


async def test_a_login_again_keeps_the_pause_in_the_engine_and_in_etcd(
        replica: Replica, channel: grpc.aio.Channel) -> None:
    """Re-login changes memberships; a paused agent stays paused with its reason (as app_queue keeps a
    member's pause), so a later leader, loading etcd, agrees with this one."""
    ag = admin_pb2_grpc.AgentsStub(channel)
    replica.attach_node()
    await ag.Login(LOGIN)
    await ag.Pause(admin_pb2.PauseRequest(agent_id="a1", reason="lunch"))
    again = admin_pb2.LoginRequest()
    again.CopyFrom(LOGIN)
    again.skills.add(key="lang", value="de")
    state = await ag.Login(again)
    assert state.state == "paused" and state.pause_reason == "lunch"
    stored = (await replica.state.store.load_agents())["a1"]
    assert stored.paused and stored.pause_reason == "lunch" and stored.config.skills == (("lang", "de"),)
    await ag.Unpause(admin_pb2.UnpauseRequest(agent_id="a1"))
    state = await ag.Login(again)
    assert state.state != "paused" and not (await replica.state.store.load_agents())["a1"].paused
    paused_login = admin_pb2.LoginRequest()
    paused_login.CopyFrom(LOGIN)
    paused_login.paused = True
    state = await ag.Login(paused_login)
    assert state.state == "paused" and (await replica.state.store.load_agents())["a1"].paused

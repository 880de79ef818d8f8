"""The stasis app under faults on real parts: ARI websocket cut, a replacing instance (rolling update),
the app SIGKILLed and restarted (briefly, and for longer than node_ttl), Asterisk stalled (SIGSTOP)
and restarted, and every coordinator gone (grace time).

Call facts come from the tests' ARI observers (bridges, ClusterqResult user events, channel variables
the app keeps on its callers, what a caller's phone receives); the processes' logs are read only to
time when a process noticed something (a reconnect, a heartbeat failure).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import Callable, Sequence
from typing import Any

import pytest

from clusterq_proto.v1 import admin_pb2
from clusterq_testing.asterisk import AsteriskNode
from clusterq_testing.observer import AriObserver, CallerLegs, ObservedEvent
from clusterq_testing.ports import free_tcp_port
from clusterq_testing.processes import ManagedProcess, stasis_process
from tests.e2e.conftest import QUEUES_YAML, Clusterq
from tests.e2e.test_caller_experience import heard

pytestmark = pytest.mark.chaos

QUEUES = QUEUES_YAML + """
  quick:
    strategy: linear
    ring_timeout: 3
"""
HEARTBEAT_BOUND = 3.0  # AriSettings: heartbeat_interval 1 s + heartbeat_timeout 2 s


# ------------------------------------------------------------------------------ helpers
async def _until(cond: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := cond()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)
    return value


async def _setup(cq: Clusterq, factory: Any, observers: Any, *, stasis: bool = True, grace: float = 20.0
                 ) -> tuple[AsteriskNode, AriObserver]:
    cq.queues_file.write_text(QUEUES)
    [node] = await factory(["a"])
    obs: AriObserver = await observers(node)
    await cq.start_coordinators(1)
    if stasis:
        await cq.start_stasis([node], grace=grace)
    return node, obs


async def _setup_two(cq: Clusterq, factory: Any, observers: Any
                     ) -> tuple[AsteriskNode, AsteriskNode, AriObserver, AriObserver]:
    """Nodes a and b, each with its stasis app and an observer, and one coordinator."""
    cq.queues_file.write_text(QUEUES)
    a, b = await factory(["a", "b"])
    obs_a, obs_b = await observers(a), await observers(b)
    await cq.start_coordinators(1)
    await cq.start_stasis([a, b])
    return a, b, obs_a, obs_b


def _stasis(cq: Clusterq, node: AsteriskNode, key: str, ari_url: str | None = None) -> ManagedProcess:
    """Start one more stasis app process for `node` (own log file; stopped by the fixture)."""
    proc = stasis_process(node.name, cq.log_dir / key, ari_url=ari_url or node.ari_url, ari_user=node.ari_user,
                          ari_password=node.ari_password, coordinators=list(cq.addresses.values()))
    proc.start()
    cq.stasis[key] = proc
    return proc


async def _ready(proc: ManagedProcess, timeout: float = 20.0) -> None:
    await proc.wait_log("connected (app clusterq)", timeout=timeout)
    await proc.wait_log("connected to leader", timeout=timeout)


async def _log_count(proc: ManagedProcess, needle: str, count: int, timeout: float) -> float:
    """Wait until `needle` appears `count` times in the log; the monotonic time it was seen."""
    await _until(lambda: proc.log_text().count(needle) >= count, timeout, f"{count} x {needle!r} in {proc.name}")
    return time.monotonic()


async def _caller(obs: AriObserver, args: str, number: str) -> CallerLegs:
    legs = await obs.originate_caller(args, caller_number=number)
    await obs.wait_for_type("StasisStart", legs.phone_id, timeout=10)
    return legs


async def _sequenced(obs: AriObserver, legs: CallerLegs, timeout: float = 10.0) -> tuple[int, int]:
    """(CLUSTERQ_SEQ, CLUSTERQ_POSITION) once the leader sequenced the caller."""
    for name in ("CLUSTERQ_POSITION", "CLUSTERQ_SEQ"):
        await obs.wait_for(lambda e, name=name: e.type == "ChannelVarset" and e.channel_id == legs.queue_id
                           and e.raw.get("variable") == name, timeout=timeout)
    seq, pos = await obs.get_var(legs.queue_id, "CLUSTERQ_SEQ"), await obs.get_var(legs.queue_id, "CLUSTERQ_POSITION")
    return int(seq or 0), int(pos or 0)


def _bridged_numbers(obs: AriObserver, agent: str) -> list[str]:
    """Caller numbers on the agent's legs, in the order they were offered."""
    return [e.raw["channel"]["caller"]["number"] for e in obs.events_of("StasisStart") if e.args[:2] == ("agent", agent)]


def _result(obs: AriObserver, channel_id: str) -> dict[str, str] | None:
    found = [u for u in obs.user_events("ClusterqResult") if u.channel_id == channel_id]
    return dict(found[0].fields) if found else None


async def _bridge(obs: AriObserver, channel_id: str, timeout: float = 10.0, since: int = 0) -> ObservedEvent:
    return await obs.wait_for(lambda e: e.type == "ChannelEnteredBridge" and channel_id in e.raw["bridge"]["channels"]
                              and len(e.raw["bridge"]["channels"]) == 2, timeout=timeout, since=since)


async def _music(obs: AriObserver, node: AsteriskNode, phone_id: str) -> None:
    """The caller's phone receives a continuous, audible stream (music on hold) for a second."""
    seconds, level = await heard(obs, node, phone_id, 1.0)
    assert seconds >= 0.8 and level > 100, f"no music: {seconds:.2f} s of audio, RMS {level:.0f}"


async def _serve_all(cq: Clusterq, obs: AriObserver, agent: str, callers: Sequence[CallerLegs],
                     queue: str = "support", timeout: float = 30.0,
                     caller_obs: Sequence[AriObserver] = ()) -> list[str]:
    """Log in one agent homed on obs's node that answers and hangs up quickly; wait until every caller
    was bridged (on its own node: `caller_obs`, default obs); the caller numbers in offer order."""
    obs.set_agent_behaviour(agent, "answer_then_hangup", delay=0.05, after=0.2)
    await cq.client().login(agent, f"Local/{agent}@clusterq-agents-test/n", obs.node.name, [queue])
    for legs, seen_by in zip(callers, caller_obs or [obs] * len(callers), strict=True):
        await _bridge(seen_by, legs.queue_id, timeout=timeout)
    return _bridged_numbers(obs, agent)


class CuttableProxy:
    """A TCP proxy in front of Asterisk's HTTP port whose open connections the test can cut."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = free_tcp_port()
        self._writers: set[asyncio.StreamWriter] = set()
        self._server: asyncio.Server | None = None
        self.cuts = 0

    async def start(self) -> None:
        """Listen on 127.0.0.1:self.port."""
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.close()
            return
        self._writers |= {writer, up_writer}
        await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            self._writers.discard(writer)
            writer.close()

    def cut(self) -> None:
        """Reset every open connection (websocket included), as a network blip would."""
        self.cuts += 1
        for w in list(self._writers):
            w.transport.abort()
        self._writers.clear()

    async def close(self) -> None:
        """Stop listening and cut everything."""
        self.cut()
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()


# ------------------------------------------------------------------------------ ARI websocket
async def test_ari_connection_cut_reconnects_and_waiting_callers_keep_their_place(
        clusterq: Clusterq, asterisk_factory: object, observers: object) -> None:
    node, obs = await _setup(clusterq, asterisk_factory, observers, stasis=False)
    proxy = CuttableProxy(node.http_port)
    await proxy.start()
    try:
        proc = _stasis(clusterq, node, "a", ari_url=f"http://127.0.0.1:{proxy.port}/")
        await _ready(proc)
        callers = [await _caller(obs, "support", f"10{i}") for i in range(3)]
        places = [await _sequenced(obs, c) for c in callers]
        assert [p for _, p in places] == [1, 2, 3]
        for i in range(2):  # twice: the second cut hits a connection made by a reconnect
            cut_at = time.monotonic()
            proxy.cut()
            await _log_count(proc, "ARI a: disconnected", i + 1, 5)
            back = await _log_count(proc, "ARI a: connected (app clusterq)", i + 2, 10)
            assert back - cut_at < 2.0, f"reconnect took {back - cut_at:.2f} s"
        assert all(_result(obs, c.queue_id) is None for c in callers), "nobody was sent back"
        late = await _caller(obs, "support", "109")
        assert await _sequenced(obs, late) == (places[-1][0] + 1, 4)
        served = await _serve_all(clusterq, obs, "ag", [*callers, late])
        assert served == ["100", "101", "102", "109"]
    finally:
        await proxy.close()


async def test_a_replacing_instance_takes_over_and_the_old_one_stands_down(
        clusterq: Clusterq, asterisk_factory: object, observers: object) -> None:
    node, obs = await _setup(clusterq, asterisk_factory, observers)
    old = clusterq.stasis["a"]
    callers = [await _caller(obs, "support", f"20{i}") for i in range(3)]
    places = [await _sequenced(obs, c) for c in callers]
    # Rolling update: a second instance for the same node registers the same ARI app.
    new = _stasis(clusterq, node, "a-new")
    await _ready(new)
    await old.wait_log("standing down", timeout=10)
    await _until(lambda: not old.alive(), 10, "the old instance to exit")
    assert old.proc is not None and old.proc.returncode == 0
    assert new.log_text().count("adopting caller") == 3
    assert all(_result(obs, c.queue_id) is None for c in callers), "the old instance gave nobody back"
    late = await _caller(obs, "support", "209")
    assert await _sequenced(obs, late) == (places[-1][0] + 1, 4)
    assert await _serve_all(clusterq, obs, "ag", [*callers, late]) == ["200", "201", "202", "209"]


# ------------------------------------------------------------------------------ stasis app killed
async def test_stasis_app_killed_and_restarted_readopts_callers_and_live_calls(
        clusterq: Clusterq, asterisk_factory: object, observers: object) -> None:
    node, obs = await _setup(clusterq, asterisk_factory, observers)
    client = clusterq.client()
    obs.set_agent_behaviour("talker", "answer", delay=0.05)
    await client.login("talker", "Local/talker@clusterq-agents-test/n", "a", ["quick"])
    talking = await _caller(obs, "quick", "300")
    live = await _bridge(obs, talking.queue_id)
    callers = [await _caller(obs, "support", f"30{i + 1}") for i in range(4)]
    places = [await _sequenced(obs, c) for c in callers]
    assert [p for _, p in places] == [1, 2, 3, 4]
    ghost = await _caller(obs, "support", "305")
    ghost_seq, _ = await _sequenced(obs, ghost)

    clusterq.stasis["a"].signal(signal.SIGKILL)
    await clusterq.stasis["a"].async_stop()
    await obs.hangup(ghost.phone_id)  # nobody tells the leader: the app is down
    await obs.wait_for_type("ChannelDestroyed", ghost.queue_id, timeout=5)
    started = time.monotonic()
    fresh = _stasis(clusterq, node, "a-restarted")
    await _ready(fresh)
    adopted_in = time.monotonic() - started
    assert fresh.log_text().count("adopting caller") == 4
    assert "adopting connected caller" in fresh.log_text()
    assert adopted_in < 5.0, f"restart to serving took {adopted_in:.2f} s"
    # The live call was not touched: same bridge, same two channels.
    bridges = {b.bridge_id: b.channel_ids for b in await obs.list_bridges()}
    assert sorted(bridges[live.raw["bridge"]["id"]]) == sorted(live.raw["bridge"]["channels"])
    # Places kept: a caller arriving now comes after all of them (the leader still counts the
    # caller that hung up unseen until it is offered: position 5 or 6), and they are served in
    # order; nobody is rung for the caller that left.
    late = await _caller(obs, "support", "309")
    seq, pos = await _sequenced(obs, late)
    assert seq > ghost_seq and pos in (5, 6)
    assert await _serve_all(clusterq, obs, "ag", [*callers, late]) == ["301", "302", "303", "304", "309"]
    # The adopted live call still ends properly: the agent hangs up, the caller continues.
    agent_leg = next(e.channel_id for e in obs.events_of("StasisStart") if e.args[:2] == ("agent", "talker"))
    await obs.hangup(agent_leg or "")
    fields = await _until(lambda: _result(obs, talking.queue_id), 10, "the live caller's result")
    assert fields["status"] == "CONTINUE"


async def test_stasis_app_down_longer_than_node_ttl_keeps_callers_with_music_and_places(
        clusterq: Clusterq, asterisk_factory: Any, observers: Any) -> None:
    a, _, obs_a, obs_b = await _setup_two(clusterq, asterisk_factory, observers)
    # Arrival order across nodes: a, b, a.
    x1 = await _caller(obs_a, "support", "401")
    await _sequenced(obs_a, x1)
    y1 = await _caller(obs_b, "support", "402")
    await _sequenced(obs_b, y1)
    x2 = await _caller(obs_a, "support", "403")
    last_seq, _ = await _sequenced(obs_a, x2)
    clusterq.stasis["a"].signal(signal.SIGKILL)
    await clusterq.stasis["a"].async_stop()
    leader = clusterq.coordinators[await clusterq.wait_leader()]
    # The leader forgets node a's callers (NODE_LOST; the decision cannot reach them)...
    await _until(lambda: "node a lost" in leader.log_text(), 15, "the leader to declare node a lost")
    # ...while Asterisk keeps them in Stasis with their music.
    await _music(obs_a, a, x1.phone_id)
    fresh = _stasis(clusterq, a, "a-restarted")
    await _ready(fresh)
    assert all(_result(obs_a, c.queue_id) is None for c in (x1, x2))
    late = await _caller(obs_a, "support", "404")
    seq, pos = await _sequenced(obs_a, late)
    assert seq > last_seq and pos == 4
    # Re-registered with their own sequences, a's callers are served around b's as they arrived.
    served = await _serve_all(clusterq, obs_b, "ag", [x1, y1, x2, late], caller_obs=[obs_a, obs_b, obs_a, obs_a])
    assert served == ["401", "402", "403", "404"]


async def test_an_agent_talking_on_a_node_that_was_lost_and_comes_back_is_not_rung_again(
        clusterq: Clusterq, asterisk_factory: Any, observers: Any) -> None:
    """Node b's stasis app is down (SIGKILL) longer than node_ttl while its agent talks: the leader
    declares b lost and ends that call in its books, but on Asterisk it goes on. When b's app is back
    and registers the call it re-adopted, the agent must not be rung for the caller waiting on node a
    before that re-report says it talks; it is offered once its call really ends."""
    _, b, obs_a, obs_b = await _setup_two(clusterq, asterisk_factory, observers)
    obs_b.set_agent_behaviour("talker", "answer", delay=0.05)
    # Its state interface is a device nobody uses (NOT_INUSE): the device state does not
    # show the call, so only the order of the re-report can keep the agent from a second offer.
    await clusterq.client().login_request(admin_pb2.LoginRequest(
        agent_id="talker", endpoint="Local/talker@clusterq-agents-test/n", home_node="b",
        queues=[admin_pb2.QueueMembership(queue="support")], state_interface="Local/desk7@clusterq-agents-test"))
    talking = await _caller(obs_b, "support", "501")
    await _bridge(obs_b, talking.queue_id)
    assert len(obs_b.agent_legs("talker")) == 1
    waiting = await _caller(obs_a, "support", "502")
    await _sequenced(obs_a, waiting)

    clusterq.stasis["b"].signal(signal.SIGKILL)
    await clusterq.stasis["b"].async_stop()
    leader = clusterq.coordinators[await clusterq.wait_leader()]
    await _until(lambda: "node b lost" in leader.log_text(), 15, "the leader to declare node b lost")
    fresh = _stasis(clusterq, b, "b-restarted")
    await _ready(fresh)
    assert "adopting connected caller" in fresh.log_text()
    await asyncio.sleep(1.5)  # time for an offer the re-attach would make to ring on Asterisk
    assert len(obs_b.agent_legs("talker")) == 1, "the talking agent was rung for a second caller"
    assert _result(obs_b, talking.queue_id) is None, "the live call was not touched"
    # The call really ends: now the agent takes the caller waiting on a.
    await obs_b.hangup(obs_b.agent_legs("talker")[0])
    await _bridge(obs_a, waiting.queue_id, timeout=15)
    assert len(obs_b.agent_legs("talker")) == 2


async def test_a_frozen_stasis_app_is_detected_declared_lost_and_re_registers_when_it_resumes(
        clusterq: Clusterq, asterisk_factory: Any, observers: Any) -> None:
    """SIGSTOP keeps the app's connection open but unanswered (as a partition dropping packets would):
    the leader's keepalive must end the stream, so that the node is lost after node_ttl and nothing
    is offered to it meanwhile. Resumed, the app re-registers and its caller keeps its place."""
    _, _, obs_a, obs_b = await _setup_two(clusterq, asterisk_factory, observers)
    first = await _caller(obs_b, "support", "601")
    await _sequenced(obs_b, first)
    second = await _caller(obs_a, "support", "602")
    await _sequenced(obs_a, second)
    stasis_b = clusterq.stasis["b"]
    leader = clusterq.coordinators[await clusterq.wait_leader()]
    stasis_b.signal(signal.SIGSTOP)
    try:
        await _until(lambda: "node b detached" in leader.log_text(), 12, "the leader to detach frozen node b")
        await _until(lambda: "node b lost" in leader.log_text(), 15, "the leader to declare node b lost")
    finally:
        stasis_b.signal(signal.SIGCONT)
    await _log_count(stasis_b, "connected to leader", 2, timeout=15)
    assert _result(obs_b, first.queue_id) is None, "its caller stayed in the queue on Asterisk"
    served = await _serve_all(clusterq, obs_a, "ag", [first, second], caller_obs=[obs_b, obs_a])
    assert served == ["601", "602"], "re-registered with its sequence: first in line again"


# ------------------------------------------------------------------------------ Asterisk faults
async def test_a_stalled_asterisk_is_detected_within_the_heartbeat_and_calls_resume(
        clusterq: Clusterq, asterisk_factory: object, observers: object) -> None:
    node, obs = await _setup(clusterq, asterisk_factory, observers)
    proc = clusterq.stasis["a"]
    caller = await _caller(obs, "quick", "500")
    await _sequenced(obs, caller)
    stopped_at = time.monotonic()
    node.kill(signal.SIGSTOP)
    try:
        detected = await _log_count(proc, "heartbeat: GET /asterisk/ping", 1, HEARTBEAT_BOUND + 3)
        assert detected - stopped_at <= HEARTBEAT_BOUND + 0.5, f"stall detected after {detected - stopped_at:.2f} s"
        # An agent logs in while Asterisk is frozen: its offer cannot be rung now; it must not turn
        # into a tight offer/fail loop either.
        obs.set_agent_behaviour("st", "answer", delay=0.05)
        await clusterq.client().login("st", "Local/st@clusterq-agents-test/n", "a", ["quick"])
        await asyncio.sleep(2.0)
    finally:
        node.kill(signal.SIGCONT)
    await _log_count(proc, "ARI a: connected (app clusterq)", 2, 10)
    await _bridge(obs, caller.queue_id, timeout=15)
    assert proc.log_text().count("originate Local/st@") <= 2, "offers to an unreachable Asterisk looped"
    assert _result(obs, caller.queue_id) is None


async def test_asterisk_restart_reconnects_and_new_calls_flow(
        clusterq: Clusterq, asterisk_factory: object, observers: object) -> None:
    node, obs = await _setup(clusterq, asterisk_factory, observers)
    proc = clusterq.stasis["a"]
    await _sequenced(obs, await _caller(obs, "support", "600"))  # this caller dies with Asterisk
    restarted = time.monotonic()
    await node.async_restart()
    back = await _log_count(proc, "ARI a: connected (app clusterq)", 2, 20)
    assert back - restarted < 15.0
    await obs.wait_for_type("ObserverConnected", timeout=10)
    fresh = await _caller(obs, "support", "601")
    await _sequenced(obs, fresh)
    # The leader learnt that caller 600 is gone: the agent's first offer is the new caller.
    assert await _serve_all(clusterq, obs, "ag", [fresh]) == ["601"]


# ------------------------------------------------------------------------------ coordinator gone
async def test_without_any_coordinator_callers_keep_music_then_leave_unavailable_after_grace(
        clusterq: Clusterq, asterisk_factory: object, observers: object) -> None:
    grace = 4.0
    node, obs = await _setup(clusterq, asterisk_factory, observers, grace=grace)
    proc = clusterq.stasis["a"]
    callers = [await _caller(obs, "support", f"70{i}") for i in range(2)]
    for c in callers:
        await _sequenced(obs, c)
    coordinators = list(clusterq.coordinators.values())
    for coord in coordinators:
        coord.signal(signal.SIGKILL)
    gone = time.monotonic()
    for coord in coordinators:
        await coord.async_stop()
    # During the grace time the callers stay, with music.
    await _music(obs, node, callers[0].phone_id)
    assert all(_result(obs, c.queue_id) is None for c in callers)
    results = [await _until(lambda c=c: _result(obs, c.queue_id), grace + 5, "UNAVAILABLE") for c in callers]
    left = time.monotonic()
    assert all(r["status"] == "UNAVAILABLE" for r in results), results
    assert grace - 0.5 <= left - gone <= grace + 2.0, f"left {left - gone:.2f} s after the coordinators died"
    assert [r["position"] for r in results] == ["1", "2"]
    # Still no coordinator: a new caller is sent back at once.
    asked = time.monotonic()
    late = await obs.originate_caller("support", caller_number="709")
    late_result = await _until(lambda: _result(obs, late.queue_id), 5, "the late caller's result")
    assert late_result["status"] == "UNAVAILABLE" and time.monotonic() - asked < 2.0
    # A coordinator again (same address): callers queue normally.
    for coord in coordinators:
        coord.start()
    await clusterq.wait_leader()
    await _log_count(proc, "connected to leader", 2, 20)
    again = await _caller(obs, "support", "710")
    await _sequenced(obs, again)
    assert _result(obs, again.queue_id) is None

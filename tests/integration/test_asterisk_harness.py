"""The real-Asterisk harness against real Asterisk 22 nodes.

Where clusterq itself would act, a stand-in AriObserver registered as app `clusterq` plays it.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import time
from pathlib import Path

import pytest

from clusterq_testing import asterisk_conf
from clusterq_testing.asterisk import AsteriskNode
from clusterq_testing.asterisk_node_config import ConfigFile, NodeConfig
from clusterq_testing.observer import AriObserver
from tests.conftest import AsteriskFactory, ObserverFactory

pytestmark = pytest.mark.integration


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is gone for our purposes only once reaped; we reap in stop(), so a live /proc entry
    # here means a real process.
    return Path(f"/proc/{pid}").exists()


def _comm(pid: int) -> str:
    return Path(f"/proc/{pid}/comm").read_text().strip()


async def _caller_in_queue(obs: AriObserver, clusterq: AriObserver, args: str = "support") -> tuple[str, str]:
    """Originate a caller, answer its ;2 as clusterq would; returns (phone_id, queue_id)."""
    legs = await obs.originate_caller(args)
    await clusterq.wait_for_type("StasisStart", legs.queue_id)
    await clusterq.answer(legs.queue_id)
    await obs.wait_for_type("StasisStart", legs.phone_id)
    return legs.phone_id, legs.queue_id


async def test_two_nodes_start_mesh_and_answer_ari(asterisk_factory: AsteriskFactory) -> None:
    t0 = time.monotonic()
    a, b = await asterisk_factory(["a", "b"])
    started = time.monotonic() - t0
    print(f"\nstart of 2 nodes in parallel: {started:.2f}s")
    for node, peer in ((a, b), (b, a)):
        assert node.ping()
        assert node.pid is not None
        assert _comm(node.pid) == "asterisk"
        assert node.peers == {peer.name: peer.sip_port}
        endpoints = node.cli("pjsip show endpoints")
        assert f"Endpoint:  {peer.name} " in endpoints
        assert "Asterisk 22." in node.cli("core show version")
    assert a.rtp.end < b.rtp.start or b.rtp.end < a.rtp.start
    assert a.ari_password not in repr(a) and a.ari_password != b.ari_password
    assert started < 15


async def test_cross_node_pjsip_call(asterisk_factory: AsteriskFactory, observers: ObserverFactory) -> None:
    a, b = await asterisk_factory(["a", "b"])
    obs_a = await observers(a)
    clusterq_b = await observers(b, "clusterq")  # stand-in for clusterq on b
    out_id = "a-out-1"
    await obs_a.ari("POST", "/channels", {
        "endpoint": "PJSIP/123@b", "app": "cqtest", "appArgs": "outbound,b", "channelId": out_id,
        "formats": "ulaw", "callerId": '"Alice" <4711>', "timeout": 10,
    })
    inbound = await clusterq_b.wait_for(lambda e: e.type == "StasisStart" and e.args[:1] == ("inbound",))
    assert inbound.args == ("inbound", "123")
    assert inbound.channel_id is not None and inbound.channel_id.startswith("b-")
    assert inbound.channel_name is not None and inbound.channel_name.startswith("PJSIP/a-")
    assert inbound.raw["channel"]["caller"] == {"name": "Alice", "number": "4711"}
    await clusterq_b.answer(inbound.channel_id)
    up = await obs_a.wait_for_type("StasisStart", out_id)
    assert up.channel_state == "Up" and up.args == ("outbound", "b")
    assert (await obs_a.ari("GET", f"/channels/{out_id}"))["state"] == "Up"
    assert (await clusterq_b.ari("GET", f"/channels/{inbound.channel_id}"))["state"] == "Up"
    await obs_a.hangup(out_id)
    await clusterq_b.wait_for_type("StasisEnd", inbound.channel_id)


async def test_stop_and_kill_leave_no_process(asterisk_factory: AsteriskFactory) -> None:
    a, b, c = await asterisk_factory(["a", "b", "c"])
    pids = [n.pid or 0 for n in (a, b, c)]
    assert all(pids)

    t0 = time.monotonic()
    a.stop()
    print(f"\ngraceful stop: {time.monotonic() - t0:.2f}s")
    assert a.pid is None and not _pid_alive(pids[0]) and not a.host_dir.exists()

    b.kill(signal.SIGKILL)
    assert b.wait_exited(5) == -signal.SIGKILL
    b.stop()
    assert not _pid_alive(pids[1]) and not b.host_dir.exists()

    c.kill(signal.SIGSTOP)  # a frozen node cannot answer `core stop now`: stop() must still work
    t0 = time.monotonic()
    c.stop(timeout=4)
    print(f"stop of a SIGSTOPped node: {time.monotonic() - t0:.2f}s")
    assert not _pid_alive(pids[2])
    with pytest.raises(RuntimeError):
        c.kill(signal.SIGKILL)


async def test_restart_keeps_ports_and_password(asterisk_factory: AsteriskFactory) -> None:
    (a,) = await asterisk_factory(["a"])
    old_pid, port, password = a.pid, a.http_port, a.ari_password
    t0 = time.monotonic()
    await a.async_restart()
    print(f"\nrestart: {time.monotonic() - t0:.2f}s")
    assert a.pid is not None and a.pid != old_pid
    assert (a.http_port, a.ari_password) == (port, password) and a.ping()


async def test_node_that_exits_during_start_raises_with_its_log(monkeypatch: pytest.MonkeyPatch) -> None:
    real_render = asterisk_conf.render_config

    def render_with_missing_required_module(cfg: NodeConfig) -> tuple[ConfigFile, ...]:
        return tuple(ConfigFile(f.name, f.text + "require = res_no_such_module.so\n")
                     if f.name == "modules.conf" else f for f in real_render(cfg))

    monkeypatch.setattr("clusterq_testing.asterisk_instance.render_config", render_with_missing_required_module)
    node = AsteriskNode("x")
    try:
        with pytest.raises(RuntimeError, match="exited") as err:
            node.start(timeout=20)
        assert "res_no_such_module.so" in str(err.value)  # the log tail explains why
        assert node.ari_password not in str(err.value)
        assert node.pid is None
    finally:
        node.stop()


async def test_node_whose_ari_never_answers_times_out() -> None:
    with socket.socket() as squatter:  # bound, not listening: Asterisk cannot bind its HTTP port
        squatter.bind(("127.0.0.1", 0))
        node = AsteriskNode("y", http_port=squatter.getsockname()[1])
        try:
            with pytest.raises(RuntimeError, match="not up after"):
                node.start(timeout=3)
            assert node.pid is None
        finally:
            node.stop()

        squatter.listen()  # now something answers on the port: refuse before starting anything
        with pytest.raises(RuntimeError, match="already listens"):
            node.start(timeout=3)


async def test_caller_enters_clusterq_and_phone_half_lands_in_test_app(
    asterisk_factory: AsteriskFactory, observers: ObserverFactory
) -> None:
    (a,) = await asterisk_factory(["a"])
    obs, clusterq = await observers(a), await observers(a, "clusterq")
    legs = await obs.originate_caller("support,priority=5,timeout=30", caller_number="555", caller_name="Bob")
    start = await clusterq.wait_for_type("StasisStart", legs.queue_id)
    assert start.args == ("support", "priority=5", "timeout=30")
    assert start.channel_name is not None and start.channel_name.startswith("Local/support@clusterq-callers")
    assert start.channel_name.endswith(";2")
    assert start.raw["channel"]["caller"] == {"name": "Bob", "number": "555"}
    assert not obs.events_of("StasisStart")  # the phone half waits until clusterq answers

    plain = await obs.originate_caller("sales")
    assert (await clusterq.wait_for_type("StasisStart", plain.queue_id)).args == ("sales",)

    await clusterq.answer(legs.queue_id)
    phone = await obs.wait_for_type("StasisStart", legs.phone_id)
    assert phone.args == ("caller",) and phone.channel_state == "Up"
    assert phone.channel_name is not None and phone.channel_name.endswith(";1")
    assert await obs.get_var(legs.queue_id, "CQ_ARGS") == "support,priority=5,timeout=30"
    assert set(await obs.channel_ids()) >= {legs.phone_id, legs.queue_id, plain.phone_id, plain.queue_id}


async def test_dtmf_crosses_a_bridge_both_ways(asterisk_factory: AsteriskFactory, observers: ObserverFactory
                                               ) -> None:
    (a,) = await asterisk_factory(["a"])
    obs, clusterq = await observers(a), await observers(a, "clusterq")
    phone_id, queue_id = await _caller_in_queue(obs, clusterq)
    # the stand-in dials an agent like clusterq does; the observer answers its ;2 half
    await clusterq.ari("POST", "/channels", {
        "endpoint": "Local/alice@clusterq-agents-test/n", "app": "clusterq", "appArgs": "agent",
        "channelId": "a-agent-1", "otherChannelId": "a-agent-2", "formats": "ulaw"})
    await clusterq.wait_for_type("StasisStart", "a-agent-1")
    assert obs.agent_legs("alice") == ["a-agent-2"]
    bridge = await clusterq.ari("POST", "/bridges", {"type": "mixing"})
    await clusterq.ari("POST", f"/bridges/{bridge['id']}/addChannel", {"channel": f"{queue_id},a-agent-1"})
    await clusterq.wait_for(lambda e: e.type == "ChannelEnteredBridge" and e.channel_id == "a-agent-1")
    bridges = {b.bridge_id: set(b.channel_ids) for b in await obs.list_bridges()}
    assert bridges == {bridge["id"]: {queue_id, "a-agent-1"}}

    await obs.send_dtmf(phone_id, "12#")
    await obs.wait_for(lambda e: e.type == "ChannelDtmfReceived" and e.channel_id == "a-agent-2"
                       and e.raw.get("digit") == "#")
    assert obs.dtmf_received("a-agent-2") == "12#"
    await obs.send_dtmf("a-agent-2", "9")
    await obs.wait_for(lambda e: e.type == "ChannelDtmfReceived" and e.channel_id == phone_id)
    assert obs.dtmf_received(phone_id) == "9"


async def test_user_event_after_continue(asterisk_factory: AsteriskFactory, observers: ObserverFactory
                                         ) -> None:
    (a,) = await asterisk_factory(["a"])
    obs, clusterq = await observers(a), await observers(a, "clusterq")
    phone_id, queue_id = await _caller_in_queue(obs, clusterq)
    await clusterq.set_var(queue_id, "CLUSTERQ_STATUS", "TIMEOUT")
    await clusterq.set_var(queue_id, "CLUSTERQ_WAIT", "12")
    await clusterq.ari("POST", f"/channels/{queue_id}/continue")
    await obs.wait_for(lambda e: e.type == "ChannelUserevent")
    (result,) = obs.user_events("ClusterqResult")
    assert result.channel_id == queue_id
    assert dict(result.fields) == {"status": "TIMEOUT", "wait": "12", "position": ""}
    await obs.wait_for_type("StasisEnd", phone_id)  # the dialplan hangs up after reporting


async def test_exit_key_context_reports_digit(asterisk_factory: AsteriskFactory, observers: ObserverFactory
                                              ) -> None:
    (a,) = await asterisk_factory(["a"])
    obs, clusterq = await observers(a), await observers(a, "clusterq")
    _, queue_id = await _caller_in_queue(obs, clusterq)
    await clusterq.set_var(queue_id, "CLUSTERQ_STATUS", "EXITWITHKEY")
    await clusterq.ari("POST", f"/channels/{queue_id}/continue",
                       {"context": "clusterq-exit", "extension": "5", "priority": 1})
    await obs.wait_for(lambda e: e.type == "ChannelUserevent")
    (ev,) = obs.user_events("ClusterqExitKey")
    assert dict(ev.fields) == {"digit": "5", "status": "EXITWITHKEY"}


async def test_agent_behaviours(asterisk_factory: AsteriskFactory, observers: ObserverFactory) -> None:
    (a,) = await asterisk_factory(["a"])
    obs, clusterq = await observers(a), await observers(a, "clusterq")
    obs.set_agent_behaviour("busy1", "busy")
    obs.set_agent_behaviour("deaf1", "noanswer")
    obs.set_agent_behaviour("brief1", "answer_then_hangup", delay=0.1, after=0.3)

    async def dial(agent: str) -> str:
        await clusterq.ari("POST", "/channels", {
            "endpoint": f"Local/{agent}@clusterq-agents-test/n", "app": "clusterq", "appArgs": "agent",
            "channelId": f"a-{agent}", "formats": "ulaw"})
        return f"a-{agent}"

    busy = await dial("busy1")
    hangup = await clusterq.wait_for_type("ChannelHangupRequest", busy)
    assert hangup.raw.get("cause") == 17

    deaf = await dial("deaf1")
    await clusterq.wait_for(lambda e: e.type == "ChannelStateChange" and e.channel_id == deaf
                            and e.channel_state == "Ringing")
    await asyncio.sleep(1.0)
    assert not [e for e in clusterq.events_of("StasisStart") if e.channel_id == deaf]

    brief = await dial("brief1")
    up = await clusterq.wait_for_type("StasisStart", brief)
    assert up.channel_state == "Up"
    await clusterq.wait_for_type("StasisEnd", brief, timeout=5)
    assert not obs.errors


async def test_phone_host_registers_and_answers_as_agent(
    asterisk_factory: AsteriskFactory, observers: ObserverFactory
) -> None:
    (a,) = await asterisk_factory(["a"], phones={"a": ["agent7"]})
    t0 = time.monotonic()
    p = await asterisk_factory.phone_host("p", a, ["agent7"])
    print(f"\nphone host start + registration: {time.monotonic() - t0:.2f}s")
    assert a.contacts("agent7")[0].startswith("sip:agent7@127.0.0.1:")
    obs_a, obs_p = await observers(a), await observers(p)
    await obs_a.ari("POST", "/channels", {
        "endpoint": "PJSIP/agent7", "app": "cqtest", "appArgs": "to-agent", "channelId": "a-to-agent7",
        "formats": "ulaw", "callerId": '"Queue" <777>'})
    ring = await obs_p.wait_for(lambda e: e.type == "StasisStart" and e.args[:1] == ("agent",))
    assert ring.args == ("agent", "agent7")
    assert ring.raw["channel"]["caller"]["number"] == "777"
    # obs_p's default agent behaviour answers: the leg on a comes up
    up = await obs_a.wait_for_type("StasisStart", "a-to-agent7")
    assert up.channel_state == "Up"

    account = a.add_phone("agent9")  # added to a running node: pjsip is reloaded
    assert account.password not in repr(account)
    assert "Endpoint:  agent9 " in a.cli("pjsip show endpoints")

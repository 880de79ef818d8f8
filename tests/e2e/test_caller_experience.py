"""What callers and agents live through, on real Asterisk + etcd: prompts and music, exits, timeouts,
agents busy, not answering, in use, in wrap-up, and a real PJSIP phone on another node.

Every assertion comes from the tests' own ARI observers (`cqtest`, subscribed to all events): the
playbacks clusterq starts on its callers' channels, bridges, DTMF, the ClusterqResult / ClusterqExitKey
user events the dialplan raises after Stasis, and what a caller's phone actually receives (recorded
from the phone's own channel: a caller with music hears a continuous stream, one without hears none).
"""

from __future__ import annotations

import array
import asyncio
import time
from collections.abc import Sequence
from typing import Any

import pytest

from clusterq_testing.asterisk import AsteriskNode
from clusterq_testing.observer import AriObserver, ObservedEvent
from tests.e2e.calls import agent_starts, answered_caller, bridged, until
from tests.e2e.conftest import QUEUES_YAML, Clusterq

pytestmark = pytest.mark.e2e

QUEUES = QUEUES_YAML + """
  announced:
    # Hold time is said only once an estimate exists (no call was answered here: none is said;
    # the hold-time prompts are unit-tested in tests/unit/stasis_app/call/test_prompts.py).
    strategy: linear
    announce_frequency: 5
    announce_position: "yes"
    announce_holdtime: "yes"
  silent:
    music_class: none
  eager:
    strategy: linear
    ring_timeout: 8
    announce_frequency: 1
  exitable:
    exit_context: clusterq-exit
  short:
    max_wait: 2
  linearq:
    strategy: linear
    ring_timeout: 2
  inuse_no:
    strategy: linear
  inuse_yes:
    strategy: linear
    ringinuse: true
  wrapq:
    strategy: linear
    wrapup_time: 3
"""


# ------------------------------------------------------------------------------ helpers
async def _start(cq: Clusterq, factory: Any, observers: Any, names: Sequence[str] = ("a",)
                 ) -> tuple[list[AsteriskNode], list[AriObserver]]:
    cq.queues_file.write_text(QUEUES)
    nodes = await factory(list(names))
    obs = [await observers(n) for n in nodes]
    await cq.start_coordinators(1)
    await cq.start_stasis(nodes)
    return nodes, obs


def _playbacks(obs: AriObserver, channel_id: str, type_: str = "PlaybackStarted") -> list[ObservedEvent]:
    """Playback events on a channel (playback events carry no `channel`, only a target_uri)."""
    return [e for e in obs.events_of(type_) if e.raw["playback"]["target_uri"] == f"channel:{channel_id}"]


def _result(obs: AriObserver, channel_id: str, name: str = "ClusterqResult") -> dict[str, str] | None:
    found = [u for u in obs.user_events(name) if u.channel_id == channel_id]
    return dict(found[0].fields) if found else None


def _end_of(obs: AriObserver, channel_id: str) -> ObservedEvent | None:
    return next((e for e in obs.events_of("StasisEnd") if e.channel_id == channel_id), None)


def _prompt_seconds(node: AsteriskNode, *names: str) -> float:
    """Length of core sound prompts (GSM: 33 bytes per 20 ms frame)."""
    sounds = node.root / "usr/share/asterisk/sounds/en_US_f_Allison"
    return sum((sounds / f"{n}.gsm").stat().st_size / 33 * 0.020 for n in names)


async def heard(obs: AriObserver, node: AsteriskNode, phone_id: str, seconds: float) -> tuple[float, float]:
    """Record what a caller's phone receives for `seconds`: (seconds of audio, RMS level).

    Asterisk writes only the frames the channel received, so a phone hearing nothing gives ~0 s."""
    folder = node.host_dir / "spool" / "recording"
    folder.mkdir(parents=True, exist_ok=True)
    name = f"heard-{phone_id}-{time.monotonic_ns()}"
    since = obs.mark()
    await obs.ari("POST", f"/channels/{phone_id}/record", {"name": name, "format": "sln", "ifExists": "overwrite"})
    await asyncio.sleep(seconds)
    await obs.ari("POST", f"/recordings/live/{name}/stop")
    # The file is complete only once Asterisk reports the recording finished.
    await obs.wait_for(lambda e: e.type == "RecordingFinished" and e.raw["recording"]["name"] == name, 5, since)
    data = (folder / f"{name}.sln").read_bytes()
    samples = array.array("h", data[: len(data) // 2 * 2])
    rms = (sum(s * s for s in samples) / len(samples)) ** 0.5 if samples else 0.0
    return len(samples) / 8000, rms


# ------------------------------------------------------------------------------ prompts and music
async def test_waiting_callers_hear_their_position_and_music_resumes_after(
        clusterq: Clusterq, asterisk_factory: object, observers: object) -> None:
    [node], [obs] = await _start(clusterq, asterisk_factory, observers)
    first = await answered_caller(obs, "announced", "201")
    second = await answered_caller(obs, "announced", "202")
    mute = await answered_caller(obs, "silent", "203")

    p1 = await obs.wait_for(lambda e: e.type == "PlaybackStarted" and bool(_playbacks(obs, first.queue_id)), 10)
    pb1 = p1.raw["playback"]
    assert (pb1["media_uri"], pb1["next_media_uri"]) == ("sound:queue-youarenext", "sound:queue-thankyou")
    await until(lambda: len(_playbacks(obs, second.queue_id)) >= 3, 10, "the second caller's prompt")
    assert [e.raw["playback"]["media_uri"] for e in _playbacks(obs, second.queue_id)][:3] == [
        "sound:queue-thereare", "sound:digits/2", "sound:queue-callswaiting"]
    assert await obs.get_var(first.queue_id, "CLUSTERQ_POSITION") == "1"
    assert await obs.get_var(second.queue_id, "CLUSTERQ_POSITION") == "2"
    assert not _playbacks(obs, mute.queue_id), "a queue without announcements plays none"

    done = await obs.wait_for(lambda e: e.type == "PlaybackFinished" and e.raw["playback"]["id"] == pb1["id"], 15)
    assert done.raw["playback"]["state"] == "done"
    # Right after the prompt: the first caller's phone receives music again, the muted one nothing.
    (seconds, level), (mute_seconds, _) = await asyncio.gather(heard(obs, node, first.phone_id, 1.0),
                                                               heard(obs, node, mute.phone_id, 1.0))
    assert len(_playbacks(obs, first.queue_id)) == 2, "the next announcement began while recording: inconclusive"
    assert seconds >= 0.8 and level > 100, f"no music after the prompt: {seconds:.2f} s of audio, RMS {level:.0f}"
    assert mute_seconds < 0.2, f"the muted caller heard {mute_seconds:.2f} s of audio"


async def test_an_agent_freed_during_a_prompt_is_bridged_without_waiting_for_its_end(
        clusterq: Clusterq, asterisk_factory: object, observers: object) -> None:
    [node], [obs] = await _start(clusterq, asterisk_factory, observers)
    client = clusterq.client()
    ahead = await answered_caller(obs, "eager", "300")
    # Sequenced by the leader (its arrival sequence written on the channel) before the second caller
    # comes: otherwise the second one can join first and be told "you are next".
    await obs.wait_for(lambda e: e.type == "ChannelVarset" and e.channel_id == ahead.queue_id
                       and e.raw.get("variable") == "CLUSTERQ_SEQ", 10)
    caller = await answered_caller(obs, "eager", "301")
    started = await obs.wait_for(lambda e: e.type == "PlaybackStarted" and bool(_playbacks(obs, caller.queue_id)), 10)
    assert started.raw["playback"]["media_uri"] == "sound:queue-thereare"
    natural_end = started.received_at + _prompt_seconds(
        node, "queue-thereare", "queue-callswaiting", "queue-thankyou")  # + "two", not counted
    # The caller ahead gives up: the next announcement (every second) tells position 1, and writing
    # it on the channel waits inside Asterisk until this prompt is over.
    await obs.hangup(ahead.phone_id)
    await asyncio.sleep(1.5)
    obs.set_agent_behaviour("ann", "answer", delay=0.1)
    await client.login("ann", "Local/ann@clusterq-agents-test/n", "a", ["eager"])
    entered = await bridged(obs, caller.queue_id, timeout=10)
    stopped = await obs.wait_for(lambda e: e.type == "PlaybackFinished"
                                 and e.raw["playback"]["id"] == started.raw["playback"]["id"], 10)
    assert entered.received_at < natural_end - 2.0, (
        f"bridged {entered.received_at - started.received_at:.2f} s into a "
        f"{natural_end - started.received_at:.2f} s prompt")
    assert stopped.received_at < natural_end - 2.0, "the prompt was stopped for the bridge, not played out"
    told = [e for e in obs.events_of("ChannelVarset") if e.channel_id == caller.queue_id
            and e.raw.get("variable") == "CLUSTERQ_POSITION"]
    assert told[-1].raw["value"] == "1"


# ------------------------------------------------------------------------------ leaving the queue
async def test_exit_digit_goes_to_the_exit_context_other_digits_and_queues_keep_the_caller(
        clusterq: Clusterq, asterisk_factory: object, observers: object) -> None:
    [node], [obs] = await _start(clusterq, asterisk_factory, observers)
    await _dialplan_functions(node)
    leaving = await answered_caller(obs, "exitable", "401")
    staying = await answered_caller(obs, "support", "402")
    # The queue's exit context reached the node (kept on the channel for a restarted app).
    await obs.wait_for(lambda e: e.type == "ChannelVarset" and e.channel_id == leaving.queue_id
                       and e.raw.get("variable") == "CLUSTERQ_EXIT_CONTEXT", timeout=10)
    # '*' has no extension in [clusterq-exit] (only _X): like app_queue, the caller stays queued
    # (continuing there would hang the caller up).
    await obs.send_dtmf(leaving.phone_id, "*")
    await obs.send_dtmf(staying.phone_id, "5")
    await asyncio.sleep(1.0)
    assert "*" in obs.dtmf_received(leaving.queue_id) and "5" in obs.dtmf_received(staying.queue_id)
    assert _result(obs, leaving.queue_id, "ClusterqExitKey") is None and _result(obs, staying.queue_id) is None
    assert {leaving.queue_id, staying.queue_id} <= set(await obs.channel_ids())
    await obs.send_dtmf(leaving.phone_id, "5")
    fields = await until(lambda: _result(obs, leaving.queue_id, "ClusterqExitKey"), 10, "ClusterqExitKey")
    assert (fields["digit"], fields["status"]) == ("5", "EXITWITHKEY")


async def _dialplan_functions(node: AsteriskNode) -> None:
    """DIALPLAN_EXISTS (func_dialplan) lets the app check exit digits; the test nodes' module list
    does not load it, so load it here."""
    known = "Info about Function 'DIALPLAN_EXISTS'"
    if known not in await node.async_cli("core show function DIALPLAN_EXISTS"):
        await node.async_cli("module load func_dialplan.so")
    assert known in await node.async_cli("core show function DIALPLAN_EXISTS")


async def test_queue_max_wait_and_the_callers_own_timeout_end_with_timeout(
        clusterq: Clusterq, asterisk_factory: object, observers: object) -> None:
    _, [obs] = await _start(clusterq, asterisk_factory, observers)
    t0 = time.monotonic()
    by_queue = await answered_caller(obs, "short", "501")
    by_arg = await answered_caller(obs, "support,timeout=2", "502")
    for legs in (by_queue, by_arg):
        fields = await until(lambda legs=legs: _result(obs, legs.queue_id), 10, f"the result of {legs.queue_id}")
        assert fields["status"] == "TIMEOUT"
        assert fields["wait"] in ("2", "3"), fields
        assert fields["position"] == "1"
    assert time.monotonic() - t0 >= 1.9


# ------------------------------------------------------------------------------ agents
async def test_busy_and_unanswering_agents_are_skipped_for_the_next_one(
        clusterq: Clusterq, asterisk_factory: object, observers: object) -> None:
    _, [obs] = await _start(clusterq, asterisk_factory, observers)
    client = clusterq.client()
    obs.set_agent_behaviour("busy1", "busy")
    obs.set_agent_behaviour("deaf2", "noanswer")
    obs.set_agent_behaviour("good3", "answer", delay=0.2)
    for agent in ("busy1", "deaf2", "good3"):  # linear: tried in this order
        await client.login(agent, f"Local/{agent}@clusterq-agents-test/n", "a", ["linearq"])
    caller = await answered_caller(obs, "linearq", "601")
    entered = await bridged(obs, caller.queue_id, timeout=15)
    legs = {a: agent_starts(obs, a) for a in ("busy1", "deaf2", "good3")}
    assert all(len(v) == 1 for v in legs.values()), {a: len(v) for a, v in legs.items()}
    busy, deaf, good = legs["busy1"][0], legs["deaf2"][0], legs["good3"][0]
    assert busy.received_at < deaf.received_at < good.received_at
    # The busy phone rejected at once; the silent one rang until the queue's 2 s ring timeout.
    assert deaf.received_at - busy.received_at < 1.5
    deaf_end = _end_of(obs, deaf.channel_id or "")
    assert deaf_end is not None
    assert 1.5 <= deaf_end.received_at - deaf.received_at <= 3.5
    assert (good.channel_id or "").removesuffix(";2") in entered.raw["bridge"]["channels"]
    assert all(e.raw["channel"]["caller"]["number"] == "601" for e in (busy, deaf, good))


async def test_a_caller_hanging_up_while_the_agent_rings_ends_the_agent_leg(
        clusterq: Clusterq, asterisk_factory: object, observers: object) -> None:
    _, [obs] = await _start(clusterq, asterisk_factory, observers)
    client = clusterq.client()
    obs.set_agent_behaviour("slow", "noanswer")
    await client.login("slow", "Local/slow@clusterq-agents-test/n", "a", ["support"])
    caller = await answered_caller(obs, "support", "701")
    ringing = await obs.wait_for(lambda e: e.type == "StasisStart" and e.args[:2] == ("agent", "slow"), 10)
    hung = time.monotonic()
    await obs.hangup(caller.phone_id)
    await obs.wait_for_type("StasisEnd", ringing.channel_id, timeout=5)
    assert time.monotonic() - hung < 3.0, "the leg must end with the caller, not at the 8 s ring timeout"
    await asyncio.sleep(1.0)
    assert len(agent_starts(obs, "slow")) == 1


async def test_ringinuse_no_waits_for_the_agent_and_ringinuse_yes_rings_in_call(
        clusterq: Clusterq, asterisk_factory: object, observers: object) -> None:
    _, [obs] = await _start(clusterq, asterisk_factory, observers)
    client = clusterq.client()
    for agent, queue in (("nora", "inuse_no"), ("yves", "inuse_yes")):
        obs.set_agent_behaviour(agent, "answer", delay=0.1)
        await client.login(agent, f"Local/{agent}@clusterq-agents-test/n", "a", [queue])
    no_1 = await answered_caller(obs, "inuse_no", "801")
    yes_1 = await answered_caller(obs, "inuse_yes", "811")
    await bridged(obs, no_1.queue_id)
    await bridged(obs, yes_1.queue_id)
    no_2 = await answered_caller(obs, "inuse_no", "802")
    yes_2 = await answered_caller(obs, "inuse_yes", "812")
    await bridged(obs, yes_2.queue_id)  # ringinuse=yes: yves is rung (and answers) while in a call
    assert len(agent_starts(obs, "yves")) == 2
    await asyncio.sleep(1.5)
    assert len(agent_starts(obs, "nora")) == 1, "ringinuse=no: nora must not be rung while in a call"
    await obs.hangup(no_1.phone_id)
    await bridged(obs, no_2.queue_id)
    assert [e.raw["channel"]["caller"]["number"] for e in agent_starts(obs, "nora")] == ["801", "802"]


async def test_agent_wrapup_follows_either_side_hanging_up(
        clusterq: Clusterq, asterisk_factory: object, observers: object) -> None:
    _, [obs] = await _start(clusterq, asterisk_factory, observers)
    client = clusterq.client()
    obs.set_agent_behaviour("wendy", "answer_then_hangup", delay=0.1, after=1.0)
    await client.login("wendy", "Local/wendy@clusterq-agents-test/n", "a", ["wrapq"])
    callers = [await answered_caller(obs, "wrapq", f"90{i}") for i in range(3)]
    # Call 1: the agent hangs up after 1 s; the caller continues in its dialplan.
    await bridged(obs, callers[0].queue_id)
    fields = await until(lambda: _result(obs, callers[0].queue_id), 10, "the first caller's result")
    assert fields["status"] == "CONTINUE"
    first_end = _end_of(obs, agent_starts(obs, "wendy")[0].channel_id or "")
    # Call 2 comes only after the 3 s wrap-up; this time the caller hangs up first.
    await bridged(obs, callers[1].queue_id, timeout=10)
    second = agent_starts(obs, "wendy")[1]
    assert first_end is not None and second.received_at - first_end.received_at >= 2.9
    await obs.hangup(callers[1].phone_id)
    second_end = await obs.wait_for_type("StasisEnd", second.channel_id, timeout=5)
    await bridged(obs, callers[2].queue_id, timeout=10)
    third = agent_starts(obs, "wendy")[2]
    assert third.received_at - second_end.received_at >= 2.9
    assert third.received_at - second_end.received_at < 6.0
    assert [e.raw["channel"]["caller"]["number"] for e in agent_starts(obs, "wendy")] == ["900", "901", "902"]


async def test_a_real_pjsip_phone_on_another_node_takes_a_call_with_dtmf_both_ways(
        clusterq: Clusterq, asterisk_factory: Any, observers: Any) -> None:
    (_, b), (obs_a, obs_b) = await _start(clusterq, asterisk_factory, observers, ("a", "b"))
    host = await asterisk_factory.phone_host("desk", b, ["desk1"])
    obs_ph: AriObserver = await observers(host)
    obs_ph.set_agent_behaviour("desk1", "answer", delay=0.3)
    client = clusterq.client()
    await client.login("desk1", "PJSIP/desk1", "b", ["support"])
    caller = await answered_caller(obs_a, "support", "4917")
    phone = await obs_ph.wait_for(lambda e: e.type == "StasisStart" and e.args[:2] == ("agent", "desk1"), 15)
    assert phone.raw["channel"]["caller"]["number"] == "4917", "the agent's phone shows the caller's number"
    on_a = await bridged(obs_a, caller.queue_id, timeout=10)
    assert not any(c.startswith("a-ag-") for c in on_a.raw["bridge"]["channels"])
    on_b = await obs_b.wait_for(lambda e: e.type == "ChannelEnteredBridge" and len(e.raw["bridge"]["channels"]) == 2
                                and any(c.startswith("b-ag-") for c in e.raw["bridge"]["channels"]), 10)
    assert any(c.startswith("b-tr-") for c in on_b.raw["bridge"]["channels"])
    await obs_ph.send_dtmf(phone.channel_id or "", "7")
    await until(lambda: "7" in obs_a.dtmf_received(caller.phone_id), 10, "DTMF phone -> caller")
    await obs_a.send_dtmf(caller.phone_id, "3")
    await until(lambda: "3" in obs_ph.dtmf_received(phone.channel_id or ""), 10, "DTMF caller -> phone")
    await obs_ph.hangup(phone.channel_id or "")
    fields = await until(lambda: _result(obs_a, caller.queue_id), 10, "the caller's result")
    assert fields["status"] == "CONTINUE"

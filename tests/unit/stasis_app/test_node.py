"""NodeApp call flow on the fake ARI: joining, prompts vs bridging, exit keys, timeouts, grace."""

from __future__ import annotations

import asyncio

import pytest

from clusterq_proto.v1 import common_pb2, node_pb2
from stasis_app.ari.fake import FakeAri, OriginateOutcome
from stasis_app.ari.port import AriUnavailable
from stasis_app.call import records as r
from stasis_app.node import NodeApp
from tests.unit.stasis_app.harness import FakeCoordinator, running, settings


async def test_a_caller_is_answered_reported_sequenced_and_gets_the_queues_music() -> None:
    ari = FakeAri("a")
    async with running(ari) as n:
        cid = ari.caller_enters(["support", "priority=3"], caller_number="555")
        await n.settle()
        chan = ari.channels[cid]
        assert chan.state == "Up" and chan.moh_class is None  # music waits for the queue's class
        [joined] = n.coord.of("call_joined")
        assert (joined.call_id, joined.queue, joined.priority, joined.caller_number) == (cid, "support", 3, "555")
        n.join(cid, position=1, music="jazz", exit_context="cq-exit")
        await n.settle()
        assert chan.moh_class == "jazz"
        assert {k: chan.variables[k] for k in (r.VAR_SEQ, r.VAR_POSITION, r.VAR_MUSIC, r.VAR_EXIT_CONTEXT)} == {
            r.VAR_SEQ: "1", r.VAR_POSITION: "1", r.VAR_MUSIC: "jazz", r.VAR_EXIT_CONTEXT: "cq-exit"}


async def test_default_queue_media_costs_no_extra_variable() -> None:
    ari = FakeAri("a")
    async with running(ari) as n:
        cid = ari.caller_enters(["support"])
        await n.settle()
        n.join(cid, position=1)
        await n.settle()
        assert r.VAR_MUSIC not in ari.channels[cid].variables
        assert r.VAR_EXIT_CONTEXT not in ari.channels[cid].variables
        assert ari.channels[cid].moh_class == "default"


async def test_an_older_leaders_separate_queue_media_decision_still_sets_the_music() -> None:
    ari = FakeAri("a")
    async with running(ari) as n:
        cid = ari.caller_enters(["support"])
        await n.settle()
        n.coord.decide(join_ack=node_pb2.JoinAck(call_id=cid, arrival_seq=1, position=1))  # no media inside
        n.coord.decide(queue_media=node_pb2.QueueMedia(call_id=cid, music_class="jazz", exit_context="cq-exit"))
        await n.settle()
        assert ari.channels[cid].moh_class == "jazz"
        assert ari.channels[cid].variables[r.VAR_EXIT_CONTEXT] == "cq-exit"


async def test_a_prompt_never_delays_the_bridge_even_with_a_position_write_held_behind_it() -> None:
    # On Asterisk a variable set while a prompt plays only completes when the prompt ends (the fake
    # models that); the bridging must not queue behind such a write.
    ari = FakeAri("a")
    async with running(ari) as n:
        cid = ari.caller_enters(["support"])
        await n.settle()
        n.join(cid, position=2)
        await n.settle()
        n.coord.decide(announce=node_pb2.Announce(call_id=cid, position=2, say_position=True))
        await n.settle()
        [pb] = ari.playbacks.values()
        assert pb.media[:3] == ("sound:queue-thereare", "sound:digits/2", "sound:queue-callswaiting")
        assert ari.channels[cid].moh_class is None  # the prompt replaces the music
        n.coord.decide(announce=node_pb2.Announce(call_id=cid, position=1, say_position=True))
        # A new leader re-sequences the caller (same sequence, a new position) during the prompt.
        n.coord.decide(join_ack=node_pb2.JoinAck(call_id=cid, arrival_seq=1, position=3))
        await n.settle()  # these position writes now wait behind the prompt
        n.offer("o1", cid)
        await n.settle()
        leg = "a-ag-o1_"
        ari.answer_leg(leg)
        await n.settle()
        assert n.coord.kinds()[-1] == "agent_leg_answered"
        n.connect("o1", cid)
        await n.settle()
        # Bridged without anyone finishing the playback: the app stopped it.
        assert ari.bridges["a-br-o1_"].channels == [cid, leg]
        assert not ari.playbacks
        assert ari.channels[cid].variables[r.VAR_AGENT] == "alice"
        assert ari.channels[cid].variables[r.VAR_POSITION] == "3"
        assert ari.channels[cid].moh_class is None


async def test_music_resumes_after_a_prompt_and_the_offer_carries_the_caller_id() -> None:
    ari = FakeAri("a")
    async with running(ari) as n:
        cid = ari.caller_enters(["support"])
        await n.settle()
        n.join(cid, position=1)
        n.coord.decide(periodic_announce=node_pb2.PeriodicAnnounce(call_id=cid, prompt="beep"))
        await n.settle()
        [pb] = ari.playbacks.values()
        assert pb.media == ("sound:beep",)
        ari.finish_playback(pb.id)
        await n.settle()
        assert ari.channels[cid].moh_class == "default"
        n.offer("o1", cid)
        await n.settle()
        [orig] = ari.originations
        assert (orig.endpoint, orig.caller_id, orig.app_args) == ("Local/alice@agents/n", '"Ada" <555>',
                                                                  ("agentleg", "o1"))


async def test_exit_digit_sends_the_caller_to_its_context_and_other_digits_are_reported() -> None:
    ari = FakeAri("a")
    async with running(ari) as n:
        plain, exiting = ari.caller_enters(["support"]), ari.caller_enters(["sales"])
        await n.settle()
        n.join(plain, position=1)
        n.join(exiting, position=1, queue="sales", exit_context="cq-exit")
        await n.settle()
        ari.press_dtmf(plain, "5")
        ari.press_dtmf(exiting, "5")
        await n.settle()
        assert [c.channel_id for c in ari.continued] == [exiting]
        assert (ari.continued[0].context, ari.continued[0].extension, ari.continued[0].priority) == ("cq-exit", "5", 1)
        assert ari.channels[exiting].variables["CLUSTERQ_STATUS"] == "EXITWITHKEY"
        assert [(e.reason, e.key) for e in n.coord.of("call_left")] == [("exitkey", "5")]  # for EXITWITHKEY
        assert [(d.call_id, d.digit) for d in n.coord.of("digit_pressed")] == [(plain, "5")]


async def test_a_digit_without_an_extension_in_the_exit_context_keeps_the_caller_queued() -> None:
    ari = FakeAri("a")
    async with running(ari) as n:
        cid = ari.caller_enters(["sales"])
        await n.settle()
        n.join(cid, position=1, queue="sales", exit_context="cq-exit")
        # What Asterisk answers for DIALPLAN_EXISTS(cq-exit,*,1) when [cq-exit] has no '*'.
        ari.channels[cid].variables["DIALPLAN_EXISTS(cq-exit,*,1)"] = "0"
        ari.channels[cid].variables["DIALPLAN_EXISTS(cq-exit,1,1)"] = "1"
        await n.settle()
        ari.press_dtmf(cid, "*")
        await n.settle()
        assert not ari.continued and cid in n.app.callers
        assert [d.digit for d in n.coord.of("digit_pressed")] == ["*"]
        ari.press_dtmf(cid, "1")
        await n.settle()
        assert [(c.context, c.extension) for c in ari.continued] == [("cq-exit", "1")]


async def test_the_callers_own_timeout_sends_it_back_with_timeout() -> None:
    ari = FakeAri("a")
    async with running(ari) as n:
        cid = ari.caller_enters(["support", "timeout=0.2"])
        await n.settle()
        n.join(cid, position=4)
        await asyncio.sleep(0.3)
        await n.settle()
        chan = ari.channels[cid]
        assert (chan.variables["CLUSTERQ_STATUS"], chan.variables["CLUSTERQ_POSITION"]) == ("TIMEOUT", "4")
        assert [e.reason for e in n.coord.of("call_left")] == ["timeout"]


async def test_a_caller_hanging_up_while_its_agent_rings_stops_the_ringing() -> None:
    ari = FakeAri("a")
    async with running(ari) as n:
        cid = ari.caller_enters(["support"])
        await n.settle()
        n.join(cid, position=1)
        n.offer("o1", cid)
        await n.settle()
        assert "a-ag-o1_" in ari.channels
        ari.caller_hangs_up(cid)
        await n.settle()
        assert "a-ag-o1_" not in ari.channels
        assert [e.reason for e in n.coord.of("call_left")] == ["hangup"]


async def test_agent_hangup_ends_the_call_with_continue() -> None:
    ari = FakeAri("a")
    async with running(ari) as n:
        cid = ari.caller_enters(["support"])
        await n.settle()
        n.join(cid, position=1)
        ari.outcomes["Local/alice@agents/n"] = OriginateOutcome.ANSWER
        n.offer("o1", cid)
        await n.settle()
        n.connect("o1", cid)
        await n.settle()
        await asyncio.sleep(1.2)  # talking
        ari.caller_hangs_up("a-ag-o1_")
        await n.settle()
        assert ari.channels[cid].variables["CLUSTERQ_STATUS"] == "CONTINUE"
        assert ari.channels[cid].variables["CLUSTERQ_WAIT"] == "0", "the wait ends when the agent answers"
        [ended] = n.coord.of("call_ended")
        assert (ended.call_id, ended.offer_id, ended.agent_hung_up) == (cid, "o1", True)
        assert "a-br-o1_" not in ari.bridges


async def test_busy_agent_is_reported_busy() -> None:
    ari = FakeAri("a")
    async with running(ari) as n:
        cid = ari.caller_enters(["support"])
        await n.settle()
        n.join(cid, position=1)
        n.offer("o1", cid)
        await n.settle()
        ari.caller_hangs_up("a-ag-o1_", cause=17)  # the phone rejects the call busy
        await n.settle()
        assert [(f.offer_id, f.reason) for f in n.coord.of("agent_leg_failed")] == [("o1", "busy")]


async def test_no_coordinator_for_the_grace_time_gives_callers_back_unavailable() -> None:
    ari = FakeAri("a")
    async with running(ari, grace=0.3) as n:
        waiting, ringing = ari.caller_enters(["support"]), ari.caller_enters(["support"])
        await n.settle()
        n.join(waiting, position=1)
        n.join(ringing, position=2)
        n.offer("o1", ringing)
        await n.settle()
        n.coord.disconnect()
        await asyncio.sleep(0.15)
        await n.settle()
        assert not ari.continued, "callers keep their music during the grace time"
        assert ari.channels[waiting].moh_class == "default"
        await asyncio.sleep(0.3)
        await n.settle()
        assert sorted(c.channel_id for c in ari.continued) == sorted([waiting, ringing])
        assert {ari.channels[c].variables["CLUSTERQ_STATUS"] for c in (waiting, ringing)} == {"UNAVAILABLE"}
        assert "a-ag-o1_" not in ari.channels, "an agent leg nobody can connect any more is hung up"
        # While no coordinator is back, new callers leave at once.
        late = ari.caller_enters(["support"])
        await n.settle()
        assert ari.continued[-1].channel_id == late
        assert ari.channels[late].variables["CLUSTERQ_STATUS"] == "UNAVAILABLE"
        # A coordinator again: callers queue normally.
        n.coord.connect(epoch=2)
        fresh = ari.caller_enters(["support"])
        await n.settle()
        assert fresh in n.app.callers and ari.continued[-1].channel_id == late


async def test_originate_while_asterisk_is_unreachable_does_not_fail_the_offer_at_once() -> None:
    ari = FakeAri("a")
    async with running(ari) as n:
        cid = ari.caller_enters(["support"])
        await n.settle()
        n.join(cid, position=1)
        ari.drop_connection()
        n.offer("o1", cid)
        await n.settle()
        assert not n.coord.of("agent_leg_failed"), "failing at once would make the leader re-offer in a loop"
        n.coord.decide(cancel_offer=node_pb2.CancelOffer(offer_id="o1", call_id=cid, reason="timeout"))
        await n.settle()
        assert not n.app.legs.legs


async def test_a_websocket_drop_keeps_ringing_legs_and_gives_back_music_of_a_lost_prompt_end() -> None:
    ari = FakeAri("a")
    async with running(ari) as n:
        cid = ari.caller_enters(["support"])
        await n.settle()
        n.join(cid, position=1)
        n.offer("o1", cid)
        n.coord.decide(periodic_announce=node_pb2.PeriodicAnnounce(call_id=cid, prompt="sound:beep"))
        await n.settle()
        [pb] = ari.playbacks
        ari.drop_connection()
        ari.finish_playback(pb)  # its PlaybackFinished is lost with the websocket
        ari.restore_connection()
        await n.settle()
        assert ari.channels[cid].moh_class == "default"
        assert "a-ag-o1_" in ari.channels and not n.coord.of("agent_leg_failed")
        ari.answer_leg("a-ag-o1_")
        await n.settle()
        assert n.coord.kinds()[-1] == "agent_leg_answered"


async def test_unknown_queue_rejection_and_invalid_args() -> None:
    ari = FakeAri("a")
    async with running(ari) as n:
        bad = ari.caller_enters(["support", "priority=high"])
        unknown = ari.caller_enters(["nosuch"])
        await n.settle()
        n.coord.decide(join_reject=node_pb2.JoinReject(
            call_id=unknown, status=common_pb2.CALLER_STATUS_UNKNOWN_QUEUE, message="no queue"))
        await n.settle()
        assert ari.channels[bad].variables["CLUSTERQ_STATUS"] == "INVALID_ARGS"
        assert ari.channels[bad].variables["CLUSTERQ_WAIT"] == "0"
        assert ari.channels[unknown].variables["CLUSTERQ_STATUS"] == "UNKNOWN_QUEUE"
        assert [j.call_id for j in n.coord.of("call_joined")] == [unknown]


async def test_a_status_this_build_does_not_know_still_sends_the_caller_back_unavailable() -> None:
    # e.g. a newer coordinator during a rolling upgrade
    ari = FakeAri("a")
    async with running(ari) as n:
        cid = ari.caller_enters(["support"])
        await n.settle()
        n.coord.decide(join_reject=node_pb2.JoinReject(call_id=cid, status=99, message="new"))  # type: ignore[arg-type]
        await n.settle()
        assert ari.channels[cid].variables["CLUSTERQ_STATUS"] == "UNAVAILABLE"
        assert [x.channel_id for x in ari.continued] == [cid]
        assert n.task is not None and not n.task.done()


async def test_offers_and_connects_for_a_caller_gone_unnoticed_are_reported_back() -> None:
    ari = FakeAri("a")
    async with running(ari) as n:
        n.offer("o1", "a-ghost")  # e.g. it hung up while the previous process was down
        await n.settle()
        assert not ari.originations, "nobody is rung for a caller that is not here"
        assert [(e.call_id, e.reason) for e in n.coord.of("call_left")] == [("a-ghost", "hangup")]
        ari.outcomes["Local/alice@agents/n"] = OriginateOutcome.ANSWER
        cid = ari.caller_enters(["support"])
        await n.settle()
        n.join(cid, position=1)
        n.offer("o2", cid)
        await n.settle()
        ari.caller_hangs_up(cid)  # reported, but the leader's Connect crossed it
        await n.settle()
        n.connect("o2", cid)
        await n.settle()
        assert [(e.call_id, e.offer_id, e.agent_hung_up) for e in n.coord.of("call_ended")] == [(cid, "o2", False)]
        assert "a-ag-o2_" not in ari.channels


async def test_a_leaving_caller_reaches_the_dialplan_even_when_variables_fail() -> None:
    ari = FakeAri("a")
    async with running(ari) as n:
        cid = await n.queued_caller(("support",))
        await n.settle()  # the join's own writes are done: the failures below hit the leave's
        assert ari.channels[cid].variables[r.VAR_POSITION] == "1"
        # The leave writes CLUSTERQ_STATUS, _WAIT, _POSITION in that order: the first two fail.
        ari.errors["set_var"] = [AriUnavailable("set_var: timed out")] * 2
        ari.errors["continue_in_dialplan"] = [AriUnavailable("continue: timed out")]
        n.coord.decide(continue_in_dialplan=node_pb2.ContinueInDialplan(
            call_id=cid, status=common_pb2.CALLER_STATUS_TIMEOUT, position=3))
        await asyncio.sleep(0.3)  # one retried continue (0.2 s)
        await n.settle()
        assert [x.channel_id for x in ari.continued] == [cid]
        variables = ari.channels[cid].variables
        assert "CLUSTERQ_STATUS" not in variables and "CLUSTERQ_WAIT" not in variables
        assert variables[r.VAR_POSITION] == "3", "the write that did not fail still lands"


async def test_a_failing_part_of_the_node_app_ends_run_with_its_error() -> None:
    # A supervisor (systemd, Kubernetes) restarts a process that exits non-zero, not one that returns.
    ari = FakeAri("a")
    app = NodeApp(settings(), ari)
    app.coord = FakeCoordinator(app)  # type: ignore[assignment]

    async def broken() -> None:
        raise RuntimeError("ARI adapter bug")

    ari.run = broken  # type: ignore[method-assign]
    with pytest.raises(RuntimeError, match="ARI adapter bug"):
        await asyncio.wait_for(app.run(), 5)


async def test_a_caller_whose_join_ack_never_came_gets_music_when_the_stream_drops() -> None:
    """Music starts with the JoinAck; when the stream drops before it came, no leader may answer for
    the whole grace: the caller gets default music then, not silence."""
    ari = FakeAri("a")
    async with running(ari, grace=5.0) as n:
        cid = ari.caller_enters(["support"])
        await n.settle()
        assert ari.channels[cid].moh_class is None, "with a leader connected, music waits for the JoinAck"
        n.coord.disconnect()
        await n.settle()
        assert ari.channels[cid].moh_class == "default"

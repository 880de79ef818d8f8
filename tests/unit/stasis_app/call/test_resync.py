"""A restarted (or replacing) stasis app adopts what Asterisk still holds (FakeAri.successor)."""

from __future__ import annotations

import pytest

from clusterq_proto.v1 import common_pb2, node_pb2
from stasis_app.ari.fake import FakeAri, OriginateOutcome
from stasis_app.call import records as r
from tests.unit.stasis_app.harness import Node, running


async def _waiting_and_connected(n: Node, ari: FakeAri) -> tuple[list[str], str]:
    """Three sequenced waiting callers (the last of queue sales with an exit context) and one caller
    bridged with a local agent leg (offer o9)."""
    talking = ari.caller_enters(["support"], caller_number="100")
    waiting = [ari.caller_enters(["support"], caller_number=f"20{i}") for i in range(2)]
    waiting.append(ari.caller_enters(["sales"], caller_number="300"))
    await n.settle()
    n.join(talking, position=1)
    for i, cid in enumerate(waiting[:2]):
        n.join(cid, position=i + 1)
    n.join(waiting[2], position=1, queue="sales", music="jazz", exit_context="cq-exit")
    ari.outcomes["Local/alice@agents/n"] = OriginateOutcome.ANSWER
    n.offer("o9", talking)
    await n.settle()
    n.connect("o9", talking)
    await n.settle()
    assert ari.bridges["a-br-o9_"].channels == [talking, "a-ag-o9_"]
    return waiting, talking


async def test_a_restarted_app_readopts_waiting_callers_with_their_place_and_connected_calls() -> None:
    ari = FakeAri("a")
    async with running(ari) as old:
        waiting, talking = await _waiting_and_connected(old, ari)
        # An answered agent leg still waiting for Connect, and one still ringing, when the process dies.
        extra = ari.caller_enters(["support"])
        await old.settle()
        old.join(extra, position=3)
        ari.outcomes["Local/bob@agents/n"] = OriginateOutcome.ANSWER
        old.offer("o10", extra, agent="bob")
        old.offer("o11", waiting[0], agent="carol")
        await old.settle()
    # The process is gone (SIGKILL: nothing was cleaned up on Asterisk); a new one starts.
    new_ari = ari.successor()
    async with running(new_ari) as new:
        [register] = new.coord.registers
        by_id = {c.joined.call_id: c for c in register.calls}
        # Every caller comes back in the first Register with its arrival sequence and join order.
        assert [c.joined.call_id for c in register.calls] == [talking, *waiting, extra]
        assert [by_id[c].arrival_seq for c in waiting] == [2, 3, 4]
        assert by_id[talking].state == "connected" and by_id[talking].offer_id == "o9"
        assert by_id[talking].agent_id == "alice"
        assert all(by_id[c].state == "waiting" for c in waiting)
        assert "a-ag-o10_" not in new_ari.channels, "the unbridged agent leg of the old process is hung up"
        new_ari.answer_leg("a-ag-o11_")  # the ringing one answers only now
        await new.settle()
        assert "a-ag-o11_" not in new_ari.channels
        assert not new.coord.of("agent_leg_answered")
        assert new.app.callers[waiting[0]].position == 1
        # The queue's media came back from the channel: the exit digit still works.
        new_ari.press_dtmf(waiting[2], "7")
        await new.settle()
        assert (new_ari.continued[-1].context, new_ari.continued[-1].extension) == ("cq-exit", "7")
        # The connected call is still tracked: the agent hangs up -> CONTINUE and CallEnded.
        new_ari.caller_hangs_up("a-ag-o9_")
        await new.settle()
        assert new_ari.channels[talking].variables["CLUSTERQ_STATUS"] == "CONTINUE"
        assert [(e.call_id, e.agent_hung_up) for e in new.coord.of("call_ended")] == [(talking, True)]
        assert "a-br-o9_" not in new_ari.bridges


async def test_adopted_waiting_callers_keep_music_and_a_new_caller_comes_after_them() -> None:
    ari = FakeAri("a")
    async with running(ari) as old:
        waiting, _ = await _waiting_and_connected(old, ari)
    new_ari = ari.successor()
    async with running(new_ari) as new:
        assert new_ari.channels[waiting[2]].moh_class == "jazz", "Asterisk kept the music through the restart"
        assert new.app.callers[waiting[2]].music_class == "jazz"
        late = new_ari.caller_enters(["support"])
        await new.settle()
        assert new.app.callers[late].join_order > max(new.app.callers[c].join_order for c in waiting)
        [joined] = new.coord.of("call_joined")
        assert joined.call_id == late


async def test_adoption_while_the_stream_is_up_reregisters_to_carry_the_sequences() -> None:
    ari = FakeAri("a")
    async with running(ari) as old:
        waiting, _ = await _waiting_and_connected(old, ari)
    new_ari = ari.successor()
    async with running(new_ari, connect=False) as new:
        new.coord.connect()
        new_ari.drop_connection()
        new.app.callers.clear()  # as if these callers had never been seen by this process
        new.app.legs.legs.clear()
        new_ari.restore_connection()
        await new.settle()
        assert new.coord.reregisters == 1
        assert {c.joined.call_id for c in new.coord.registers[-1].calls} >= set(waiting)


async def test_the_agent_side_of_a_cross_node_call_is_readopted() -> None:
    ari = FakeAri("b")
    async with running(ari, node_id="b") as old:
        ari.outcomes["Local/bob@agents/n"] = OriginateOutcome.ANSWER
        ari.outcomes["PJSIP/cq-o5@a"] = OriginateOutcome.ANSWER
        old.offer("o5", "a-caller", agent="bob", agent_node="b", caller_node="a")
        await old.settle()
        old.connect("o5", "a-caller", agent="bob", agent_node="b", caller_node="a")
        await old.settle()
        assert ari.bridges["b-br-o5_"].channels == ["b-ag-o5_", "b-tr-o5_"]
    new_ari = ari.successor()
    async with running(new_ari, node_id="b") as new:
        assert {"b-ag-o5_", "b-tr-o5_"} <= set(new_ari.channels), "a live call is never hung up by a restart"
        new_ari.caller_hangs_up("b-tr-o5_")  # the caller's side ended
        await new.settle()
        assert "b-ag-o5_" not in new_ari.channels
        assert not new.coord.of("agent_leg_failed")


async def test_adopted_position_survives_into_the_leave_variables() -> None:
    ari = FakeAri("a")
    async with running(ari) as old:
        waiting, _ = await _waiting_and_connected(old, ari)
    new_ari = ari.successor()
    async with running(new_ari) as new:
        new.coord.decide(continue_in_dialplan=node_pb2.ContinueInDialplan(
            call_id=waiting[1], status=common_pb2.CALLER_STATUS_TIMEOUT))
        await new.settle()
        assert new_ari.channels[waiting[1]].variables[r.VAR_POSITION] == "2"
        assert new_ari.channels[waiting[1]].variables["CLUSTERQ_STATUS"] == "TIMEOUT"


async def test_a_caller_answered_by_a_process_that_died_before_the_join_ack_gets_music() -> None:
    ari = FakeAri("a")
    async with running(ari) as old:
        cid = ari.caller_enters(["support"])
        await old.settle()  # answered and its join reported; the music waits for the JoinAck
        assert ari.channels[cid].state == "Up" and ari.channels[cid].moh_class is None
    new_ari = ari.successor()
    async with running(new_ari) as new:
        assert new_ari.channels[cid].moh_class == "default", "never silence"
        new.join(cid, position=1)  # the new leader sequences it (default music: "not changed")
        await new.settle()
        assert new_ari.channels[cid].moh_class == "default"


async def test_a_caller_no_process_answered_is_answered_and_gets_music_on_adoption() -> None:
    ari = FakeAri("a")
    cid = ari.caller_enters(["support"])  # its StasisStart is lost: no app is connected yet
    async with running(ari) as n:
        assert cid in n.app.callers
        assert ari.channels[cid].state == "Up" and n.app.callers[cid].answered
        assert ari.channels[cid].moh_class == "default"


async def test_a_sequenced_callers_own_music_is_started_again_on_adoption() -> None:
    """Its music may have ended with a prompt while no process listened (the PlaybackFinished is
    lost): the new process starts it again (from the start of the file, as app_queue does after each
    announcement) rather than trust it plays and leave the caller in silence."""
    ari = FakeAri("a")
    async with running(ari) as old:
        cid = await old.queued_caller()
        await old.settle()
        old.coord.decide(periodic_announce=node_pb2.PeriodicAnnounce(call_id=cid, prompt="sound:beep"))
        await old.settle()
        [playback] = ari.playbacks
        assert ari.channels[cid].moh_class is None, "the prompt replaced the music"
    ari.drop_connection()
    ari.finish_playback(playback)  # ends while no process is connected
    new_ari = ari.successor()
    calls: list[str] = []
    start_moh = new_ari.start_moh

    async def counting(channel_id: str, moh_class: str) -> None:
        calls.append(channel_id)
        await start_moh(channel_id, moh_class)

    new_ari.start_moh = counting  # type: ignore[method-assign]
    async with running(new_ari) as new:
        await new.settle()
        assert calls == [cid] and new_ari.channels[cid].moh_class == "default"
        assert new.app.callers[cid].moh_on


async def test_the_sequence_reaches_the_channel_only_after_its_music_was_started() -> None:
    # What a restarted app relies on to take a sequenced caller's music as playing.
    ari = FakeAri("a")
    order: list[str] = []
    start_moh, set_var = ari.start_moh, ari.set_var

    async def moh(channel_id: str, moh_class: str) -> None:
        await start_moh(channel_id, moh_class)
        order.append("music")

    async def var(channel_id: str, name: str, value: str) -> None:
        await set_var(channel_id, name, value)
        order.append(name)

    ari.start_moh, ari.set_var = moh, var  # type: ignore[method-assign]
    async with running(ari) as n:
        await n.queued_caller()
        await n.settle()
    assert order.index("music") < order.index(r.VAR_SEQ)


async def test_a_prompt_that_ends_after_a_restart_gives_the_caller_its_music_back() -> None:
    # ARI cannot list a channel's playbacks: the restarted app learns of the prompt when it ends.
    ari = FakeAri("a")
    async with running(ari) as old:
        cid = await old.queued_caller()
        await old.settle()
        old.coord.decide(periodic_announce=node_pb2.PeriodicAnnounce(call_id=cid, prompt="queue-periodic-announce"))
        await old.settle()
        [pid] = [p for p, pb in ari.playbacks.items() if pb.channel_id == cid]
        assert ari.channels[cid].moh_class is None, "the prompt stopped the music"
    new_ari = ari.successor()
    async with running(new_ari) as new:
        new_ari.finish_playback(pid)
        await new.settle()
        assert new_ari.channels[cid].moh_class == "default", "never silence"
        assert new.app.callers[cid].moh_on


async def test_channel_variables_out_of_range_are_not_set_and_the_node_still_registers() -> None:
    """The variables are on the channel, where the dialplan can change them: a sequence that does not
    fit the Register made every snapshot fail to encode (the process died and re-adopted in a loop)."""
    ari = FakeAri("a")
    async with running(ari) as old:
        waiting, _ = await _waiting_and_connected(old, ari)
    bad = {waiting[0]: ("-5", "2", "1"), waiting[1]: (str(2**64), str(2**70), "inf")}
    for cid, (seq, order, joined) in bad.items():
        ari.channels[cid].variables.update({r.VAR_SEQ: seq, r.VAR_ORDER: order, r.VAR_JOINED: joined,
                                            r.VAR_POSITION: str(2**40)})
    new_ari = ari.successor()
    async with running(new_ari) as new:
        [register] = new.coord.registers
        by_id = {c.joined.call_id: c for c in register.calls}
        assert by_id[waiting[0]].arrival_seq == 0 and by_id[waiting[1]].arrival_seq == 0
        assert by_id[waiting[1]].joined.node_join_order != 2**70
        assert by_id[waiting[2]].arrival_seq == 4, "the others keep theirs"
        assert 0.0 <= by_id[waiting[1]].joined.waited < 60.0


async def test_a_register_carries_each_callers_first_position_and_a_calls_time_since_its_bridge() -> None:
    """For a later leader's queue_log: origposition, and the hold and call times of a call it adopts."""
    ari = FakeAri("a")
    async with running(ari) as n:
        waiting, talking = await _waiting_and_connected(n, ari)
        n.join(waiting[1], position=1)  # told a new position later: the first one is kept
        await n.settle()
        snap = {c.joined.call_id: c for c in n.app.snapshot().calls}
        assert [snap[c].joined.original_position for c in waiting] == [1, 2, 1]
        assert snap[talking].state == "connected" and 0.0 <= snap[talking].connected_for < 5.0
        assert snap[talking].connected_for <= snap[talking].joined.waited
        assert snap[waiting[0]].connected_for == 0.0


@pytest.mark.parametrize("peer", ["agent", "trunk"])
async def test_a_call_whose_peer_hung_up_during_a_websocket_drop_ends_with_continue(peer: str) -> None:
    """The agent's leg (or the trunk leg from the agent's node) hung up while the websocket was down:
    its StasisEnd is lost. The resync ends the call as that event would have (CallEnded, CONTINUE);
    the caller used to stay alone in its bridge, in silence, for good."""
    ari = FakeAri("a")
    async with running(ari) as n:
        cid = await n.queued_caller()
        if peer == "agent":
            ari.outcomes["Local/alice@agents/n"] = OriginateOutcome.ANSWER
            n.offer("o1", cid)
            await n.settle()
            n.connect("o1", cid)
            leg = "a-ag-o1_"
        else:
            n.offer("o1", cid, agent_node="b")
            await n.settle()
            n.connect("o1", cid, agent_node="b")
            await n.settle()
            leg = ari.caller_enters(["inbound", "cq-o1"])
        await n.settle()
        assert set(ari.bridges["a-br-o1_"].channels) == {cid, leg}
        ari.drop_connection()
        ari.caller_hangs_up(leg)
        ari.restore_connection()
        for _ in range(20):
            await n.settle()
        assert cid not in n.app.callers
        assert ari.channels[cid].variables["CLUSTERQ_STATUS"] == "CONTINUE"
        assert [(e.call_id, e.agent_hung_up) for e in n.coord.of("call_ended")] == [(cid, True)]


async def test_a_caller_alone_in_its_call_bridge_after_a_restart_continues_in_the_dialplan() -> None:
    """The agent hung up while no process ran: the caller is alone in its call's bridge. It goes on
    with CONTINUE; it was adopted as waiting, in silence in that bridge, and queued for a second agent."""
    ari = FakeAri("a")
    async with running(ari) as old:
        cid = await old.queued_caller()
        ari.outcomes["Local/alice@agents/n"] = OriginateOutcome.ANSWER
        old.offer("o1", cid)
        await old.settle()
        old.connect("o1", cid)
        await old.settle()
    ari.caller_hangs_up("a-ag-o1_")
    new_ari = ari.successor()
    async with running(new_ari) as new:
        for _ in range(20):
            await new.settle()
        assert cid not in new.app.callers
        assert new_ari.channels[cid].variables["CLUSTERQ_STATUS"] == "CONTINUE"
        assert "a-br-o1_" not in new_ari.bridges
        assert all(c.joined.call_id != cid for reg in new.coord.registers for c in reg.calls)


async def test_a_trunk_leg_that_arrived_during_a_websocket_drop_is_bridged_not_hung_up() -> None:
    """Its StasisStart was lost: the resync takes it as that event would have (it used to hang it up
    as a stray leg, which ended the answered agent's call and sent the caller back)."""
    ari = FakeAri("a")
    async with running(ari) as n:
        cid = await n.queued_caller()
        n.offer("o1", cid, agent_node="b")
        await n.settle()
        n.connect("o1", cid, agent_node="b")
        await n.settle()
        ari.drop_connection()
        leg = ari.caller_enters(["inbound", "cq-o1"])
        ari.restore_connection()
        for _ in range(20):
            await n.settle()
        assert leg in ari.channels and set(ari.bridges["a-br-o1_"].channels) == {cid, leg}
        assert n.app.callers[cid].state == r.CONNECTED


async def test_a_priority_changed_by_an_operator_is_reported_and_survives_a_restart() -> None:
    ari = FakeAri("a")
    async with running(ari) as old:
        cid = await old.queued_caller(("support", "priority=2"))
        other = await old.queued_caller(position=2)
        await old.settle()
        old.coord.decide(caller_priority=node_pb2.CallerPriority(call_id=cid, priority=7))
        await old.settle()
        snap = {c.joined.call_id: c.joined.priority for c in old.app.snapshot().calls}
        assert snap == {cid: 7, other: 0}  # what the next leader is told
        assert ari.channels[cid].variables[r.VAR_PRIORITY] == "7"
        assert r.VAR_PRIORITY not in ari.channels[other].variables
    ari.channels[other].variables[r.VAR_PRIORITY] = "x"  # not a number: the Stasis argument's counts
    new_ari = ari.successor()
    async with running(new_ari) as new:
        [register] = new.coord.registers
        assert {c.joined.call_id: c.joined.priority for c in register.calls} == {cid: 7, other: 0}


async def test_an_operators_priority_is_cleared_as_the_caller_leaves_so_a_later_visit_keeps_its_own() -> None:
    ari = FakeAri("a")
    async with running(ari) as old:
        cid = await old.queued_caller(("support",))
        old.coord.decide(caller_priority=node_pb2.CallerPriority(call_id=cid, priority=7))
        await old.settle()
        old.coord.decide(continue_in_dialplan=node_pb2.ContinueInDialplan(
            call_id=cid, status=common_pb2.CALLER_STATUS_TIMEOUT))
        await old.settle()
        assert not ari.channels[cid].variables.get(r.VAR_PRIORITY)  # cleared as it left

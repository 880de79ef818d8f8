"""queue_log lines produced from real engine steps, in app_queue's format."""

from __future__ import annotations

import math
from pathlib import Path

from coordinator.queue import (
    AgentLoggedIn,
    AgentLoggedOut,
    AgentPaused,
    AgentUnpaused,
    CallAdopted,
    CallEnded,
    CallerJoined,
    CallerLeft,
    Event,
    NodeLost,
    Offer,
    OfferAnswered,
    OfferFailed,
    QueueConfig,
    QueueDeleted,
    Strategy,
    Tick,
)
from coordinator.queue_log import QueueLogBook, QueueLogFile
from tests.unit.coordinator.queue.helpers import agent, engine, join, only

WALL0 = 1_700_000_000


class Run:
    """An engine and a QueueLogBook fed the same steps; `lines` is what was logged."""

    def __init__(self, *configs: QueueConfig) -> None:
        self.engine = engine(*configs)
        self.lines: list[str] = []
        self.book = QueueLogBook(self.lines.append)
        self.offers: list[Offer] = []

    def step(self, event: Event, now: float) -> None:
        # As LeaderRuntime does: a leaving caller's position is read before the engine drops it.
        left_at = self.engine.position(event.call_id) if isinstance(event, CallerLeft) else None
        decisions = self.engine.apply(event, now)
        self.offers += only(decisions, Offer)
        self.book.record(event, decisions, now, WALL0 + now, left_at)

    def events(self) -> list[str]:
        """Each line without its timestamp."""
        return [line.rstrip("\n").split("|", 1)[1] for line in self.lines]


def test_a_call_from_join_to_completion() -> None:
    run = Run(QueueConfig("q", strategy=Strategy.LINEAR, ring_timeout=20.0))
    run.step(join("x"), 0.0)
    run.step(join("y"), 1.0)
    run.step(AgentLoggedIn(agent("a")), 5.0)
    [offer] = run.offers
    run.step(OfferAnswered(offer.offer_id), 7.5)
    run.step(CallerLeft("y", "hangup"), 9.0)
    run.step(CallEnded("x", agent_hung_up=False), 67.5)
    assert run.events() == [
        "x|q|NONE|ENTERQUEUE|||1",
        "y|q|NONE|ENTERQUEUE|||2",
        "NONE|q|a|ADDMEMBER|",  # app_queue: no data, the line still ends with "|"
        # data2 the agent leg's channel id; ring time in whole seconds (app_queue: ms / 1000)
        f"x|q|a|CONNECT|8|n1-ag-{offer.offer_id}_|2",
        "y|q|NONE|ABANDON|1|2|8",  # x left the line when connected: y was first
        "x|q|a|COMPLETECALLER|8|60|1",
    ]
    assert run.lines[0].startswith(f"{WALL0}|") and all(line.endswith("\n") for line in run.lines)


def test_ring_timeout_failure_and_agent_hangup() -> None:
    run = Run(QueueConfig("q", strategy=Strategy.LINEAR, ring_timeout=15.0))
    run.step(AgentLoggedIn(agent("a")), 0.0)
    run.step(AgentLoggedIn(agent("b")), 0.0)
    run.step(join("x"), 1.0)
    run.step(Tick(), 16.0)  # a rang 15 s: timeout, b is offered
    run.step(OfferFailed(run.offers[1].offer_id, "busy"), 16.2)
    run.step(OfferAnswered(run.offers[2].offer_id), 20.0)
    run.step(CallEnded("x", agent_hung_up=True), 30.0)
    assert [e.split("|")[3] for e in run.events()] == [
        "ADDMEMBER", "ADDMEMBER", "ENTERQUEUE", "RINGNOANSWER", "RINGNOANSWER", "CONNECT", "COMPLETEAGENT"]
    assert run.events()[3] == "x|q|a|RINGNOANSWER|15000"
    assert run.events()[4] == "x|q|b|RINGNOANSWER|200"
    assert run.events()[-1] == "x|q|a|COMPLETEAGENT|19|10|1"


def test_exits_rejections_and_members() -> None:
    run = Run(QueueConfig("q", maxlen=2, max_wait=30.0))
    run.step(join("x"), 0.0)
    run.step(join("y"), 1.0)
    run.step(join("z"), 2.0)  # full
    run.step(CallerLeft("y", "exitkey", "5"), 3.0)
    run.step(Tick(), 30.0)  # x waited max_wait
    run.step(AgentLoggedIn(agent("a", "q", "other")), 31.0)
    run.step(AgentPaused("a", "lunch"), 32.0)
    run.step(AgentUnpaused("a"), 33.0)
    run.step(AgentLoggedOut("a"), 34.0)
    assert run.events() == [
        "x|q|NONE|ENTERQUEUE|||1",
        "y|q|NONE|ENTERQUEUE|||2",
        # z, refused (full), gets no line: app_queue logs nothing for a caller Queue() refuses
        "y|q|NONE|EXITWITHKEY|5|2|2|2",  # app_queue 22.10: EXITWITHKEY|5|1|1|2
        "x|q|NONE|EXITWITHTIMEOUT|1|1|30",
        "NONE|q|a|ADDMEMBER|",
        "NONE|other|a|ADDMEMBER|",
        # a clusterq pause is in every queue: app_queue's pause without a queue name
        "NONE|NONE|a|PAUSEALL|lunch",
        "NONE|q|a|PAUSE|lunch",
        "NONE|other|a|PAUSE|lunch",
        "NONE|NONE|a|UNPAUSEALL|",
        "NONE|q|a|UNPAUSE|",
        "NONE|other|a|UNPAUSE|",
        "NONE|q|a|REMOVEMEMBER|",
        "NONE|other|a|REMOVEMEMBER|",
    ]


def test_a_re_reported_caller_does_not_enter_twice() -> None:
    run = Run()
    run.step(join("x", arrival_seq=7, joined_at=-20.0), 0.0)  # re-reported to a new leader
    run.step(CallerLeft("x", "hangup"), 5.0)
    assert run.events() == ["x|q|NONE|ABANDON|1|1|25"]


def test_a_non_finite_wait_is_logged_as_zero_not_raised() -> None:
    # Nodes report waits; one that got past validation must not raise inside the leader's event path.
    run = Run()
    run.step(join("x", arrival_seq=7, joined_at=-math.inf), 0.0)
    run.step(CallerLeft("x", "hangup"), 5.0)
    assert run.events() == ["x|q|NONE|ABANDON|1|1|0"]


def test_the_connect_ring_time_is_truncated_to_seconds_like_app_queue() -> None:
    run = Run(QueueConfig("q", strategy=Strategy.LINEAR, ring_timeout=20.0))
    run.step(AgentLoggedIn(agent("a")), 0.0)
    run.step(join("x"), 1.0)
    run.step(OfferAnswered(run.offers[0].offer_id), 3.9)
    assert run.events()[-1] == f"x|q|a|CONNECT|3|n1-ag-{run.offers[0].offer_id}_|2"


def test_the_file_appends_buffered_lines(tmp_path: Path) -> None:
    out = QueueLogFile(tmp_path / "log" / "queue_log")
    out.write("1|a|q|NONE|ENTERQUEUE||1|1\n")
    assert not out.path.exists(), "no I/O before flush"
    out.flush()
    out.write("2|a|q|NONE|ABANDON|1|1|1\n")
    out.flush()
    assert out.path.read_text().splitlines() == ["1|a|q|NONE|ENTERQUEUE||1|1", "2|a|q|NONE|ABANDON|1|1|1"]


def test_a_leaving_caller_is_logged_at_its_position_then_not_first_the_ring() -> None:
    """app_queue renumbers its callers as others leave, and ends a ring (RINGCANCELED) before the
    caller's ABANDON."""
    run = Run(QueueConfig("q", strategy=Strategy.LINEAR, ring_timeout=20.0))
    for i, cid in enumerate(("x", "y", "z")):
        run.step(join(cid), float(i))
    run.step(CallerLeft("x", "hangup"), 10.0)
    run.step(CallerLeft("z", "hangup"), 11.0)  # y is first now, z second
    run.step(AgentLoggedIn(agent("a")), 12.0)  # y rings
    run.step(CallerLeft("y", "hangup"), 14.5)
    assert run.events()[3:] == [
        "x|q|NONE|ABANDON|1|1|10",
        "z|q|NONE|ABANDON|2|3|9",
        "NONE|q|a|ADDMEMBER|",  # app_queue: no data, the line still ends with "|"
        "y|q|a|RINGCANCELED|2500",
        "y|q|NONE|ABANDON|1|2|14",
    ]


def test_a_hangup_crossing_the_connect_completes_the_call() -> None:
    """The node sends CallLeft while it still sees the caller ringing, after the leader connected it:
    the CONNECT logged must get its end, or reporting tools show the call talking for ever."""
    run = Run(QueueConfig("q", strategy=Strategy.LINEAR, ring_timeout=20.0))
    run.step(AgentLoggedIn(agent("a")), 0.0)
    run.step(join("x"), 1.0)
    run.step(OfferAnswered(run.offers[0].offer_id), 4.0)
    run.step(CallerLeft("x", "hangup"), 4.2)
    assert [e.split("|")[3] for e in run.events()] == ["ADDMEMBER", "ENTERQUEUE", "CONNECT", "COMPLETECALLER"]
    assert run.events()[-1] == "x|q|a|COMPLETECALLER|3|0|1"


def test_autopause_is_logged_as_app_queue_pauses_a_member_that_did_not_answer() -> None:
    run = Run(QueueConfig("q", strategy=Strategy.LINEAR, ring_timeout=15.0, autopause_after=1))
    run.step(AgentLoggedIn(agent("a", "q", "other")), 0.0)
    run.step(join("x"), 1.0)
    run.step(OfferFailed(run.offers[0].offer_id, "noanswer"), 16.0)
    run.step(AgentUnpaused("a"), 60.0)
    # As app_queue 22.10 logs autopause=all (its lines, captured: RINGNOANSWER|3000, then
    # NONE|NONE|ag|PAUSEALL|Auto-Pause and NONE|<queue>|ag|PAUSE|Auto-Pause per queue).
    assert run.events()[3:] == [
        "x|q|a|RINGNOANSWER|15000",
        "NONE|NONE|a|PAUSEALL|Auto-Pause",
        "NONE|q|a|PAUSE|Auto-Pause",
        "NONE|other|a|PAUSE|Auto-Pause",
        "NONE|NONE|a|UNPAUSEALL|",
        "NONE|q|a|UNPAUSE|",
        "NONE|other|a|UNPAUSE|",
    ]


def test_callers_of_a_lost_node_or_a_deleted_queue_end_with_app_queue_events() -> None:
    """Only app_queue's own ending events: a verb of clusterq's own left the call open in the tools."""
    run = Run(QueueConfig("q"), QueueConfig("gone"))
    run.step(join("x", node="n2"), 0.0)
    run.step(join("y", "gone"), 1.0)
    run.step(NodeLost("n2"), 10.0)
    run.step(QueueDeleted("gone"), 11.0)
    assert run.events()[2:] == ["x|q|NONE|ABANDON|1|1|10", "y|gone|NONE|EXITEMPTY|1|1|10"]


def test_calls_re_reported_to_a_new_leader_keep_their_hold_time_call_time_and_original_position() -> None:
    """A new leader logs the end of a call connected under the old one (and the exit of a caller
    that waited under it) with what the node re-reports: wait, time since the bridge, first position."""
    run = Run()
    run.step(AgentLoggedIn(agent("a")), 0.0)
    run.step(CallAdopted("x", "q", "n1", "a", "e1-4", waited=95.0, connected_for=60.0, original_position=3), 100.0)
    run.step(CallEnded("x", agent_hung_up=True), 130.0)
    run.step(AgentLoggedOut("a"), 130.0)
    run.step(CallerJoined("y", "q", "n1", arrival_seq=9, joined_at=70.0, original_position=4), 131.0)
    run.step(CallerLeft("y", "hangup"), 140.0)
    # hold 35 s (95 waited - 60 talked), call 90 s (60 before the takeover + 30), entered at 3
    assert run.events()[-3:-1] == ["x|q|a|COMPLETEAGENT|35|90|3", "NONE|q|a|REMOVEMEMBER|"]
    assert run.events()[-1] == "y|q|NONE|ABANDON|1|4|70"


def test_a_bar_or_a_line_break_inside_a_field_never_forges_fields_or_lines() -> None:
    run = Run(QueueConfig("q"))
    forged = "100|2\n1700000000|fake|q|NONE|ABANDON|1|1|0\u2028\x00"
    run.step(CallerJoined("c|1\r", "q", "n1", caller_number=forged), 0.0)
    run.step(AgentLoggedIn(agent("a")), 1.0)
    run.step(AgentPaused("a", "lunch\n1700000000|fake-call|q|bob|CONNECT|5|x|1"), 2.0)
    assert run.events() == [
        "c_1_|q|NONE|ENTERQUEUE||100_2_1700000000_fake_q_NONE_ABANDON_1_1_0__|1",
        "NONE|q|a|ADDMEMBER|",
        "NONE|NONE|a|PAUSEALL|lunch_1700000000_fake-call_q_bob_CONNECT_5_x_1",
        "NONE|q|a|PAUSE|lunch_1700000000_fake-call_q_bob_CONNECT_5_x_1",
    ]
    assert all(line.count("\n") == 1 and line.endswith("\n") for line in run.lines)

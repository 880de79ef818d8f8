"""Agents' device state (app_queue's state_interface): who is offered, per-node device names, what
each node is told to watch, the agent views and statistics, joinempty / leavewhenempty."""

from __future__ import annotations

import pytest

from coordinator.queue import (
    AgentConfig,
    AgentLoggedIn,
    AgentLoggedOut,
    AgentPaused,
    CallerExit,
    CallerStatus,
    Decision,
    DeviceStateChanged,
    JoinAccepted,
    JoinRejected,
    Membership,
    NodeAlive,
    NodeDetached,
    OfferAnswered,
    QueueConfig,
    QueueEngine,
    WatchDevices,
)
from coordinator.queue.model import DEVICE_STATES, device_of

from .helpers import CallCounter, agent, engine, join, offered, only

IN_USE = ("INUSE", "BUSY", "RINGING", "RINGINUSE", "ONHOLD")
DOWN = ("UNAVAILABLE", "INVALID")
FREE = ("NOT_INUSE", "UNKNOWN")


def _states(e: QueueEngine) -> dict[str, tuple[str, str]]:
    return {v.agent_id: (v.state, v.device_state) for v in e.agent_states()}


# ---- eligibility ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("state", "queue_ringinuse", "agent_ringinuse", "rung"),
    [(s, False, None, True) for s in FREE]
    + [(s, False, None, False) for s in IN_USE]
    + [(s, True, None, True) for s in IN_USE]
    + [(s, False, True, True) for s in IN_USE]
    + [(s, True, False, False) for s in IN_USE]
    + [(s, r, None, False) for s in DOWN for r in (False, True)]
    + [(s, False, True, False) for s in DOWN],
)
def test_who_is_offered_by_device_state(state: str, queue_ringinuse: bool, agent_ringinuse: bool | None,
                                        rung: bool) -> None:
    e = engine(QueueConfig("q", ringinuse=queue_ringinuse), agents=(agent("a", ringinuse=agent_ringinuse),))
    e.apply(DeviceStateChanged("n1", "PJSIP/a", state), 0.0)
    assert offered(e.apply(join("c1"), 1.0)) == ([("c1", "a")] if rung else [])


def test_every_asterisk_device_state_is_classified() -> None:
    assert set(IN_USE + DOWN + FREE) == DEVICE_STATES


def test_a_busy_device_holds_the_caller_and_its_not_inuse_dispatches_it_at_once() -> None:
    e = engine(agents=(agent("a"),))
    assert e.apply(DeviceStateChanged("n1", "PJSIP/a", "INUSE"), 0.0) == []
    assert offered(e.apply(join("c1"), 1.0)) == []
    assert _states(e)["a"] == ("inuse", "INUSE")
    assert offered(e.apply(DeviceStateChanged("n1", "PJSIP/a", "NOT_INUSE"), 2.0)) == [("c1", "a")]


@pytest.mark.parametrize("state", DOWN)
def test_an_unavailable_device_is_never_rung_until_it_is_back(state: str) -> None:
    e = engine(QueueConfig("q", ringinuse=True), agents=(agent("a"),))
    e.apply(DeviceStateChanged("n1", "PJSIP/a", state), 0.0)
    assert offered(e.apply(join("c1"), 1.0)) == []
    assert _states(e)["a"] == ("unavailable", state)
    assert offered(e.apply(DeviceStateChanged("n1", "PJSIP/a", "UNKNOWN"), 2.0)) == [("c1", "a")]


def test_ringinuse_rings_an_agent_whose_device_is_in_use_on_our_own_call() -> None:
    e = engine(QueueConfig("q", ringinuse=True), agents=(agent("a"),))
    e.apply(join("c1"), 0.0)
    e.apply(OfferAnswered("o1"), 1.0)
    e.apply(DeviceStateChanged("n1", "PJSIP/a", "INUSE"), 2.0)
    assert offered(e.apply(join("c2"), 3.0)) == [("c2", "a")]


def test_device_names_are_per_node() -> None:
    # The same device name on two nodes is two devices: a report from n1 is about n1's agents only.
    e = engine(agents=(agent("a", node="n1", iface="PJSIP/desk"), agent("b", node="n2", iface="PJSIP/desk")))
    e.apply(DeviceStateChanged("n1", "PJSIP/desk", "INUSE"), 0.0)
    assert _states(e) == {"a": ("inuse", "INUSE"), "b": ("available", "UNKNOWN")}
    assert offered(e.apply(join("c1"), 1.0)) == [("c1", "b")]


def test_agents_sharing_a_device_take_its_state_and_a_later_login_inherits_it() -> None:
    e = engine(agents=(agent("a", iface="PJSIP/desk"), agent("b", iface="PJSIP/desk"), agent("c")))
    e.apply(DeviceStateChanged("n1", "PJSIP/desk", "BUSY"), 0.0)
    e.apply(AgentLoggedIn(agent("d", iface="PJSIP/desk")), 1.0)
    assert {k: v[1] for k, v in _states(e).items()} == {"a": "BUSY", "b": "BUSY", "c": "UNKNOWN", "d": "BUSY"}


def test_a_report_about_a_device_nobody_uses_is_ignored_and_a_dropped_device_is_forgotten() -> None:
    e = engine(agents=(agent("a"),))
    e.apply(DeviceStateChanged("n1", "PJSIP/nobody", "INUSE"), 0.0)
    e.apply(AgentLoggedIn(agent("b", iface="PJSIP/nobody")), 1.0)
    assert _states(e)["b"] == ("available", "UNKNOWN")
    e.apply(DeviceStateChanged("n1", "PJSIP/a", "INUSE"), 2.0)
    e.apply(AgentLoggedOut("a"), 3.0)
    e.apply(AgentLoggedIn(agent("a")), 4.0)
    assert _states(e)["a"] == ("available", "UNKNOWN")


def test_a_device_keeps_its_state_while_its_node_is_detached() -> None:
    e = engine(agents=(agent("a"),))
    e.apply(DeviceStateChanged("n1", "PJSIP/a", "INUSE"), 0.0)
    e.apply(NodeDetached("n1"), 1.0)
    e.apply(join("c1"), 2.0)
    assert offered(e.apply(NodeAlive("n1"), 3.0)) == []
    assert _states(e)["a"] == ("inuse", "INUSE")


@pytest.mark.parametrize(
    ("endpoint", "device"),
    [
        ("PJSIP/alice", "PJSIP/alice"),
        ("Local/alice@agents/n", "Local/alice@agents"),
        ("Local/alice@agents", "Local/alice@agents"),
        ("local/alice@agents/nj", "local/alice@agents"),
        ("PJSIP/alice/sip:alice@10.0.0.1", "PJSIP/alice"),
        ("PJSIP/1001@provider", ""),  # a number through a trunk: no device of its own
        ("PJSIP/alice&PJSIP/bob", ""),
        ("DAHDI/1", "DAHDI/1"),
    ],
)
def test_the_default_device_is_the_endpoints_tech_and_resource(endpoint: str, device: str) -> None:
    assert device_of(endpoint) == device
    cfg = AgentConfig("a", endpoint, "n1", (Membership("q"),))
    assert cfg.device == device
    assert AgentConfig("a", endpoint, "n1", (Membership("q"),), state_interface="Custom:a").device == "Custom:a"


# ---- what nodes watch -----------------------------------------------------------------------------
def _watches(out: list[Decision]) -> list[WatchDevices]:
    return only(out, WatchDevices)


def test_node_alive_sends_the_whole_list_of_that_nodes_devices() -> None:
    e = engine(agents=(agent("b"), agent("a"), agent("x", iface="PJSIP/a"), agent("far", node="n2"),
                       agent("loc", iface="Local/loc@agents")))
    assert _watches(e.apply(NodeAlive("n1"), 1.0)) == [
        WatchDevices("n1", ("Local/loc@agents", "PJSIP/a", "PJSIP/b"), (), True)]
    assert _watches(e.apply(NodeAlive("n3"), 1.0)) == [WatchDevices("n3", (), (), True)]


@pytest.mark.parametrize(
    ("before", "login", "expected"),
    [
        # first login on a device: watch it
        ((), agent("a"), [WatchDevices("n1", ("PJSIP/a",), (), False)]),
        # a device already watched there: nothing to tell
        ((agent("a"),), agent("b", iface="PJSIP/a"), []),
        # the same device on another node is another watch
        ((agent("a"),), agent("b", node="n2", iface="PJSIP/a"), [WatchDevices("n2", ("PJSIP/a",), (), False)]),
        # re-login, same home and device: nothing
        ((agent("a"),), agent("a", "q", penalty=2), []),
        # re-login with another device on the same node: one change
        ((agent("a"),), agent("a", iface="PJSIP/desk"), [WatchDevices("n1", ("PJSIP/desk",), ("PJSIP/a",), False)]),
        # re-login on another node: unwatch on the old, watch on the new
        ((agent("a"),), agent("a", node="n2"),
         [WatchDevices("n1", (), ("PJSIP/a",), False), WatchDevices("n2", ("PJSIP/a",), (), False)]),
        # the old device is still used by another agent: only the new one is watched
        ((agent("a"), agent("b", iface="PJSIP/a")), agent("a", iface="PJSIP/desk"),
         [WatchDevices("n1", ("PJSIP/desk",), (), False)]),
        # moving onto a device already watched, leaving one nobody else uses: only the unwatch
        ((agent("a"), agent("b")), agent("a", iface="PJSIP/b"), [WatchDevices("n1", (), ("PJSIP/a",), False)]),
    ],
)
def test_watch_changes_on_login(before: tuple[AgentConfig, ...], login: AgentConfig,
                                expected: list[WatchDevices]) -> None:
    e = engine(agents=before)
    assert _watches(e.apply(AgentLoggedIn(login), 1.0)) == expected


def test_watch_changes_on_logout() -> None:
    e = engine(agents=(agent("a"), agent("b", iface="PJSIP/a"), agent("c")))
    assert _watches(e.apply(AgentLoggedOut("a"), 1.0)) == []
    assert _watches(e.apply(AgentLoggedOut("b"), 2.0)) == [WatchDevices("n1", (), ("PJSIP/a",), False)]
    assert _watches(e.apply(AgentLoggedOut("nobody"), 3.0)) == []
    assert _watches(e.apply(NodeAlive("n1"), 4.0)) == [WatchDevices("n1", ("PJSIP/c",), (), True)]


# ---- views and statistics --------------------------------------------------------------------------
def test_views_show_the_device_and_paused_or_in_call_come_before_inuse() -> None:
    e = engine(agents=(agent("a", iface="Custom:a"), agent("p"), agent("t"),
                       AgentConfig("loc", "Local/loc@agents/n", "n1", (Membership("q"),))))
    e.apply(AgentPaused("p"), 0.0)
    e.apply(join("c1"), 0.0)
    e.apply(OfferAnswered(next(o for o in e.agent_states() if o.agent_id == "a").offer_id or ""), 0.5)
    for dev in ("Custom:a", "PJSIP/p", "PJSIP/t"):
        e.apply(DeviceStateChanged("n1", dev, "INUSE"), 1.0)
    views = {v.agent_id: (v.state, v.state_interface, v.device_state) for v in e.agent_states()}
    assert views == {"a": ("busy", "Custom:a", "INUSE"), "p": ("paused", "PJSIP/p", "INUSE"),
                     "t": ("inuse", "PJSIP/t", "INUSE"), "loc": ("available", "Local/loc@agents", "UNKNOWN")}
    # One agent's view (what the Agents service answers per request) is its entry in the listing.
    assert all(e.agent_state(v.agent_id) == v for v in e.agent_states())
    assert e.agent_state("nobody") is None


def test_stats_count_a_busy_device_as_busy_and_an_unavailable_one_as_neither() -> None:
    e = engine(agents=(agent("a"), agent("b"), agent("c")))
    e.apply(DeviceStateChanged("n1", "PJSIP/a", "INUSE"), 0.0)
    e.apply(DeviceStateChanged("n1", "PJSIP/b", "UNAVAILABLE"), 0.0)
    s = e.snapshot(1.0)[0]
    assert (s.agents_logged_in, s.agents_available, s.agents_busy) == (3, 1, 1)


# ---- joinempty / leavewhenempty ------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("condition", "state", "refused"),
    [
        ("inuse", "INUSE", True),
        ("inuse", "BUSY", True),
        ("inuse", "ONHOLD", True),
        ("inuse", "RINGINUSE", True),
        ("inuse", "RINGING", False),
        ("inuse", "NOT_INUSE", False),
        ("ringing", "RINGING", True),
        ("ringing", "RINGINUSE", True),
        ("ringing", "INUSE", False),
        ("unavailable", "UNAVAILABLE", True),
        ("unavailable", "INVALID", False),
        ("invalid", "INVALID", True),
        ("invalid", "UNAVAILABLE", False),
        ("unknown", "UNKNOWN", True),
        ("unknown", "NOT_INUSE", False),
        ("unknown", "", False),  # not reported yet (a login, a new leader): not Asterisk's UNKNOWN
        ("paused", "INUSE", False),
        ("wrapup", "UNAVAILABLE", False),
    ],
)
def test_joinempty_counts_device_states(condition: str, state: str, refused: bool) -> None:
    e = engine(QueueConfig("q", joinempty=frozenset({condition})), agents=(agent("a"),))
    if state:
        e.apply(DeviceStateChanged("n1", "PJSIP/a", state), 0.0)
    out = e.apply(join("x"), 1.0)
    if refused:
        assert [(r.call_id, r.status) for r in only(out, JoinRejected)] == [("x", CallerStatus.JOINEMPTY)]
    else:
        assert [j.call_id for j in only(out, JoinAccepted)] == ["x"]


def test_leavewhenempty_sends_waiting_callers_away_when_the_last_device_goes_unavailable() -> None:
    e = engine(QueueConfig("q", leavewhenempty=frozenset({"unavailable"})), agents=(agent("a"),))
    e.apply(DeviceStateChanged("n1", "PJSIP/a", "INUSE"), 0.0)  # in use: not offered, but usable
    assert only(e.apply(join("x"), 1.0), CallerExit) == []
    out = e.apply(DeviceStateChanged("n1", "PJSIP/a", "UNAVAILABLE"), 2.0)
    assert [(x.call_id, x.status) for x in only(out, CallerExit)] == [("x", CallerStatus.LEAVEEMPTY)]


def test_leavewhenempty_unknown_waits_for_a_report_instead_of_emptying_the_queue_after_a_takeover() -> None:
    """A new leader (or a new login) knows no device state yet: that is not Asterisk's UNKNOWN."""
    e = engine(QueueConfig("q", leavewhenempty=frozenset({"unknown"})), agents=(agent("a"), agent("b")))
    e.apply(AgentPaused("a", "lunch"), 0.0)
    e.apply(AgentPaused("b", "lunch"), 0.0)
    assert only(e.apply(join("x"), 1.0), CallerExit) == []
    assert _states(e)["a"] == ("paused", "UNKNOWN")  # shown as UNKNOWN all the same
    e.apply(DeviceStateChanged("n1", "PJSIP/a", "UNKNOWN"), 2.0)
    assert only(e.apply(DeviceStateChanged("n1", "PJSIP/b", "NOT_INUSE"), 3.0), CallerExit) == []
    out = e.apply(DeviceStateChanged("n1", "PJSIP/b", "UNKNOWN"), 4.0)  # now both said UNKNOWN
    assert [(x.call_id, x.status) for x in only(out, CallerExit)] == [("x", CallerStatus.LEAVEEMPTY)]


def test_first_reports_after_a_takeover_do_not_walk_the_idle_agents(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each node re-reports every device to a new leader: not reported -> NOT_INUSE changes nothing about
    offers. With a caller nobody can take waiting, a dispatch pass per report was O(N^2) (40 s for 2,000)."""
    import coordinator.queue.dispatch as dispatch_module

    # An agent looked at by a pass: the general one (_best_callers) or the one for a lone caller (_agent_fits).
    scans = CallCounter(monkeypatch, dispatch_module, "_best_callers", "_agent_fits")
    e = engine(QueueConfig("q"), agents=tuple(agent(f"a{i}") for i in range(300)))
    e.apply(join("x", requires=(("lang", "fr"),)), 1.0)  # nobody speaks French
    scans.calls = 0
    for i in range(300):
        e.apply(DeviceStateChanged("n1", f"PJSIP/a{i}", "NOT_INUSE"), 2.0)
    assert scans.calls == 0
    e.apply(DeviceStateChanged("n1", "PJSIP/a7", "INUSE"), 3.0)
    out = e.apply(DeviceStateChanged("n1", "PJSIP/a7", "NOT_INUSE"), 4.0)  # a real change: a pass again
    assert scans.calls > 0 and offered(out) == []


def test_an_agent_without_a_device_of_its_own_is_watched_nowhere_and_offered_as_before() -> None:
    e = engine(QueueConfig("q"))
    cfg = AgentConfig("t", "PJSIP/1001@provider", "n1", (Membership("q"),))  # a number through a trunk
    assert _watches(e.apply(AgentLoggedIn(cfg), 0.0)) == []
    assert _watches(e.apply(NodeAlive("n1"), 0.0)) == [WatchDevices("n1", (), (), True)]
    assert _states(e)["t"] == ("available", "UNKNOWN")
    assert offered(e.apply(join("x"), 1.0)) == [("x", "t")]


def test_a_replacing_watch_list_is_capped_at_what_a_node_watches() -> None:
    from coordinator.queue.devices import MAX_WATCH_LIST

    e = engine(QueueConfig("q"), agents=tuple(agent(f"a{i:05d}") for i in range(MAX_WATCH_LIST + 5)))
    [w] = _watches(e.apply(NodeAlive("n1"), 0.0))
    assert len(w.watch) == MAX_WATCH_LIST and w.replace

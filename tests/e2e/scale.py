"""Helpers of the scale tests (tests/e2e/test_scale.py, tests/chaos/test_scale_failover.py).

Every call fact comes from the tests' own ARI observers on both nodes (`Ledger`) and from the order in
which the test itself originated the callers; nothing is read from the coordinator's statistics.

Arrival order (200-caller tests): callers are originated one at a time, alternating nodes, and the
next one is dialled only after the leader sequenced the previous one (CLUSTERQ_SEQ set on its channel,
seen as ChannelVarset). So the origination order IS the order the leader saw the joins in, also across
nodes; `assert_sequenced_in_order` (scale_checks.py) re-checks it.

Offer order: an agent leg is the Local channel <node>-ag-e<epoch>-<n>_ (;2 enters the observer app with
the caller's number); n is the leader's offer counter, so the stamp (epoch, n) orders the offers as
they were made, whatever order Asterisk started the legs in.

Agents answer after a short ring and hang up a short talk time after the call was bridged at both
ends (`Talk`): never before the connection is complete, so every call really connects. (An agent
hanging up between answering and the bridge is a different scenario, with its own outcome.)

This module observes and drives the traffic (ledgers, drivers, origination, the two-node cluster); the
assertions over what the ledgers recorded are in tests/e2e/scale_checks.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import re
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from clusterq_testing.asterisk import AsteriskNode
from clusterq_testing.observer import AriHttpError, AriObserver, CallerLegs
from tests.e2e.conftest import Clusterq

AGENT_LEG_RE = re.compile(r"^(?P<node>[A-Za-z0-9-]+)-ag-e(?P<epoch>\d+)-(?P<n>\d+)_;2$")  # names.agent_leg_id
SEQ_VAR, POSITION_VAR = "CLUSTERQ_SEQ", "CLUSTERQ_POSITION"
Stamp = tuple[int, int]  # (epoch, offer counter): the order offers were made in
AGENTS = [f"ag{i:02d}" for i in range(10)]


@dataclass(frozen=True)
class Placed:
    """A caller the test originated; `index` is its place in the origination order."""

    index: int
    node: str
    number: str
    priority: int
    legs: CallerLegs


@dataclass(frozen=True)
class AgentLegSeen:
    """The ;2 half of an agent leg as it entered the observer app on the agent's home node."""

    node: str
    agent: str
    offer: str  # e<epoch>-<n>
    stamp: Stamp
    number: str  # caller number carried on the leg
    channel: str


@dataclass
class Ledger:
    """Incremental index of one node observer's events (observer.events is only ever appended to)."""

    obs: AriObserver
    cursor: int = 0
    legs: dict[str, AgentLegSeen] = field(default_factory=dict)  # ;2 channel id -> leg
    entered: dict[str, list[str]] = field(default_factory=dict)  # channel -> bridges entered, in order
    members: dict[str, set[str]] = field(default_factory=dict)  # bridge -> every channel that entered it
    exten: dict[str, str] = field(default_factory=dict)  # channel -> dialplan extension when first seen
    up: set[str] = field(default_factory=set)  # channels seen in state Up
    gone: set[str] = field(default_factory=set)  # channels destroyed
    varsets: dict[tuple[str, str], str] = field(default_factory=dict)  # (channel, CLUSTERQ_*) -> last value
    played: dict[str, float] = field(default_factory=dict)  # channel -> last PlaybackStarted time
    playbacks: list[str] = field(default_factory=list)  # ids of started playbacks, in order
    timeline: list[tuple[str, str]] = field(default_factory=list)  # (agent, ch) at start, ("", ch) at end

    @property
    def node(self) -> str:
        """The observed node's name."""
        return self.obs.node.name

    def update(self) -> None:
        """Index the events received since the last call."""
        events = self.obs.events
        while self.cursor < len(events):
            e = events[self.cursor]
            self.cursor += 1
            ch, raw = e.channel_id or "", e.raw
            chan: dict[str, Any] = raw.get("channel") or {}
            if ch and ch not in self.exten:
                self.exten[ch] = str(chan.get("dialplan", {}).get("exten", ""))
            if e.type == "StasisStart" and e.args[:1] == ("agent",):
                m = AGENT_LEG_RE.match(ch)
                assert m and m["node"] == self.node, f"unexpected agent leg {ch} on {self.node}"
                self.legs[ch] = AgentLegSeen(self.node, e.args[1], f"e{m['epoch']}-{m['n']}",
                                             (int(m["epoch"]), int(m["n"])), str(chan["caller"]["number"]), ch)
                self.timeline.append((e.args[1], ch))
            elif e.type == "StasisEnd" and ch in self.legs:
                self.timeline.append(("", ch))
            elif e.type == "ChannelEnteredBridge" and e.bridge_id:
                self.entered.setdefault(ch, []).append(e.bridge_id)
                self.members.setdefault(e.bridge_id, set()).add(ch)
            elif e.type == "ChannelStateChange" and e.channel_state == "Up":
                self.up.add(ch)
            elif e.type == "ChannelDestroyed":
                self.gone.add(ch)
            elif e.type == "ChannelVarset" and str(raw.get("variable", "")).startswith("CLUSTERQ_"):
                self.varsets[(ch, str(raw["variable"]))] = str(raw["value"])
            elif e.type == "PlaybackStarted":
                target = str(raw.get("playback", {}).get("target_uri", ""))
                self.played[target.removeprefix("channel:")] = e.received_at
                self.playbacks.append(str(raw.get("playback", {}).get("id", "")))

    def ringing_legs(self) -> list[AgentLegSeen]:
        """Agent legs that entered the app but were neither answered nor ended yet."""
        return [leg for ch, leg in self.legs.items() if ch not in self.up and ch not in self.gone]


def refresh(ledgers: Mapping[str, Ledger]) -> None:
    """Index every observer's new events."""
    for led in ledgers.values():
        led.update()


def is_bridged(c: Placed, ledgers: Mapping[str, Ledger]) -> bool:
    """Whether the caller's queue leg entered a bridge (call `refresh` first)."""
    return c.legs.queue_id in ledgers[c.node].entered


def all_bridged(callers: Sequence[Placed], ledgers: Mapping[str, Ledger]) -> bool:
    """Whether every caller's queue leg entered a bridge (refreshes the ledgers)."""
    refresh(ledgers)
    return all(is_bridged(c, ledgers) for c in callers)


def all_legs_ended(ledgers: Mapping[str, Ledger]) -> bool:
    """Whether every agent leg seen so far was destroyed (refreshes the ledgers)."""
    refresh(ledgers)
    return all(ch in led.gone for led in ledgers.values() for ch in led.legs)


class Driver:
    """A background task acting on the observed events every 50 ms (ARI errors other than 404 kept)."""

    def __init__(self, ledgers: Mapping[str, Ledger]) -> None:
        self.ledgers = ledgers
        self.errors: list[str] = []
        self._tasks: set[asyncio.Task[None]] = set()

    def step(self) -> None:
        """One round of reactions (the ledgers were just refreshed)."""
        raise NotImplementedError

    async def run(self) -> None:
        """Until cancelled."""
        while True:
            refresh(self.ledgers)
            self.step()
            await asyncio.sleep(0.05)

    def ari(self, obs: AriObserver, method: str, path: str) -> None:
        """Fire one ARI request (in the background)."""
        async def call() -> None:
            try:
                await obs.ari(method, path)
            except AriHttpError as e:
                # 404: the channel or playback is gone already. 500 "Could not stop playback": Asterisk
                # could not queue the stop to the channel, which is leaving (hung up, or moved into
                # its bridge by clusterq at that moment): the prompt ends with it. Seen once in a
                # clean-clone run of 2,000 callers.
                gone = e.status == 404 or (e.status == 500 and "Could not stop playback" in str(e))
                if not gone:
                    self.errors.append(f"{method} {path}: {e}")

        task = asyncio.ensure_future(call())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


class Talk(Driver):
    """Plays the agents' talk: an agent leg is hung up `talk(leg)` seconds after the call was bridged
    at both ends (the observer itself only rings and answers: behaviour "answer")."""

    def __init__(self, ledgers: Mapping[str, Ledger], callers: list[Placed],
                 talk: Callable[[AgentLegSeen], float]) -> None:
        super().__init__(ledgers)
        self.callers, self.talk = callers, talk
        self._bridged: set[str] = set()  # caller numbers
        self._scheduled: set[str] = set()  # agent leg channels
        self._due: list[tuple[float, str, str]] = []  # (when, channel, node)

    def step(self) -> None:
        """Schedule the hang-up of legs whose caller is bridged; carry out the due ones."""
        now = time.monotonic()
        for c in self.callers:
            if c.number not in self._bridged and is_bridged(c, self.ledgers):
                self._bridged.add(c.number)
        for led in self.ledgers.values():
            for ch, leg in led.legs.items():
                # Both ends connected: the caller is bridged, and so is the agent leg's ;1 half (with the
                # caller, or on a cross-node call with the trunk leg towards the caller's node).
                if (ch not in self._scheduled and leg.number in self._bridged and ch not in led.gone
                        and ch.removesuffix(";2") in led.entered):
                    self._scheduled.add(ch)
                    heapq.heappush(self._due, (now + self.talk(leg), ch, led.node))
        while self._due and self._due[0][0] <= now:
            _, ch, node = heapq.heappop(self._due)
            self.ari(self.ledgers[node].obs, "DELETE", f"/channels/{ch}")


class CutPrompts(Driver):
    """Stops every playback as soon as it started (load bound of the 2,000-caller test, see there)."""

    def __init__(self, ledgers: Mapping[str, Ledger]) -> None:
        super().__init__(ledgers)
        self._done = dict.fromkeys(ledgers, 0)

    def step(self) -> None:
        """DELETE /playbacks/<id> for every playback started since the last step."""
        for node, led in self.ledgers.items():
            for playback in led.playbacks[self._done[node]:]:
                self.ari(led.obs, "DELETE", f"/playbacks/{playback}")
            self._done[node] = len(led.playbacks)


@contextlib.asynccontextmanager
async def running(*drivers: Driver) -> AsyncIterator[None]:
    """Run drivers in the background for the block; a driver's crash or ARI error fails the test."""
    tasks = [asyncio.ensure_future(d.run()) for d in drivers]
    try:
        yield
    finally:
        for task in tasks:
            task.cancel()
        results = await asyncio.gather(*tasks, return_exceptions=True)
    crashed = [r for r in results if isinstance(r, BaseException) and not isinstance(r, asyncio.CancelledError)]
    assert not crashed, crashed
    for d in drivers:
        assert not d.errors, d.errors[:10]


async def wait_until(cond: Callable[[], bool], timeout: float, what: str,
                     detail: Callable[[], str] = lambda: "", step: float = 0.1) -> None:
    """Poll `cond()` until it is true; on time-out fail with `what` and `detail()`."""
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}; {detail()}")
        await asyncio.sleep(step)


def unbridged(callers: Sequence[Placed], ledgers: Mapping[str, Ledger]) -> str:
    """Callers never bridged, with every agent leg offered for them (for failure messages)."""
    lines = []
    for c in callers:
        if not is_bridged(c, ledgers):
            legs = [f"{leg.channel}({leg.agent},{'up' if leg.channel in led.up else 'not up'},"
                    f"{'gone' if leg.channel in led.gone else 'alive'})"
                    for led in ledgers.values() for leg in led.legs.values() if leg.number == c.number]
            gone = " (hung up)" if c.legs.queue_id in ledgers[c.node].gone else ""
            lines.append(f"{c.number}@{c.node}#{c.index}{gone}: {legs}")
    return f"{len(lines)} never bridged: " + "; ".join(lines[:20])


async def originate(led: Ledger, index: int, number: str, args: str, wait_seq: bool, timeout: float) -> Placed:
    """Dial one caller on `led`'s node; returns once clusterq answered it (its ;1 entered the observer
    app: clusterq answers ;2 and reports the join in the same step) and, with `wait_seq`, once the
    leader sequenced it (CLUSTERQ_SEQ set on ;2)."""
    mark = led.obs.mark()
    priority = int(args.split("priority=")[1]) if "priority=" in args else 0
    legs = await led.obs.originate_caller(args, caller_number=number, caller_name=f"C{index}")
    await led.obs.wait_for_type("StasisStart", legs.phone_id, timeout=timeout, since=mark)
    if wait_seq:
        await led.obs.wait_for(lambda e: e.type == "ChannelVarset" and e.channel_id == legs.queue_id
                               and e.raw.get("variable") == SEQ_VAR, timeout=timeout, since=mark)
    return Placed(index, led.node, number, priority, legs)


async def originate_in_order(ledgers: Mapping[str, Ledger], plan: Sequence[tuple[str, str, int]],
                             start_index: int = 0, timeout: float = 20.0) -> list[Placed]:
    """Originate callers (node, number, priority) one at a time, each sequenced before the next."""
    out: list[Placed] = []
    for i, (node, number, priority) in enumerate(plan, start_index):
        args = "support" if priority == 0 else f"support,priority={priority}"
        out.append(await originate(ledgers[node], i, number, args, wait_seq=True, timeout=timeout))
    return out


def caller_plan(count: int, nodes: Sequence[str], first_number: int, priority_every: int) -> list[tuple[str, str, int]]:
    """(node, number, priority): alternate nodes, every `priority_every`-th caller has priority 5."""
    return [(nodes[i % len(nodes)], str(first_number + i), 5 if (i + 1) % priority_every == 0 else 0)
            for i in range(count)]




def short_talk(i: int) -> float:
    """Talk time of agent i: 0.2-0.5 s."""
    return 0.2 + 0.3 * (i % 4) / 3


def answer_quickly(ledgers: Mapping[str, Ledger], homes: Mapping[str, str]) -> None:
    """Every agent rings 0.05-0.2 s and answers."""
    for i, agent in enumerate(AGENTS):
        ledgers[homes[agent]].obs.set_agent_behaviour(agent, "answer", delay=0.05 + 0.15 * (i % 3) / 2)


async def two_node_cluster(clusterq: Clusterq, asterisk_factory: object, observers: object, coordinators: int = 1,
                           settle_time: float = 0.5) -> tuple[AsteriskNode, AsteriskNode, dict[str, Ledger]]:
    """Asterisk nodes a and b with a ledger each, `coordinators` replicas (one leads) and both stasis apps."""
    a, b = await asterisk_factory(["a", "b"])  # type: ignore[operator]
    ledgers = {n.name: Ledger(await observers(n)) for n in (a, b)}  # type: ignore[operator]
    await clusterq.start_coordinators(coordinators, settle_time=settle_time)
    await clusterq.start_stasis([a, b])
    return a, b, ledgers

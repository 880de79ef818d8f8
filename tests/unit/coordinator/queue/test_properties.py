"""Random event sequences checked against a small, separately written reference model.

The reference tracks callers, agents and pending offers only from the events it sends and the
decisions it receives, and checks after every step:
- an Offer goes to a free, eligible agent and to that agent's best waiting caller
  (key: -(queue weight + membership weight), -priority, arrival_seq), never to a caller already ringing
  (except several offers in the same ringall batch);
- no agent has two pending offers or is offered while in a call or while its device is in use
  (unless the queue has ringinuse), nor ever while its device is unavailable or invalid; device
  reports are per node, and the WatchDevices decisions keep each node watching exactly the devices
  of the agents homed there;
- no caller is connected twice;
- work conservation: after a step no free agent and eligible waiting caller are left unmatched;
- positions reported by the engine equal the reference rank order;
- every joined caller ends exactly once (connected then ended, exited, or left): counts are conserved.
"""

from __future__ import annotations

import random

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from coordinator.queue import (
    AgentConfig,
    AgentLoggedIn,
    AgentLoggedOut,
    AgentPaused,
    AgentStateChanged,
    AgentUnpaused,
    CallEnded,
    CallerExit,
    CallerJoined,
    CallerLeft,
    CallerStatus,
    CancelOffer,
    Connect,
    Decision,
    DeviceStateChanged,
    Event,
    JoinAccepted,
    JoinRejected,
    Membership,
    NodeAlive,
    NodeAttached,
    NodeDetached,
    NodeLost,
    Offer,
    OfferAnswered,
    OfferFailed,
    QueueConfig,
    QueueDefined,
    QueueEngine,
    Requirement,
    Strategy,
    Tick,
    WatchDevices,
)
from tests.unit.coordinator.queue.reference_model import (
    AGENT_IDS,
    DEVICE_STATE_DRAWS,
    DEVICES,
    DOWN,
    IN_USE,
    MEMBERSHIPS,
    NODES,
    QUEUES,
    REQUIREMENTS,
    SKILL_SETS,
    STATE_INTERFACES,
    RAgent,
    RCaller,
    device,
    skilled,
)


class EngineVsReference(RuleBasedStateMachine):
    """Drives QueueEngine with random events and replays its decisions on the reference."""

    force_strategy: Strategy | None = None

    def __init__(self) -> None:
        super().__init__()
        self.engine = QueueEngine(random.Random(0))
        self.now = 0.0
        self.qweight: dict[str, int] = {}
        self.wrapup = 0.0
        self.ringall = False
        self.ringinuse: dict[str, bool] = {}
        self.devstate: dict[tuple[str, str], str] = {}  # (node, device) -> last report, while some agent uses it
        self.watched: dict[str, set[str]] = {}  # node -> devices, as the WatchDevices decisions say
        self.callers: dict[str, RCaller] = {}
        self.agents: dict[str, RAgent] = {}
        self.pending: dict[str, tuple[str, str]] = {}  # offer -> (call, agent)
        self.lost: set[str] = set()
        self.detached: set[str] = set()  # streams down: nothing new offered there until alive or lost
        self.attaching: set[str] = set()  # NodeAttached, not yet alive: no dispatch at all meanwhile
        self.joined = 0
        self.outcomes: dict[str, str] = {}
        self.ever_connected: set[str] = set()
        self.next_call = 0

    @initialize(
        strategy=st.sampled_from(list(Strategy)),
        q2_weight=st.integers(0, 2),
        wrapup=st.sampled_from([0.0, 5.0]),
        autopause=st.sampled_from([0, 2]),
        seed=st.integers(0, 1000),
        ringinuse=st.sampled_from([(False, False), (False, False), (False, True), (True, True)]),
    )
    def setup(self, strategy: Strategy, q2_weight: int, wrapup: float, autopause: int, seed: int,
              ringinuse: tuple[bool, bool]) -> None:
        strategy = self.force_strategy or strategy
        self.engine = QueueEngine(random.Random(seed), offer_id_prefix="e1-")
        self.wrapup, self.ringall = wrapup, strategy is Strategy.RINGALL
        for (name, weight), inuse in zip((("q1", 0), ("q2", q2_weight)), ringinuse, strict=True):
            cfg = QueueConfig(name, strategy=strategy, wrapup_time=wrapup, autopause_after=autopause, weight=weight,
                              ringinuse=inuse)
            self.qweight[name] = weight
            self.ringinuse[name] = inuse
            assert self.step(QueueDefined(cfg)) == []

    # ---------------------------------------------------------------- driver
    def step(self, event: Event) -> list[Decision]:
        self.before(event)
        out = self.engine.apply(event, self.now)
        self.batch: set[str] = set()
        for d in out:
            self.process(event, d)
        self.after(event)
        return out

    def before(self, event: Event) -> None:
        """Reference effects of the event itself (those the engine does not announce)."""
        if isinstance(event, CallerLeft):
            c = self.callers.pop(event.call_id)
            if c.state == "connected":
                self.finish_call(c)
            else:
                self.set_outcome(c.call_id, "left")
        elif isinstance(event, OfferFailed):
            self.drop(event.offer_id)
        elif isinstance(event, CallEnded):
            self.finish_call(self.callers.pop(event.call_id))
        elif isinstance(event, AgentLoggedIn):
            old = self.agents.get(event.agent.agent_id)
            if old is None:
                # Logging in again mid-call (after a logout): still talking, so still busy.
                talking = {c.call_id for c in self.callers.values()
                           if c.state == "connected" and c.agent == event.agent.agent_id}
                self.agents[event.agent.agent_id] = RAgent(event.agent, calls=talking)
            else:
                old.cfg = event.agent
        elif isinstance(event, AgentLoggedOut):
            del self.agents[event.agent_id]
        elif isinstance(event, AgentPaused):
            self.agents[event.agent_id].paused = True
        elif isinstance(event, AgentUnpaused):
            self.agents[event.agent_id].paused = False
        elif isinstance(event, NodeDetached):
            self.attaching.discard(event.node_id)
            if event.node_id not in self.lost:
                self.detached.add(event.node_id)
        elif isinstance(event, NodeLost):
            self.attaching.discard(event.node_id)
            self.lost.add(event.node_id)
            self.detached.discard(event.node_id)
            for c in list(self.callers.values()):
                if c.state == "connected" and c.node == event.node_id:
                    self.finish_call(self.callers.pop(c.call_id))
        elif isinstance(event, NodeAttached):  # back, its re-report follows: not lost, still detached
            self.lost.discard(event.node_id)
            self.detached.add(event.node_id)
            self.attaching.add(event.node_id)
        elif isinstance(event, NodeAlive):
            self.lost.discard(event.node_id)
            self.detached.discard(event.node_id)
            self.attaching.discard(event.node_id)
        elif isinstance(event, DeviceStateChanged):
            # Only devices some agent homed on that node uses are known (the others are not watched).
            if any(a.cfg.home_node == event.node_id and device(a.cfg) == event.device for a in self.agents.values()):
                self.devstate[(event.node_id, event.device)] = event.state
        used = {(a.cfg.home_node, device(a.cfg)) for a in self.agents.values()}
        for key in [k for k in self.devstate if k not in used]:
            del self.devstate[key]  # nobody uses it any more: forgotten (UNKNOWN if used again)

    def finish_call(self, c: RCaller) -> None:
        self.set_outcome(c.call_id, "ended")
        agent = self.agents.get(c.agent)
        if agent is not None and c.call_id in agent.calls:
            agent.calls.discard(c.call_id)
            agent.wrapup_until = max(agent.wrapup_until, self.now + self.wrapup)

    def set_outcome(self, call_id: str, outcome: str) -> None:
        assert call_id not in self.outcomes, f"{call_id} ended twice"
        self.outcomes[call_id] = outcome

    def drop(self, offer_id: str) -> None:
        call_id, agent_id = self.pending.pop(offer_id)
        agent = self.agents.get(agent_id)
        if agent is not None and agent.offer == offer_id:
            agent.offer = None
        c = self.callers.get(call_id)
        if c is not None:
            c.offers.discard(offer_id)
            if c.state == "ringing" and not c.offers:
                c.state = "waiting"

    # ------------------------------------------------------------- decisions
    def key_for(self, agent: RAgent, c: RCaller) -> tuple[int, int, int]:
        weight = next(m.weight for m in agent.cfg.memberships if m.queue == c.queue)
        return (-(self.qweight[c.queue] + weight), -c.priority, c.seq)

    def device_state(self, agent: RAgent) -> str:
        return self.devstate.get((agent.cfg.home_node, device(agent.cfg)), "UNKNOWN")

    def free(self, agent: RAgent, queue: str) -> bool:
        """The agent may be offered a caller of `queue` (in a call or its device in use: only with
        ringinuse; its device unavailable or invalid: never)."""
        state = self.device_state(agent)
        return (
            not agent.paused
            and agent.cfg.home_node not in self.lost
            and agent.cfg.home_node not in self.detached
            and agent.offer is None
            and state not in DOWN
            and (not (agent.calls or state in IN_USE) or self.ringinuse[queue])
            and self.now >= agent.wrapup_until
        )

    def may_take(self, agent: RAgent, c: RCaller) -> bool:
        return (
            c.state == "waiting"
            and c.node not in self.lost
            and c.node not in self.detached
            and any(m.queue == c.queue for m in agent.cfg.memberships)
            and skilled(agent.cfg, c.reqs)
        )

    def rank(self, c: RCaller) -> int:
        return 1 + sum(
            1
            for o in self.callers.values()
            if o.queue == c.queue and o.state != "connected" and (-o.priority, o.seq) < (-c.priority, c.seq)
        )

    def process(self, event: Event, d: Decision) -> None:
        if isinstance(d, JoinAccepted):
            assert isinstance(event, CallerJoined) and d.call_id == event.call_id
            c = RCaller(event.call_id, event.queue, event.node_id, event.priority, d.arrival_seq, event.requirements)
            self.callers[c.call_id] = c
            self.joined += 1
            assert d.position == self.rank(c)
        elif isinstance(d, JoinRejected):
            assert isinstance(event, CallerJoined)
            assert d.status is CallerStatus.UNAVAILABLE and event.node_id in self.lost
        elif isinstance(d, Offer):
            self.check_offer(d)
        elif isinstance(d, Connect):
            assert isinstance(event, OfferAnswered) and event.offer_id == d.offer_id
            c = self.callers[d.call_id]
            assert c.state == "ringing" and d.call_id not in self.ever_connected
            self.ever_connected.add(d.call_id)
            self.pending.pop(d.offer_id)
            c.offers.discard(d.offer_id)
            c.state, c.agent = "connected", d.agent_id
            agent = self.agents[d.agent_id]
            assert agent.offer == d.offer_id
            agent.offer = None
            agent.calls.add(d.call_id)
        elif isinstance(d, CancelOffer):
            assert self.pending[d.offer_id] == (d.call_id, d.agent_id)
            self.drop(d.offer_id)
        elif isinstance(d, CallerExit):
            if d.status is CallerStatus.CONTINUE:
                ended = self.callers.pop(d.call_id, None)
                if ended is not None:  # from NodeLost: the agent's node died
                    assert isinstance(event, NodeLost) and ended.state == "connected"
                    self.finish_call(ended)
                else:
                    assert isinstance(event, CallEnded) and event.agent_hung_up
            else:
                c = self.callers.pop(d.call_id)
                assert c.state != "connected" and not c.offers
                assert d.status is CallerStatus.NODE_LOST and c.node in self.lost
                self.set_outcome(d.call_id, "exited")
        elif isinstance(d, AgentStateChanged):
            if d.reason == "autopause":
                self.agents[d.agent_id].paused = True
        elif isinstance(d, WatchDevices):
            watched = self.watched.setdefault(d.node_id, set())
            if d.replace:
                assert isinstance(event, NodeAlive) and event.node_id == d.node_id and not d.unwatch
                watched.clear()
            else:
                assert isinstance(event, AgentLoggedIn | AgentLoggedOut)
                assert not watched & set(d.watch) and set(d.unwatch) <= watched, (d, watched)
            watched |= set(d.watch)
            watched -= set(d.unwatch)
        else:
            raise AssertionError(f"unexpected decision {d!r}")

    def check_offer(self, d: Offer) -> None:
        c = self.callers[d.call_id]
        agent = self.agents[d.agent_id]
        assert d.offer_id not in self.pending
        if c.state == "ringing":
            # Only ringall may ring one caller on several agents, and only in one batch.
            assert self.ringall and c.offers <= self.batch, (d, c)
        else:
            assert c.state == "waiting"
        assert self.free(agent, c.queue), (d, agent, self.device_state(agent))
        assert any(m.queue == c.queue for m in agent.cfg.memberships) and skilled(agent.cfg, c.reqs)
        best = min((self.key_for(agent, o) for o in self.callers.values()
                    if self.may_take(agent, o) and self.free(agent, o.queue)), default=None)
        if c.state == "waiting":
            assert best is not None and self.key_for(agent, c) == best, (d, best)
        else:
            assert best is None or self.key_for(agent, c) <= best, (d, best)
        self.pending[d.offer_id] = (d.call_id, d.agent_id)
        self.batch.add(d.offer_id)
        c.offers.add(d.offer_id)
        c.state = "ringing"
        agent.offer = d.offer_id

    def after(self, event: Event) -> None:
        for offer_id, (call_id, agent_id) in self.pending.items():
            c = self.callers.get(call_id)
            assert c is not None and c.state == "ringing" and offer_id in c.offers
            assert agent_id in self.agents and self.agents[agent_id].offer == offer_id
        for c in self.callers.values():
            assert c.node not in self.lost or c.state == "connected"
            assert (c.state == "ringing") == bool(c.offers)
        # Work conservation: nothing free is left next to something it could take (unless a node's
        # re-report is being applied: the engine holds dispatch until its NodeAlive).
        for agent in self.agents.values() if not self.attaching else ():
            assert not any(self.may_take(agent, c) and self.free(agent, c.queue) for c in self.callers.values()), (
                event, agent, self.device_state(agent))
        for node in NODES:
            homed = {device(a.cfg) for a in self.agents.values() if a.cfg.home_node == node}
            assert self.watched.get(node, set()) == homed, (event, node)

    # ----------------------------------------------------------------- rules
    @rule(
        queue=st.sampled_from(QUEUES),
        node=st.sampled_from(NODES),
        priority=st.integers(0, 2),
        reqs=st.sampled_from(REQUIREMENTS),
    )
    def join(self, queue: str, node: str, priority: int, reqs: tuple[Requirement, ...]) -> None:
        self.next_call += 1
        self.step(CallerJoined(f"c{self.next_call}", queue, node, priority, requirements=reqs))

    @precondition(lambda self: bool(self.callers))
    @rule(data=st.data())
    def leave(self, data: st.DataObject) -> None:
        self.step(CallerLeft(data.draw(st.sampled_from(sorted(self.callers))), "hangup"))

    @precondition(lambda self: bool(self.pending))
    @rule(data=st.data())
    def answer(self, data: st.DataObject) -> None:
        out = self.step(OfferAnswered(data.draw(st.sampled_from(sorted(self.pending)))))
        assert isinstance(out[0], Connect)

    @precondition(lambda self: bool(self.pending))
    @rule(data=st.data(), reason=st.sampled_from(["noanswer", "busy", "unavailable", "failed"]))
    def fail(self, data: st.DataObject, reason: str) -> None:
        self.step(OfferFailed(data.draw(st.sampled_from(sorted(self.pending))), reason))

    @precondition(lambda self: any(c.state == "connected" for c in self.callers.values()))
    @rule(data=st.data(), agent_hung_up=st.booleans())
    def end(self, data: st.DataObject, agent_hung_up: bool) -> None:
        connected = sorted(c.call_id for c in self.callers.values() if c.state == "connected")
        self.step(CallEnded(data.draw(st.sampled_from(connected)), agent_hung_up))

    @rule(
        agent_id=st.sampled_from(AGENT_IDS),
        queues=st.sampled_from(MEMBERSHIPS),
        skills=st.sampled_from(SKILL_SETS),
        node=st.sampled_from(NODES),
        iface=st.sampled_from(STATE_INTERFACES),
    )
    def login(
        self, agent_id: str, queues: tuple[tuple[str, int], ...], skills: tuple[tuple[str, str], ...], node: str,
        iface: str,
    ) -> None:
        memberships = tuple(Membership(q, 0, w) for q, w in queues)
        self.step(AgentLoggedIn(AgentConfig(agent_id, f"PJSIP/{agent_id}", node, memberships, skills,
                                            state_interface=iface)))

    @precondition(lambda self: bool(self.agents))
    @rule(data=st.data())
    def logout(self, data: st.DataObject) -> None:
        self.step(AgentLoggedOut(data.draw(st.sampled_from(sorted(self.agents)))))

    @precondition(lambda self: bool(self.agents))
    @rule(data=st.data(), pause=st.booleans())
    def pause(self, data: st.DataObject, pause: bool) -> None:
        agent_id = data.draw(st.sampled_from(sorted(self.agents)))
        self.step(AgentPaused(agent_id, "break") if pause else AgentUnpaused(agent_id))

    @rule(node=st.sampled_from(NODES), kind=st.sampled_from(["alive", "lost", "detached", "attached"]))
    def node(self, node: str, kind: str) -> None:
        events = {"alive": NodeAlive, "lost": NodeLost, "detached": NodeDetached, "attached": NodeAttached}
        self.step(events[kind](node))

    @precondition(lambda self: bool(self.agents))
    @rule(data=st.data(), state=st.sampled_from(DEVICE_STATE_DRAWS))
    def agent_device(self, data: st.DataObject, state: str) -> None:
        """A report about a logged-in agent's device, on its home node."""
        agent = self.agents[data.draw(st.sampled_from(sorted(self.agents)))]
        self.step(DeviceStateChanged(agent.cfg.home_node, device(agent.cfg), state))

    @rule(node=st.sampled_from(NODES), dev=st.sampled_from(DEVICES), state=st.sampled_from(DEVICE_STATE_DRAWS))
    def any_device(self, node: str, dev: str, state: str) -> None:
        """A report about any device on any node (another node's device of the same name, or one no
        agent uses, changes nobody)."""
        self.step(DeviceStateChanged(node, dev, state))

    @rule(dt=st.sampled_from([0.5, 3.0, 16.0]))
    def tick(self, dt: float) -> None:
        self.now += dt
        self.step(Tick())

    @invariant()
    def engine_agrees(self) -> None:
        assert self.joined == len(self.callers) + len(self.outcomes)
        # The engine's tally of callers in lines: dispatch skips its pass when it says nobody waits.
        assert self.engine._st.lines.callers == sum(c.state != "connected" for c in self.callers.values())
        for c in self.callers.values():
            view = self.engine.caller(c.call_id)
            assert view is not None and view.state == c.state
            expected = None if c.state == "connected" else self.rank(c)
            assert view.position == expected
        for agent_view in self.engine.agent_states():
            assert agent_view.agent_id in self.agents
            agent = self.agents[agent_view.agent_id]
            assert agent_view.offer_id == agent.offer
            assert (agent_view.state_interface, agent_view.device_state) == (device(agent.cfg), self.device_state(agent))


class RingallVsReference(EngineVsReference):
    """The same checks with ringall only: several legs per caller, first answer wins."""

    force_strategy = Strategy.RINGALL


_SETTINGS = settings(
    max_examples=150, stateful_step_count=40, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
EngineVsReference.TestCase.settings = _SETTINGS
RingallVsReference.TestCase.settings = _SETTINGS
TestEngineVsReference = EngineVsReference.TestCase
TestRingallVsReference = RingallVsReference.TestCase

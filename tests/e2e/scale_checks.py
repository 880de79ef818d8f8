"""Checks of the scale tests over what Asterisk observed (the `Ledger`s of tests/e2e/scale.py).

Arrival order is the origination order, offer order is the stamp (epoch, n) of each agent leg; see the
module docstring of scale.py for why both can be read from the observers alone.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence

from clusterq_common.channel_names import agent_leg_id, trunk_leg_id
from tests.e2e.scale import SEQ_VAR, Ledger, Placed, Stamp, refresh


def seq_of(c: Placed, ledgers: Mapping[str, Ledger]) -> int:
    """The leader's arrival sequence of a caller, from its ChannelVarset (0 if never set)."""
    return int(ledgers[c.node].varsets.get((c.legs.queue_id, SEQ_VAR), "0"))


def assert_sequenced_in_order(callers: Sequence[Placed], ledgers: Mapping[str, Ledger]) -> None:
    """The leader's arrival sequences grow in origination order (validates the order definition)."""
    seqs = [seq_of(c, ledgers) for c in callers]
    assert all(s > 0 for s in seqs), "a caller was never sequenced"
    assert all(x < y for x, y in itertools.pairwise(seqs)), seqs


def partner_offer(c: Placed, led: Ledger) -> str:
    """The offer whose leg the caller was bridged with: the agent leg <node>-ag-<offer> on the caller's
    node, or the trunk leg that the agent's node dialled as cq-<offer>; "" if not bridged."""
    bridges = led.entered.get(c.legs.queue_id, [])
    others = led.members[bridges[0]] - {c.legs.queue_id} if bridges else set()
    if len(others) != 1:
        return ""
    partner = others.pop()
    if partner.startswith(f"{c.node}-ag-"):
        return partner.removeprefix(f"{c.node}-ag-").removesuffix("_")
    return led.exten.get(partner, "").removeprefix("cq-")


def assert_each_caller_bridged_once(callers: Sequence[Placed], ledgers: Mapping[str, Ledger]) -> None:
    """Every caller entered exactly one bridge, once, with exactly one agent's leg for its own number:
    the agent leg itself (agent on the caller's node) or the trunk leg from the agent's node, which
    bridged the agent leg with its trunk leg <agent node>-tr-<offer>."""
    legs_by_offer = {leg.offer: leg for led in ledgers.values() for leg in led.legs.values()}
    connected: dict[str, str] = {}  # offer -> caller number
    for c in callers:
        led = ledgers[c.node]
        bridges = led.entered.get(c.legs.queue_id, [])
        assert len(bridges) == 1, f"caller {c.number} on {c.node} entered bridges {bridges}"
        offer = partner_offer(c, led)
        leg = legs_by_offer.get(offer)
        assert leg is not None, f"caller {c.number}: bridge {bridges[0]} held {led.members[bridges[0]]}"
        assert leg.number == c.number, f"offer {offer} rang {leg.agent} for {leg.number}, bridged {c.number}"
        if leg.node != c.node:
            agent_side = ledgers[leg.node]
            ag = agent_leg_id(leg.node, offer)
            [bridge] = agent_side.entered.get(ag, ["<none>"])
            assert agent_side.members.get(bridge) == {ag, trunk_leg_id(leg.node, offer)}, (
                f"agent leg {ag} not bridged with its trunk leg: {agent_side.members.get(bridge)}")
        assert offer not in connected, f"offer {offer} connected twice"
        connected[offer] = c.number
    # No agent leg was bridged without its caller, and none twice.
    agent_bridged = [(led.node, ch, len(bridges)) for led in ledgers.values()
                     for ch, bridges in led.entered.items() if "-ag-" in ch]
    assert all(n == 1 for _, _, n in agent_bridged), [x for x in agent_bridged if x[2] != 1]
    assert sorted(ch for _, ch, _ in agent_bridged) == sorted(
        agent_leg_id(legs_by_offer[o].node, o) for o in connected), "agent legs bridged without a caller"


def assert_no_agent_in_two_calls(ledgers: Mapping[str, Ledger]) -> None:
    """Per agent, its legs (all on its home node, so in one observer's order) never overlap."""
    for led in ledgers.values():
        live: dict[str, str] = {}  # agent -> its live leg
        for agent, ch in led.timeline:
            if agent:
                assert agent not in live, f"{agent} had two legs at once: {live[agent]} and {ch}"
                live[agent] = ch
            else:
                live = {a: other for a, other in live.items() if other != ch}


def first_offers(callers: Sequence[Placed], ledgers: Mapping[str, Ledger]) -> dict[str, Stamp]:
    """Caller number -> stamp of the first offer made for it (every leg must carry a known number)."""
    numbers = {c.number for c in callers}
    first: dict[str, Stamp] = {}
    for led in ledgers.values():
        for leg in led.legs.values():
            assert leg.number in numbers, f"agent leg {leg.channel} carries unknown number {leg.number!r}"
            if leg.number not in first or leg.stamp < first[leg.number]:
                first[leg.number] = leg.stamp
    missing = numbers - set(first)
    assert not missing, f"never offered: {sorted(missing)[:10]}"
    return first


def rank_violations(callers: Sequence[Placed], first: Mapping[str, Stamp]) -> tuple[list[str], int]:
    """Offers must follow (priority, then arrival) among callers known to be waiting together.

    Caller k's first offer was made after caller i joined whenever it is not earlier than U(i), the
    first offer of any caller that joined at or after i (callers join one at a time, an offer follows
    its caller's join). If i ranks above k and k's first offer came after i joined, i was waiting (or
    already offered) then, so i's first offer must come first. Returns the violations and how many
    such provable pairs had a priority caller overtake an earlier one.
    """
    stamps = [first[c.number] for c in callers]
    suffix_min = list(stamps)
    for i in range(len(stamps) - 2, -1, -1):
        suffix_min[i] = min(stamps[i], suffix_min[i + 1])
    bad: list[str] = []
    overtakes = 0
    for i, ci in enumerate(callers):
        for k, ck in enumerate(callers):
            if (-ci.priority, i) >= (-ck.priority, k) or stamps[k] < suffix_min[i]:
                continue
            if stamps[i] > stamps[k]:
                bad.append(f"{ck.number} (prio {ck.priority}, #{k}, offer {stamps[k]}) before "
                           f"{ci.number} (prio {ci.priority}, #{i}, offer {stamps[i]})")
            elif k < i:
                overtakes += 1
    return bad, overtakes


def check_calls(callers: Sequence[Placed], ledgers: Mapping[str, Ledger]) -> tuple[dict[str, Stamp], int]:
    """The common assertions: sequenced in order, each caller bridged once, no agent in two calls,
    offers in (priority, arrival) order. Returns the first offers and the provable overtakes."""
    refresh(ledgers)
    for led in ledgers.values():
        assert not led.obs.errors, led.obs.errors
    assert_sequenced_in_order(callers, ledgers)
    assert_each_caller_bridged_once(callers, ledgers)
    assert_no_agent_in_two_calls(ledgers)
    first = first_offers(callers, ledgers)
    bad, overtakes = rank_violations(callers, first)
    assert not bad, f"{len(bad)} order violations: {bad[:10]}"
    return first, overtakes


def cross_node_calls(callers: Sequence[Placed], ledgers: Mapping[str, Ledger]) -> int:
    """How many callers were served by an agent homed on the other node."""
    home = {leg.offer: leg.node for led in ledgers.values() for leg in led.legs.values()}
    return sum(1 for c in callers if home.get(partner_offer(c, ledgers[c.node]), c.node) != c.node)

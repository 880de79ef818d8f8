"""From the observer's ARI events to connections, free-to-bridged latencies and order inversions (pure).

Times are Asterisk's own event timestamps (millisecond resolution, one clock), so the observer's
processing delay does not count. For one bench agent (Local/<agent>@clusterq-agents-bench-<id>;1/;2):

* the agent leg is the ;1 half (clusterq's originated leg, app_queue's dialled member);
* a connection: a ChannelEnteredBridge whose bridge then holds 2 channels, the agent leg and a caller;
* the agent is free again at the first end sign of either half of that call's Local pair
  (ChannelHangupRequest, ChannelLeftBridge, StasisEnd, ChannelDestroyed);
* free-to-bridged: from that moment to the agent's next connection; free-to-rung: to the creation of
  the next agent leg that got connected. A leg created before the previous call ended is a
  ringinuse violation.

An order inversion: a caller connected before a caller that joined earlier (each such caller counts
once; `pairs` counts every (earlier, later) pair served in the wrong order); two callers whose entries
into the queue application carry the same Asterisk timestamp are a tie. The same count by the
moment the agent leg was created (the assignment) separates queue order from answer jitter.
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

__all__ = ["Connection", "Inversions", "Latencies", "connections", "inversions", "latencies", "offer_sequence",
           "percentile", "timestamp"]

_AGENT_LEG = re.compile(r"^Local/(?P<agent>[^@]+)@clusterq-agents-bench-(?P<uid>[0-9a-f]+);(?P<half>[12])$")
_OFFER_SEQ = re.compile(r"-ag-.*?(\d+)_?$")  # clusterq agent legs: <node>-ag-<offer id>_, ids e<epoch>-<n>
_END_TYPES = frozenset({"ChannelHangupRequest", "ChannelLeftBridge", "StasisEnd", "ChannelDestroyed"})


def timestamp(raw: Mapping[str, Any]) -> float:
    """An ARI event's own timestamp ("2026-11-26T12:59:57.468+0000") as POSIX seconds."""
    return datetime.strptime(str(raw["timestamp"]), "%Y-%m-%dT%H:%M:%S.%f%z").timestamp()


@dataclass(frozen=True)
class Connection:
    """One caller connected with one agent."""

    agent: str
    caller_index: int
    leg_id: str
    leg_created: float
    bridged: float
    agent_free: float | None  # when this call ended for the agent (None: not seen)


@dataclass
class _Pair:
    agent: str
    created: float | None = None
    ended: float | None = None
    leg_id: str = ""


def connections(events: Iterable[Mapping[str, Any]], caller_index: Mapping[str, int]) -> list[Connection]:
    """Connections in the events; `caller_index` maps a caller's ;2 channel id to its join order."""
    pairs: dict[str, _Pair] = {}
    pair_of: dict[str, str] = {}  # channel id -> pair key, for agent halves
    bridged: dict[str, tuple[float, int]] = {}  # pair key -> (time, caller index), first connection only
    for raw in events:
        ch = raw.get("channel")
        if not isinstance(ch, dict):
            continue
        cid, kind = str(ch.get("id", "")), str(raw.get("type", ""))
        m = _AGENT_LEG.match(str(ch.get("name", "")))
        if m is not None and cid not in pair_of:
            key = f"{m['agent']}@{m['uid']}"
            pair_of[cid] = key
            pair = pairs.setdefault(key, _Pair(m["agent"]))
            if m["half"] == "1":
                pair.leg_id = cid
        key = pair_of.get(cid, "")
        if key:
            pair = pairs[key]
            if kind == "ChannelCreated" and cid == pair.leg_id:
                pair.created = timestamp(raw)
            elif kind in _END_TYPES:
                t = timestamp(raw)
                pair.ended = t if pair.ended is None else min(pair.ended, t)
        if kind != "ChannelEnteredBridge":
            continue
        members = [str(x) for x in raw.get("bridge", {}).get("channels", ())]
        if len(members) != 2:
            continue
        legs = [pair_of[x] for x in members if x in pair_of and pairs[pair_of[x]].leg_id == x]
        callers = [caller_index[x] for x in members if x in caller_index]
        if len(legs) == 1 and len(callers) == 1 and legs[0] not in bridged:
            bridged[legs[0]] = (timestamp(raw), callers[0])
    out = []
    for key, (t, idx) in bridged.items():
        pair = pairs[key]
        created = pair.created if pair.created is not None else t
        out.append(Connection(pair.agent, idx, pair.leg_id, created, t, pair.ended))
    return sorted(out, key=lambda c: c.bridged)


def offer_sequence(leg_id: str) -> int | None:
    """The leader's offer counter in a clusterq agent leg id ("a-ag-e2-17_" -> 17): its decision order."""
    m = _OFFER_SEQ.search(leg_id)
    return int(m[1]) if m else None


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100); NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


@dataclass(frozen=True)
class Latencies:
    """Per-connection delays after the agent became free, in milliseconds."""

    free_to_bridged: tuple[float, ...]
    free_to_rung: tuple[float, ...]
    ringinuse_violations: int  # next leg created before the previous call ended

    def p(self, q: float) -> float:
        """Percentile q of free-to-bridged."""
        return percentile(self.free_to_bridged, q)

    def rung_p(self, q: float) -> float:
        """Percentile q of free-to-rung."""
        return percentile(self.free_to_rung, q)


def latencies(conns: Sequence[Connection]) -> Latencies:
    """Free-to-bridged for every connection that followed an earlier call of the same agent."""
    by_agent: dict[str, list[Connection]] = {}
    for c in conns:
        by_agent.setdefault(c.agent, []).append(c)
    bridged: list[float] = []
    rung: list[float] = []
    violations = 0
    for calls in by_agent.values():
        calls.sort(key=lambda c: c.bridged)
        for prev, cur in itertools.pairwise(calls):
            if prev.agent_free is None:
                continue
            if cur.leg_created < prev.agent_free:
                violations += 1
                continue
            bridged.append(round((cur.bridged - prev.agent_free) * 1000, 3))  # ms timestamps: no float noise
            rung.append(round((cur.leg_created - prev.agent_free) * 1000, 3))
    return Latencies(tuple(bridged), tuple(rung), violations)


@dataclass(frozen=True)
class Inversions:
    """Callers served before an earlier-joined caller."""

    callers: int
    pairs: int


def inversions(served: Sequence[tuple[float, int]], unserved: Iterable[int] = (),
               joined: Sequence[float] | None = None) -> Inversions:
    """Inversions among (time served, join index); `unserved` callers count as served after everyone
    (a caller skipped for good is the worst inversion); equal times never count. With `joined` (the
    join timestamps by join index), callers that joined within the same Asterisk millisecond are a
    tie too: their entries run on separate channel threads, and the order in which two apps' events
    about them are published (the observer's ChannelDialplan, the queue's own StasisStart) can differ,
    so no queue can know which of them came first."""
    order = sorted([*served, *((math.inf, idx) for idx in unserved)])
    callers = pairs = 0
    for i, (t, idx) in enumerate(order):
        later = [j for (u, j) in order[i + 1:]
                 if u > t and j < idx and (joined is None or joined[j] < joined[idx])]
        pairs += len(later)
        callers += bool(later)
    return Inversions(callers, pairs)

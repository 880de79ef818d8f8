"""The Prometheus exposition of a replica: what a follower and a leader export, the text format 0.0.4
(checked by a strict parser of the format's grammar), label escaping, and the cost for 1,000 queues."""

from __future__ import annotations

import math
import time

import pytest

from clusterq_testing.exposition import parse, value
from coordinator.metrics import (
    LeaderFigures,
    QueueFigures,
    ReplicaFigures,
    collect,
    render,
)
from coordinator.queue import (
    AgentConfig,
    AgentLoggedIn,
    AgentPaused,
    CallerJoined,
    CallerLeft,
    Membership,
    Offer,
    OfferAnswered,
    QueueConfig,
    QueueDefined,
    QueueEngine,
    QueueStats,
)
from coordinator.runtime import LeaderRuntime, SeqAllocator


async def _reserve(upto: int) -> None:
    return None


def _runtime(clock: list[float], epoch: int = 42) -> LeaderRuntime:
    return LeaderRuntime(QueueEngine(), epoch, lambda: clock[0], SeqAllocator(1, 10**9, 10**5, _reserve), node_ttl=6.0)


def _stats(queue: str, **kw: float) -> QueueStats:
    fields: dict[str, float] = dict.fromkeys(QueueStats.__dataclass_fields__, 0)
    del fields["queue"]
    fields.update(kw)
    return QueueStats(queue, **fields)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------- a follower
def test_a_follower_exports_only_that_it_does_not_lead_and_its_version() -> None:
    families = parse(render(collect(None, "1.2.3")))
    assert set(families) == {"clusterq_leader", "clusterq_build_info"}
    assert value(families, "clusterq_leader") == 0
    assert families["clusterq_build_info"].samples == {(("version", "1.2.3"),): 1.0}
    assert families["clusterq_leader"].kind == "gauge"


def test_without_a_version_there_is_no_build_info() -> None:
    assert set(parse(render(collect(None, None)))) == {"clusterq_leader"}


async def test_a_closed_runtime_is_a_term_that_ended_a_follower_exports() -> None:
    rt = _runtime([0.0])
    rt.apply(QueueDefined(QueueConfig("support")))
    rt.close()
    assert collect(rt, None) == ReplicaFigures(None, None)


# ---------------------------------------------------------------------------------- the leader
async def test_the_leader_exports_its_term_its_runtime_counters_and_every_queue() -> None:
    clock = [1000.0]
    rt = _runtime(clock, epoch=42)
    rt.apply(QueueDefined(QueueConfig("support", service_level=30.0)))
    rt.apply(QueueDefined(QueueConfig("sales")))
    rt.attach("a", "ia")
    rt.apply(AgentLoggedIn(AgentConfig("alice", "PJSIP/alice", "a", (Membership("support"),))))
    rt.apply(AgentLoggedIn(AgentConfig("bob", "PJSIP/bob", "a", (Membership("support"), Membership("sales")))))
    rt.apply(AgentPaused("bob", "lunch"))
    [offer] = [d for d in rt.apply(CallerJoined("c1", "support", "a")) if isinstance(d, Offer)]
    clock[0] += 10.0
    rt.apply(OfferAnswered(offer.offer_id))  # answered after 10 s: within 30 s
    rt.apply(CallerJoined("c2", "support", "a"))  # nobody free: waits
    clock[0] += 50.0
    rt.apply(CallerLeft("c2", "hangup"))  # abandoned after 50 s: not within 30 s
    rt.apply(CallerJoined("c3", "support", "a"))
    clock[0] += 7.5

    families = parse(render(collect(rt, "0.1.0")))
    assert value(families, "clusterq_leader") == 1
    assert value(families, "clusterq_leader_epoch") == 42
    assert value(families, "clusterq_events_applied_total") == rt.events_applied == 12  # with NodeAttached, NodeAlive
    assert families["clusterq_events_applied_total"].kind == "counter"
    assert "leadership term" in families["clusterq_events_applied_total"].help
    assert value(families, "clusterq_decisions_sent_total") == rt.decisions_sent
    assert value(families, "clusterq_nodes_attached") == 1
    expected = {
        "clusterq_queue_callers_waiting": 1, "clusterq_queue_longest_wait_seconds": 7.5,
        "clusterq_queue_answered_total": 1, "clusterq_queue_abandoned_total": 1,
        "clusterq_queue_timed_out_total": 0, "clusterq_queue_service_level_ratio": 1.0,
        "clusterq_queue_service_level2_ratio": 0.5, "clusterq_queue_service_level_threshold_seconds": 30.0,
        "clusterq_queue_asa_seconds": 10.0, "clusterq_queue_holdtime_seconds": rt.engine.snapshot(clock[0])[1].holdtime_ewma,
        "clusterq_queue_agents_logged_in": 2, "clusterq_queue_agents_available": 0,
        "clusterq_queue_agents_paused": 1, "clusterq_queue_agents_busy": 1,
    }
    assert {name: value(families, name, "support") for name in expected} == expected
    assert [labels for labels in families["clusterq_queue_answered_total"].samples] == [
        (("queue", "sales"),), (("queue", "support"),)]
    # Nothing counted in sales yet: the ratios are unknown, not 0 % (which would fire `< 0.8` alerts).
    assert math.isnan(value(families, "clusterq_queue_service_level_ratio", "sales"))
    assert math.isnan(value(families, "clusterq_queue_service_level2_ratio", "sales"))
    assert value(families, "clusterq_queue_agents_paused", "sales") == 1
    for name in expected:
        assert families[name].kind == ("counter" if name.endswith("_total") else "gauge")
        assert name.endswith("_total") or "_total" not in name


async def test_a_leader_without_queues_exports_no_empty_queue_families() -> None:
    families = parse(render(collect(_runtime([0.0]), None)))
    assert set(families) == {"clusterq_leader", "clusterq_leader_epoch", "clusterq_events_applied_total",
                             "clusterq_decisions_sent_total", "clusterq_nodes_attached"}


# ---------------------------------------------------------------------------------- the format
@pytest.mark.parametrize("name", ['say "hi"', "back\\slash", "two\nlines", 'all \\" \n\\n of them', "ünï"])
def test_label_values_are_escaped_and_read_back_unchanged(name: str) -> None:
    figures = ReplicaFigures('v"1\\', LeaderFigures(1, (QueueFigures(_stats(name, waiting=3), 60.0),), 0, 0, 0))
    families = parse(render(figures))
    assert value(families, "clusterq_queue_callers_waiting", name) == 3
    assert families["clusterq_build_info"].samples == {(("version", 'v"1\\'),): 1.0}


# ---------------------------------------------------------------------------------- many queues
async def test_a_thousand_queues_of_twenty_agents_are_all_exported() -> None:
    """Every queue's series, with the memberships counted (the cost is printed, for docs/benchmarks.md,
    not asserted: tests never pass or fail on timing)."""
    clock = [0.0]
    rt = _runtime(clock)
    names = [f"queue-{q:04d}" for q in range(1000)]
    for name in names:
        rt.apply(QueueDefined(QueueConfig(name)))
    # 20 agents, each a member of every queue: 20,000 memberships for the snapshot to count.
    for a in range(20):
        rt.apply(AgentLoggedIn(AgentConfig(f"agent-{a}", f"PJSIP/agent-{a}", "a",
                                           tuple(Membership(n) for n in names))))
    timings: list[tuple[float, float]] = []
    for _ in range(3):  # the best of three: a garbage collection of the test process is not the render's
        started = time.perf_counter()
        figures = collect(rt, "0.1.0")
        collected = time.perf_counter()
        text = render(figures)
        timings.append((collected - started, time.perf_counter() - collected))
    print("1,000 queues x 20 agents (collect, render):",
          ", ".join(f"{1e3 * c:.1f} + {1e3 * r:.1f} ms" for c, r in timings), f"for {len(text) / 1e6:.2f} MB")
    families = parse(text)
    assert len(families["clusterq_queue_agents_logged_in"].samples) == 1000
    assert value(families, "clusterq_queue_agents_logged_in", "queue-0999") == 20

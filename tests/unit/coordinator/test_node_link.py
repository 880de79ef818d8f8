"""NodeLink's backlog bound: a node that does not read gets its stream closed, not unbounded memory."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest

from coordinator import node_link
from coordinator.node_link import NodeLink
from coordinator.queue import QueueConfig, QueueDefined, QueueEngine
from coordinator.queue import decisions as d
from coordinator.runtime import LeaderRuntime, SeqAllocator


def _cancel(i: int) -> d.CancelOffer:
    return d.CancelOffer(f"o{i}", f"c{i}", "ag", "n1", "n1", "gone")


async def test_a_node_that_does_not_read_is_closed_and_its_backlog_dropped(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(node_link, "MAX_BATCH", 4)
    monkeypatch.setattr(node_link, "MAX_PENDING_MESSAGES", 2)
    link = NodeLink("n1", "i1", 7)
    with caplog.at_level(logging.WARNING, "coordinator.node_link"):
        for i in range(12):  # 2 full messages and a third one full: still within the bound
            link.push(_cancel(i))
        assert not link.closed and link.pending == 12
        link.push(_cancel(12))  # a third full message would wait: the node is too slow
    assert link.closed and link.pending == 0 and "reads too slowly" in link.close_reason
    assert "n1" in caplog.text and "reads too slowly" in caplog.text
    link.push(_cancel(13))
    assert link.pending == 0
    assert await asyncio.wait_for(link.next_message(), 1) is None  # the writer ends at once


async def test_a_reading_node_is_never_closed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(node_link, "MAX_BATCH", 4)
    monkeypatch.setattr(node_link, "MAX_PENDING_MESSAGES", 2)
    link = NodeLink("n1", "i1", 7)
    for i in range(100):
        link.push(_cancel(i))
        if i % 8 == 7:
            link.take_ready()
    assert not link.closed


async def _reserve(upto: int) -> None:
    return None


async def test_the_overflowed_node_is_detached_and_re_attaches(monkeypatch: pytest.MonkeyPatch) -> None:
    # What the servicer does once the writer ended: detach; the node then reconnects.
    monkeypatch.setattr(node_link, "MAX_BATCH", 2)
    monkeypatch.setattr(node_link, "MAX_PENDING_MESSAGES", 1)
    rt = LeaderRuntime(QueueEngine(), 7, time.monotonic, SeqAllocator(1, 1000, 1000, _reserve), 6.0)
    rt.apply(QueueDefined(QueueConfig("q")))
    link = rt.attach("n1", "i1")
    for i in range(5):
        link.push(_cancel(i))
    assert link.closed
    rt.detach(link)
    again = rt.attach("n1", "i1")
    assert rt.links["n1"] is again and not again.closed

"""A caller's own timeout= leaves nothing behind once the caller is gone (callers.py)."""

from __future__ import annotations

import asyncio

from clusterq_proto.v1 import common_pb2, node_pb2
from stasis_app.ari.fake import FakeAri
from tests.unit.stasis_app.harness import running


def _pending() -> set[asyncio.Task[object]]:
    return {t for t in asyncio.all_tasks() if not t.done()}


async def test_a_caller_that_leaves_or_hangs_up_before_its_timeout_keeps_no_task_or_timer() -> None:
    ari = FakeAri("a")
    async with running(ari) as n:
        before = _pending()
        leaving = await n.queued_caller(("support", "timeout=86400"))
        hanging_up = await n.queued_caller(("support", "timeout=86400"), position=2)
        await n.settle()
        callers = [n.app.callers[leaving], n.app.callers[hanging_up]]
        n.coord.decide(continue_in_dialplan=node_pb2.ContinueInDialplan(
            call_id=leaving, status=common_pb2.CALLER_STATUS_LEAVEEMPTY))
        ari.caller_hangs_up(hanging_up)
        await n.settle()
        assert not n.app.callers
        assert _pending() - before == set(), "nothing may wait a day for a call that ended"
        assert all(c.timeout_timer is None for c in callers)


async def test_the_timeout_still_fires_for_a_caller_that_waits() -> None:
    ari = FakeAri("a")
    async with running(ari) as n:
        cid = await n.queued_caller(("support", "timeout=0.1"))
        await asyncio.sleep(0.15)
        await n.settle()
        assert ari.channels[cid].variables["CLUSTERQ_STATUS"] == "TIMEOUT"
        assert [e.reason for e in n.coord.of("call_left")] == ["timeout"]

"""RequestSlots: at most `size` at once, background capped, urgent waiters served first."""

from __future__ import annotations

import asyncio

import pytest

from stasis_app.ari.slots import RequestSlots


async def _hold(slots: RequestSlots, urgent: bool, started: list[str], name: str, release: asyncio.Event) -> None:
    async with slots.slot(urgent):
        started.append(name)
        await release.wait()


async def test_background_requests_leave_room_for_urgent_ones() -> None:
    slots, started, release = RequestSlots(4, 2), [], asyncio.Event()
    tasks = [asyncio.create_task(_hold(slots, False, started, f"bg{i}", release)) for i in range(4)]
    await asyncio.sleep(0)
    assert started == ["bg0", "bg1"], "background capped at 2 of 4"
    tasks += [asyncio.create_task(_hold(slots, True, started, f"u{i}", release)) for i in range(3)]
    await asyncio.sleep(0)
    assert started == ["bg0", "bg1", "u0", "u1"] and slots.busy == 4
    release.set()
    await asyncio.gather(*tasks)
    assert sorted(started) == sorted(["bg0", "bg1", "bg2", "bg3", "u0", "u1", "u2"])
    assert (slots.busy, slots.busy_background) == (0, 0)


async def test_a_freed_slot_goes_to_a_waiting_urgent_request_first() -> None:
    slots, started = RequestSlots(1, 1), []
    gate = asyncio.Event()
    first = asyncio.create_task(_hold(slots, False, started, "bg0", gate))
    await asyncio.sleep(0)
    second_gate = asyncio.Event()
    second_gate.set()
    waiting = [asyncio.create_task(_hold(slots, False, started, "bg1", second_gate)),
               asyncio.create_task(_hold(slots, True, started, "u", second_gate))]
    await asyncio.sleep(0)
    gate.set()
    await asyncio.gather(first, *waiting)
    assert started == ["bg0", "u", "bg1"]


async def test_a_cancelled_waiter_gives_nothing_away() -> None:
    slots, started, release = RequestSlots(1, 1), [], asyncio.Event()
    holder = asyncio.create_task(_hold(slots, True, started, "a", release))
    await asyncio.sleep(0)
    waiter = asyncio.create_task(_hold(slots, True, started, "b", release))
    await asyncio.sleep(0)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    release.set()
    await holder
    assert started == ["a"] and slots.busy == 0
    async with slots.slot(False):
        assert slots.busy == 1


def test_limits_are_checked() -> None:
    with pytest.raises(ValueError):
        RequestSlots(4, 5)

"""Fixtures for election unit tests: a fake clock driving a MemoryKv."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.unit.coordinator.election.fake_clock import TimeLine


@pytest.fixture
async def tl() -> AsyncIterator[TimeLine]:
    """A fresh TimeLine (FakeClock + MemoryKv)."""
    timeline = TimeLine()
    yield timeline
    await timeline.kv.close()

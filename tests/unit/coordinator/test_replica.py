"""A leadership term (replica.lead) on the in-memory KV: what a new leader loads from etcd and
from the queues file, and that bad stored records or a bad file never end the term."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from grpc_health.v1 import health

from coordinator.config import CoordinatorSettings
from coordinator.definitions import agent_json, queue_json
from coordinator.election.election import Fence
from coordinator.queue import AgentConfig, Membership, QueueConfig
from coordinator.replica import ReplicaState, lead
from coordinator.runtime import LeaderRuntime
from coordinator.store.memory_kv import MemoryKv
from coordinator.store.queue_store import QueueStore

P = "/clusterq"


async def _fence(kv: MemoryKv) -> Fence:
    """A new leader key (one per term), as a won election leaves it."""
    key = f"{P}/election/{len((await kv.get_prefix(f'{P}/election/'.encode())).kvs) + 1}".encode()
    return Fence(key, await kv.put(key, b"me"))


def _agent(agent_id: str, penalty: int = 0) -> AgentConfig:
    return AgentConfig(agent_id, f"PJSIP/{agent_id}", "a", (Membership("support", penalty, 0),))


async def _put_raw(kv: MemoryKv) -> None:
    """A good queue and agent, and records written before validation existed (or corrupted)."""
    await kv.put(f"{P}/queues/support".encode(), queue_json(QueueConfig("support")))
    await kv.put(f"{P}/queues/broken".encode(), b"{not json")
    await kv.put(f"{P}/agents/alice".encode(), agent_json(_agent("alice"), True, "lunch"))
    await kv.put(f"{P}/agents/bob".encode(), agent_json(_agent("bob", penalty=-1), False, ""))
    await kv.put(f"{P}/agents/carol".encode(), json.dumps({"agent_id": "carol"}).encode())


class Term:
    """lead() running as a task until the test ends."""

    def __init__(self, queues_file: Path | None = None, kv: MemoryKv | None = None) -> None:
        self.kv = kv or MemoryKv(time.monotonic)
        self.store = QueueStore(self.kv, P)
        settings = CoordinatorSettings(queues_file=queues_file, settle_time=0.0)
        self.state = ReplicaState(settings, self.store, health.aio.HealthServicer())
        self.task: asyncio.Task[None] | None = None

    async def start(self, wait_for_agents: bool = True) -> LeaderRuntime:
        fence = await _fence(self.kv)
        self.task = asyncio.ensure_future(lead(self.state, fence))
        for _ in range(200):  # until the agents are applied (settle_time 0), at most 2 s
            rt = self.state.runtime
            if self.task.done() or (rt is not None and (rt.engine.agent_states() or not wait_for_agents)):
                break
            await asyncio.sleep(0.01)
        assert not self.task.done(), "the leadership term ended"
        assert self.state.runtime is not None
        return self.state.runtime


    async def stop(self) -> None:
        """End the term (as a lost lease does)."""
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)


@pytest.fixture
async def term() -> AsyncIterator[Term]:
    t = Term()
    yield t
    await t.stop()


async def test_bad_stored_records_are_skipped_and_the_good_ones_applied(
        term: Term, caplog: pytest.LogCaptureFixture) -> None:
    await _put_raw(term.kv)
    with caplog.at_level(logging.ERROR, "coordinator.replica"):
        rt = await term.start()
    assert set(rt.queues) == {"support"}
    assert {v.agent_id: (v.paused, v.pause_reason) for v in rt.engine.agent_states()} == {"alice": (True, "lunch")}
    skipped = caplog.text
    assert "/clusterq/queues/broken" in skipped and "/clusterq/agents/bob" in skipped
    assert "/clusterq/agents/carol" in skipped


@pytest.mark.parametrize("text", [
    "queues:\n  support: {colour: blue}\n",  # unknown setting
    "queues:\n  support: {strategy: linear\n",  # YAML error
    "queues:\n  - support\n",  # not a mapping by name
    "queues:\n  support: {}\nagents:\n  alice: {endpoint: PJSIP/x, home_node: a, queues: {support: {penalty: -1}}}\n",
])
async def test_a_bad_queues_file_keeps_the_stored_definitions(
        tmp_path: Path, text: str, caplog: pytest.LogCaptureFixture) -> None:
    f = tmp_path / "queues.yaml"
    f.write_text(text)
    term = Term(f)
    try:
        await term.kv.put(f"{P}/queues/support".encode(), queue_json(QueueConfig("support", music_class="jazz")))
        await term.kv.put(f"{P}/agents/alice".encode(), agent_json(_agent("alice"), False, ""))
        with caplog.at_level(logging.ERROR, "coordinator.replica"):
            rt = await term.start()
        assert rt.queues["support"].music_class == "jazz"
        assert [v.agent_id for v in rt.engine.agent_states()] == ["alice"]
        assert str(f) in caplog.text
    finally:
        await term.stop()


async def test_a_good_queues_file_is_applied(tmp_path: Path) -> None:
    f = tmp_path / "queues.yaml"
    f.write_text("queues:\n  support: {music_class: rock}\nagents:\n  alice: {endpoint: PJSIP/alice, home_node: a, "
                 "queues: [support]}\n")
    term = Term(f)
    try:
        rt = await term.start()
        assert rt.queues["support"].music_class == "rock"
        assert [v.agent_id for v in rt.engine.agent_states()] == ["alice"]
    finally:
        await term.stop()


async def test_a_file_agent_logged_out_or_changed_through_the_api_stays_so_until_its_entry_is_edited(
        tmp_path: Path) -> None:
    f = tmp_path / "queues.yaml"
    entry = "alice: {endpoint: PJSIP/alice, home_node: a, queues: {support: {penalty: %d}}}"
    f.write_text("queues:\n  support: {}\nagents:\n  " + entry % 1 + "\n")
    kv = MemoryKv(time.monotonic)
    alice_key = f"{P}/agents/alice".encode()

    async def term_agents() -> dict[str, int]:
        term = Term(f, kv)
        try:
            rt = await term.start(wait_for_agents=False)
            await asyncio.sleep(0.05)  # settle_time 0: the agents are applied right after the start
            logged_in = [v.agent_id for v in rt.engine.agent_states()]
        finally:
            await term.stop()
        # The penalty the term logged each agent in with (the engine's views do not show it).
        return {a: json.loads((await kv.get(f"{P}/agents/{a}".encode())).value)  # type: ignore[union-attr]
                ["queues"]["support"]["penalty"] for a in logged_in}

    assert await term_agents() == {"alice": 1}
    await kv.delete(alice_key)  # Logout through the API
    assert await term_agents() == {}, "a logged-out file agent is not logged in again by the next leader"
    await kv.put(alice_key, agent_json(_agent("alice", penalty=5), True, "lunch"))  # Login through the API
    assert await term_agents() == {"alice": 5}
    f.write_text("queues:\n  support: {}\nagents:\n  " + entry % 2 + "\n")  # the file entry is edited: it wins
    assert await term_agents() == {"alice": 2}
    stored = json.loads((await kv.get(alice_key)).value)  # type: ignore[union-attr]
    assert stored["paused"] and stored["pause_reason"] == "lunch"  # the pause is the API's: kept

"""Durable state of the cluster in etcd, reached only through KvPort; every write is fenced.

Key layout under the prefix (default /clusterq):
    election/<lease>        leader election (coordinator.election)
    queues/<name>           queue definition (JSON)
    queues-file/<name>      hash of the queues-file text last applied for that queue
    agents/<agent_id>       agent login, memberships, skills, pause state (JSON)
    agents-file/<agent_id>  hash of the queues-file entry last applied for that agent (kept on Logout:
                            a logged-out file agent comes back only when its entry is edited)
    nodes/<node_id>         nodes that have registered (JSON); a new leader waits for them
    seq                     arrival sequences below this value may have been handed out

Runtime state (waiting callers, offers, calls, timers, statistics) is never written here: it lives
in the leader's memory and is rebuilt from what nodes re-report.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass

from coordinator.definitions import DefinitionError, agent_from_json, agent_json, queue_from_json, queue_json
from coordinator.election.election import Fence
from coordinator.election.leader import fenced_txn
from coordinator.queue.model import AgentConfig, QueueConfig
from coordinator.store.kv import Compare, Delete, KvPort, Put

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StoredAgent:
    """An agent's durable state."""

    config: AgentConfig
    paused: bool
    pause_reason: str


class QueueStore:
    """Reads and fenced writes of queue definitions, agents, node registry and sequence marks."""

    def __init__(self, kv: KvPort, prefix: str) -> None:
        self.kv = kv
        self.prefix = prefix.rstrip("/")

    def _k(self, *parts: str) -> bytes:
        return "/".join((self.prefix, *parts)).encode()

    @property
    def election_prefix(self) -> bytes:
        """Prefix under which replicas campaign."""
        return self._k("election", "")

    async def load_queues(self) -> dict[str, QueueConfig]:
        """Every stored queue definition that loads; a bad record is logged with its key and skipped
        (one corrupt record must not stop a leader, or every admin call that reads the store)."""
        out: dict[str, QueueConfig] = {}
        for kv in (await self.kv.get_prefix(self._k("queues", ""))).kvs:
            try:
                cfg = queue_from_json(kv.value)
            except DefinitionError as exc:
                log.error("stored queue %s skipped: %s", kv.key.decode(errors="replace"), exc)
                continue
            out[cfg.name] = cfg
        return out

    async def load_file_hashes(self) -> dict[str, str]:
        """Queue name -> hash of the file text last applied."""
        return await self._hashes("queues-file")

    async def load_agent_file_hashes(self) -> dict[str, str]:
        """Agent id -> hash of the file entry last applied."""
        return await self._hashes("agents-file")

    async def _hashes(self, section: str) -> dict[str, str]:
        kvs = (await self.kv.get_prefix(self._k(section, ""))).kvs
        return {kv.key.decode().rsplit("/", 1)[1]: kv.value.decode() for kv in kvs}

    async def put_queue(self, fence: Fence, cfg: QueueConfig, file_hash: str | None = None) -> None:
        """Store a queue definition (and the file hash it came from, if any)."""
        ops = [Put(self._k("queues", cfg.name), queue_json(cfg))]
        if file_hash is not None:
            ops.append(Put(self._k("queues-file", cfg.name), file_hash.encode()))
        await fenced_txn(self.kv, fence, ops)

    async def create_queue(self, fence: Fence, cfg: QueueConfig) -> bool:
        """Store a new queue definition; False (nothing written) if the name is already taken.

        etcd decides (create_revision == 0 in the same fenced txn), so of two concurrent creates of
        one name exactly one succeeds. Not retry-safe: a lost reply raises KvAmbiguous (outcome unknown).
        """
        key = self._k("queues", cfg.name)
        result = await fenced_txn(self.kv, fence, [Put(key, queue_json(cfg))], [Compare.create(key, "=", 0)])
        return result.succeeded

    async def delete_queue(self, fence: Fence, name: str) -> None:
        """Remove a queue definition."""
        await fenced_txn(self.kv, fence, [Delete(self._k("queues", name)), Delete(self._k("queues-file", name))])

    async def load_agents(self) -> dict[str, StoredAgent]:
        """Every logged-in agent that loads and validates; a bad record is logged with its key and
        skipped (it stays in etcd: a Login of that agent replaces it)."""
        out: dict[str, StoredAgent] = {}
        for kv in (await self.kv.get_prefix(self._k("agents", ""))).kvs:
            try:
                cfg, paused, reason = agent_from_json(kv.value)
            except DefinitionError as exc:
                log.error("stored agent %s skipped: %s", kv.key.decode(errors="replace"), exc)
                continue
            out[cfg.agent_id] = StoredAgent(cfg, paused, reason)
        return out

    async def put_agent(self, fence: Fence, agent: StoredAgent, file_hash: str | None = None) -> None:
        """Store an agent's login / pause state (and the file entry's hash it came from, if any)."""
        agent_id = agent.config.agent_id
        ops = [Put(self._k("agents", agent_id), agent_json(agent.config, agent.paused, agent.pause_reason))]
        if file_hash is not None:
            ops.append(Put(self._k("agents-file", agent_id), file_hash.encode()))
        await fenced_txn(self.kv, fence, ops)

    async def delete_agent(self, fence: Fence, agent_id: str) -> None:
        """Log an agent out durably."""
        await fenced_txn(self.kv, fence, [Delete(self._k("agents", agent_id))])

    async def load_nodes(self) -> list[str]:
        """Node ids that have ever registered (and not been forgotten)."""
        return [kv.key.decode().rsplit("/", 1)[1] for kv in (await self.kv.get_prefix(self._k("nodes", ""))).kvs]

    async def put_node(self, fence: Fence, node_id: str, instance_id: str) -> None:
        """Record that a node registered."""
        await fenced_txn(self.kv, fence, [Put(self._k("nodes", node_id),
                                                json.dumps({"instance_id": instance_id}).encode())])

    async def load_seq_mark(self) -> int:
        """Arrival sequences below this value may have been used by an earlier leader."""
        kv = await self.kv.get(self._k("seq"))
        return int(kv.value) if kv is not None else 1

    async def put_seq_mark(self, fence: Fence, mark: int) -> None:
        """Reserve arrival sequences below `mark` for this leader."""
        await fenced_txn(self.kv, fence, [Put(self._k("seq"), str(mark).encode())])

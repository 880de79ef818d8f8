"""`clusterq queue create|update|apply FILE` and `clusterq agent list`.

FILE (or "-", standard input) is YAML in the coordinator's queues file format (coordinator/definitions.py:
`queues:` by name, app_queue's option names and words accepted), read and checked here with the
coordinator's own parsing, so a mistake is a usage error (status 2) before anything is sent. Each
queue is one CreateQueue / UpdateQueue; `apply` creates a queue, or updates it when it exists. The
first refusal stops the command (status 1) after the lines of what was done before it. An `agents:`
section is not applied (agents log in with `clusterq agent login`): the command says so.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Protocol

import grpc
import yaml

from clusterq_cli.show import agent_line
from clusterq_proto.v1 import admin_pb2
from coordinator.definitions import MAX_QUEUES_FILE_BYTES, DefinitionError, queue_from_mapping, queue_to_pb

__all__ = ["BadFile", "Refused", "agent_list", "read_queues", "send_queues"]


class BadFile(Exception):
    """The file cannot be read or holds no valid queue definitions (bad usage)."""


class Refused(Exception):
    """The coordinator refused one queue; `lines` say what was done before and the refusal."""

    def __init__(self, lines: list[str]) -> None:
        super().__init__(lines[-1])
        self.lines = lines


class QueueClient(Protocol):
    """What these commands ask of the AdminClient."""

    async def create_queue(self, q: admin_pb2.QueueDefinition) -> admin_pb2.QueueDefinition:
        """QueueAdmin.CreateQueue."""

    async def update_queue(self, q: admin_pb2.QueueDefinition) -> admin_pb2.QueueDefinition:
        """QueueAdmin.UpdateQueue."""

    async def snapshot(self, queue: str = "", include_callers: bool = False) -> admin_pb2.StatsSnapshot:
        """Stats.Snapshot."""


def read_queues(name: str) -> tuple[list[admin_pb2.QueueDefinition], int]:
    """The queue definitions of the file `name` ("-": standard input), checked, and how many agents
    it also defines (not applied); BadFile says what is wrong."""
    try:
        text = sys.stdin.read(MAX_QUEUES_FILE_BYTES + 1) if name == "-" else _read(Path(name))
        doc = yaml.safe_load(text) or {}
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise BadFile(f"{name}: {exc}") from None
    if len(text) > MAX_QUEUES_FILE_BYTES:
        raise BadFile(f"{name}: larger than {MAX_QUEUES_FILE_BYTES} bytes")
    queues = doc.get("queues") if isinstance(doc, dict) else None
    if not isinstance(queues, dict) or not queues:
        raise BadFile(f"{name}: want a mapping with 'queues:' by name, as the coordinator's queues file")
    try:
        definitions = [queue_to_pb(queue_from_mapping(str(n), q or {})) for n, q in queues.items()]
    except DefinitionError as exc:
        raise BadFile(f"{name}: {exc}") from None
    agents = doc.get("agents")
    return definitions, len(agents) if isinstance(agents, dict) else 0


def _read(path: Path) -> str:
    with path.open(encoding="utf-8") as f:
        return f.read(MAX_QUEUES_FILE_BYTES + 1)


async def send_queues(client: QueueClient, command: str, definitions: list[admin_pb2.QueueDefinition],
                      agents: int) -> list[str]:
    """Create, update or apply (create, else update) each definition in order; Refused at the first
    refusal, with the lines of what was done before it."""
    lines: list[str] = []
    for q in definitions:
        try:
            if command == "update":
                await client.update_queue(q)
                lines.append(f"Updated queue {q.name}.")
                continue
            try:
                await client.create_queue(q)
                lines.append(f"Created queue {q.name}.")
            except grpc.aio.AioRpcError as exc:
                if command != "apply" or exc.code() != grpc.StatusCode.ALREADY_EXISTS:
                    raise
                await client.update_queue(q)
                lines.append(f"Updated queue {q.name}.")
        except grpc.aio.AioRpcError as exc:
            raise Refused([*lines, f"clusterq: queue {q.name}: {exc.code().name}: {exc.details()}"]) from None
    if agents:
        lines.append(f"Not applied: {agents} agent{'s' if agents != 1 else ''} in the file "
                     "(agents log in with `clusterq agent login`).")
    return lines


async def agent_list(client: QueueClient) -> list[str]:
    """Every logged-in agent, one `queue show` member line each, with the queues it serves."""
    snapshot = await client.snapshot()
    agents = sorted(snapshot.agents, key=lambda a: a.agent_id)
    if not agents:
        return ["No agents logged in."]
    return [f"{agent_line(a)} in {', '.join(m.queue for m in a.queues)}" for a in agents]

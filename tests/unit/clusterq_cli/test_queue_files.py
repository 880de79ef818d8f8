"""`clusterq queue create|update|apply FILE` and `agent list` against a client answered from memory."""

from __future__ import annotations

import io
from pathlib import Path

import grpc
import pytest

from clusterq_cli.__main__ import _execute, parser, run
from clusterq_cli.queue_files import read_queues
from clusterq_proto.v1 import admin_pb2
from clusterq_testing.ports import free_tcp_port

FILE = """queues:
  support: {strategy: leastrecent, timeout: 20, joinempty: strict}
  sales: {}
agents:
  alice: {endpoint: PJSIP/alice, home_node: a, queues: [support]}
"""


def _refusal(code: grpc.StatusCode, details: str) -> grpc.aio.AioRpcError:
    return grpc.aio.AioRpcError(code, grpc.aio.Metadata(), grpc.aio.Metadata(), details)


class _Coordinator:
    """Queues by name; create refuses an existing one, update an unknown one, as the coordinator does."""

    def __init__(self, *existing: str) -> None:
        self.queues = {name: admin_pb2.QueueDefinition(name=name) for name in existing}
        self.calls: list[str] = []

    async def create_queue(self, q: admin_pb2.QueueDefinition) -> admin_pb2.QueueDefinition:
        self.calls.append(f"create {q.name}")
        if q.name in self.queues:
            raise _refusal(grpc.StatusCode.ALREADY_EXISTS, f"queue {q.name} already exists")
        self.queues[q.name] = q
        return q

    async def update_queue(self, q: admin_pb2.QueueDefinition) -> admin_pb2.QueueDefinition:
        self.calls.append(f"update {q.name}")
        if q.name not in self.queues:
            raise _refusal(grpc.StatusCode.NOT_FOUND, f"queue {q.name} does not exist")
        self.queues[q.name] = q
        return q

    async def snapshot(self, queue: str = "", include_callers: bool = False) -> admin_pb2.StatsSnapshot:
        return admin_pb2.StatsSnapshot(agents=[
            admin_pb2.AgentState(agent_id="bob", endpoint="PJSIP/bob", home_node="b", state="in_call",
                                 queues=[admin_pb2.QueueMembership(queue="sales")], calls_taken=1),
            admin_pb2.AgentState(agent_id="alice", endpoint="PJSIP/alice", home_node="a", state="paused",
                                 pause_reason="lunch", device_state="NOT_INUSE",
                                 queues=[admin_pb2.QueueMembership(queue="support", penalty=1),
                                         admin_pb2.QueueMembership(queue="sales")])])


def test_a_file_is_read_with_the_coordinators_parsing(tmp_path: Path) -> None:
    f = tmp_path / "queues.yaml"
    f.write_text(FILE)
    definitions, agents = read_queues(str(f))
    assert [(q.name, q.strategy, q.ring_timeout) for q in definitions] == [("support", "leastrecent", 20.0),
                                                                          ("sales", "ringall", 15.0)]
    assert sorted(definitions[0].joinempty) == ["invalid", "paused", "penalty", "unavailable"] and agents == 1


async def test_apply_creates_new_queues_and_updates_existing_ones(tmp_path: Path) -> None:
    f = tmp_path / "queues.yaml"
    f.write_text(FILE)
    client = _Coordinator("sales")
    args = parser().parse_args(["queue", "apply", str(f)])
    args.definitions = read_queues(args.file)
    lines = await _execute(args, client)  # type: ignore[arg-type]
    assert lines == ["Created queue support.", "Updated queue sales.",
                     "Not applied: 1 agent in the file (agents log in with `clusterq agent login`)."]
    assert client.calls == ["create support", "create sales", "update sales"]
    assert client.queues["support"].ring_timeout == 20.0


async def test_create_and_update_stop_at_the_first_refusal_with_status_1(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from clusterq_cli import __main__ as cli

    f = tmp_path / "queues.yaml"
    f.write_text("queues:\n  support: {}\n  sales: {}\n  other: {}\n")
    client = _Coordinator("sales")
    monkeypatch.setattr(cli, "AdminClient", lambda *_, **__: _Closing(client))
    status, lines = await run(["queue", "create", str(f)])
    assert (status, lines) == (1, ["Created queue support.", "clusterq: queue sales: ALREADY_EXISTS: queue sales "
                                                             "already exists"])
    monkeypatch.setattr("sys.stdin", io.StringIO("queues:\n  nosuch: {}\n"))
    status, lines = await run(["queue", "update", "-"])
    assert (status, lines) == (1, ["clusterq: queue nosuch: NOT_FOUND: queue nosuch does not exist"])


class _Closing:
    def __init__(self, inner: _Coordinator) -> None:
        self.inner = inner

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)

    async def close(self) -> None:
        return None


@pytest.mark.parametrize(("text", "expected"), [
    ("queues:\n  support: {strategy: fastest}\n", "queue support: bad value for 'strategy'"),
    ("agents: {}\n", "want a mapping with 'queues:' by name"),
    ("queues: [support]\n", "want a mapping with 'queues:' by name"),
    ("queues: {support: {ring_timeout: 1e-6}}\n", "ring_timeout must be at least 1 s"),
    ("queues: {support: [\n", "while parsing"),
])
async def test_a_bad_file_is_bad_usage_before_any_call(
        tmp_path: Path, text: str, expected: str) -> None:
    f = tmp_path / "queues.yaml"
    f.write_text(text)
    status, lines = await run(["--coordinator", f"127.0.0.1:{free_tcp_port()}", "queue", "apply", str(f)])
    assert status == 2 and len(lines) == 1 and lines[0].startswith(f"clusterq: {f}: ") and expected in lines[0]


async def test_agent_list_shows_every_agent_as_a_member_line_with_its_queues() -> None:
    lines = await _execute(parser().parse_args(["agent", "list"]), _Coordinator())  # type: ignore[arg-type]
    assert lines == ["alice (PJSIP/alice on a) (paused:lunch) (Not in use) has taken no calls yet in support, sales",
                     "bob (PJSIP/bob on b) (in_call) has taken 1 call in sales"]

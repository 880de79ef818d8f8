"""The command line's grammar and its answer when no coordinator answers."""

from __future__ import annotations

from pathlib import Path

import pytest

from clusterq_cli.__main__ import parser, run
from clusterq_testing.ports import free_tcp_port


def test_login_memberships_and_skills_are_parsed() -> None:
    args = parser().parse_args(["agent", "login", "alice", "--endpoint", "PJSIP/alice", "--node", "a",
                                "--queue", "support", "--queue", "sales:2:5", "--skill", "lang=de"])
    assert [(m.queue, m.penalty, m.weight) for m in args.queues] == [("support", 0, 0), ("sales", 2, 5)]
    assert [(s.key, s.value) for s in args.skills] == [("lang", "de")]


def test_caller_priority_is_parsed() -> None:
    args = parser().parse_args(["caller", "priority", "a-1700000000.12", "-3"])
    assert (args.area, args.command, args.call_id, args.priority) == ("caller", "priority", "a-1700000000.12", -3)


@pytest.mark.parametrize("bad", [
    ["agent", "login", "alice", "--endpoint", "PJSIP/alice", "--node", "a", "--queue", "support:high"],
    ["agent", "login", "alice", "--endpoint", "PJSIP/alice", "--node", "a", "--queue", "a:1:2:3"],
    ["agent", "login", "alice", "--endpoint", "PJSIP/alice", "--node", "a", "--queue", "q", "--skill", "lang"],
    ["agent", "login", "alice", "--node", "a", "--queue", "q"],
    ["queue", "frobnicate"],
    ["caller", "priority", "a-1", "high"],
    ["caller", "priority", "a-1"],
])
def test_bad_usage_exits_with_status_2(bad: list[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        parser().parse_args(bad)
    assert exc.value.code == 2


async def test_no_coordinator_gives_status_1_and_says_where_it_looked() -> None:
    addr = f"127.0.0.1:{free_tcp_port()}"  # nothing listens there
    status, lines = await run(["--coordinator", addr, "--timeout", "1", "queue", "show"])
    assert status == 1 and len(lines) == 1 and addr in lines[0]


async def test_an_unreadable_ca_file_is_bad_usage_before_any_call(tmp_path: Path) -> None:
    missing = tmp_path / "ca.pem"
    status, lines = await run(["--coordinator", f"127.0.0.1:{free_tcp_port()}", "--ca-file", str(missing),
                               "queue", "show"])
    # The flag was given: the message names it, not the variable it defaults to.
    assert status == 2 and lines == [f"clusterq: --ca-file={missing}: cannot read the file: No such file or directory"]


async def test_an_unreadable_ca_file_from_the_variable_names_the_variable(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    missing = tmp_path / "ca.pem"
    monkeypatch.setenv("CLUSTERQ_COORDINATOR_CA_FILE", str(missing))
    status, lines = await run(["--coordinator", f"127.0.0.1:{free_tcp_port()}", "queue", "show"])
    assert status == 2 and lines == [f"clusterq: CLUSTERQ_COORDINATOR_CA_FILE={missing}: cannot read the file: "
                                     "No such file or directory"]


def test_tls_flags_default_to_the_stasis_apps_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLUSTERQ_COORDINATOR_CA_FILE", "/etc/clusterq/ca.pem")
    monkeypatch.setenv("CLUSTERQ_COORDINATOR_TLS_NAME", "clusterq-coordinator")
    args = parser().parse_args(["queue", "show"])
    assert (args.ca_file, args.cert_file, args.key_file, args.tls_name) == (
        "/etc/clusterq/ca.pem", "", "", "clusterq-coordinator")
    assert parser().parse_args(["--ca-file", "/tmp/x.pem", "queue", "show"]).ca_file == "/tmp/x.pem"


def test_login_takes_a_state_interface() -> None:
    base = ["agent", "login", "alice", "--endpoint", "Local/alice@agents/n", "--node", "a", "--queue", "support"]
    assert parser().parse_args(base).state_interface == ""
    assert parser().parse_args([*base, "--state-interface", "PJSIP/alice"]).state_interface == "PJSIP/alice"


class _Client:
    """What _execute asks of the AdminClient, answered from memory."""

    def __init__(self) -> None:
        from clusterq_proto.v1 import admin_pb2

        self.requests: list[admin_pb2.LoginRequest] = []
        self.state = admin_pb2.AgentState(agent_id="alice", endpoint="Local/alice@agents/n", home_node="a",
                                          state="busy", state_interface="PJSIP/alice", device_state="INUSE")

    async def login_request(self, req: object) -> object:
        self.requests.append(req)  # type: ignore[arg-type]
        return self.state

    async def agent_state(self, agent_id: str) -> object:
        return self.state


async def test_login_sends_the_state_interface_and_agent_show_prints_the_device() -> None:
    from typing import Any

    from clusterq_cli.__main__ import _execute

    client: Any = _Client()
    lines = await _execute(parser().parse_args(["agent", "login", "alice", "--endpoint", "Local/alice@agents/n",
                                                "--node", "a", "--queue", "support", "--state-interface",
                                                "PJSIP/alice"]), client)
    assert [r.state_interface for r in client.requests] == ["PJSIP/alice"]
    assert lines == ["alice (Local/alice@agents/n from PJSIP/alice on a) (busy) (In use) has taken no calls yet"]
    assert await _execute(parser().parse_args(["agent", "show", "alice"]), client) == [
        lines[0], "   device PJSIP/alice: INUSE"]

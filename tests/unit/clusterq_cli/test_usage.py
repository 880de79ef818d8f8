"""Bad usage is a message that says the expected form, with exit status 2, never a traceback; no
coordinator at any address is said at once, not after --timeout."""

from __future__ import annotations

import time

import pytest

from clusterq_cli.__main__ import parser, run
from clusterq_testing.ports import free_tcp_port

LOGIN = ["agent", "login", "alice", "--endpoint", "PJSIP/alice", "--node", "a"]


@pytest.mark.parametrize(("argv", "expected"), [
    (["--timeout", "nan", "queue", "show"], "argument --timeout: want a number of seconds > 0"),
    (["--timeout", "-5", "queue", "show"], "argument --timeout: want a number of seconds > 0"),
    (["--timeout", "0", "queue", "show"], "argument --timeout: want a number of seconds > 0"),
    (["--timeout", "inf", "queue", "show"], "argument --timeout: want a number of seconds > 0"),
    ([*LOGIN, "--queue", "support:high"], "argument --queue: want QUEUE[:PENALTY[:WEIGHT]] (whole numbers), "
                                          "not 'support:high'"),
    ([*LOGIN, "--queue", "q", "--skill", "lang"], "argument --skill: want KEY=VALUE, e.g. language=de, not 'lang'"),
])
def test_a_bad_value_says_the_form_it_wants(argv: list[str], expected: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        parser().parse_args(argv)
    err = capsys.readouterr().err
    assert exc.value.code == 2 and expected in err and "invalid" not in err and "_" not in err.split("error:")[1]


@pytest.mark.parametrize("argv", [["--coordinator", ","], ["--coordinator="], ["--coordinator", " , "]])
async def test_no_coordinator_address_is_bad_usage(argv: list[str]) -> None:
    status, lines = await run([*argv, "agent", "show", "alice"])
    assert (status, lines) == (2, ["clusterq: --coordinator names no coordinator: want HOST:PORT[,HOST:PORT...]"])


async def test_an_empty_coordinator_variable_is_bad_usage_naming_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLUSTERQ_COORDINATOR", "")
    status, lines = await run(["queue", "show"])
    assert (status, lines) == (2, ["clusterq: CLUSTERQ_COORDINATOR names no coordinator: "
                                   "want HOST:PORT[,HOST:PORT...]"])


async def test_connection_refused_everywhere_fails_fast_with_a_clear_message() -> None:
    addresses = f"127.0.0.1:{free_tcp_port()},127.0.0.1:{free_tcp_port()}"
    start = time.monotonic()
    status, lines = await run(["--coordinator", addresses, "--timeout", "30", "queue", "show"])
    assert time.monotonic() - start < 3.0
    assert status == 1 and lines == [f"clusterq: no coordinator at {addresses.replace(',', ', ')}: "
                                     "connection refused"]

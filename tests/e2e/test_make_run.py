"""Smoke test of `make run`: it bridges calls and leaves no process behind."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e
REPO = Path(__file__).resolve().parents[2]


def test_make_run_bridges_calls_and_stops_everything() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLUSTERQ_")}
    out = subprocess.run([sys.executable, "-m", "clusterq_testing.demo", "--duration", "15"], cwd=REPO, env=env,
                         capture_output=True, text=True, timeout=180)
    text = out.stdout + out.stderr
    assert out.returncode == 0, text[-4000:]
    bridged = [line for line in text.splitlines() if " BRIDGED " in line]
    assert len(bridged) >= 3, text[-4000:]
    # Every PID the run reported must be gone now.
    pids = [int(p) for p in re.findall(r"pid (\d+)", text)]
    pids += [int(p) for group in re.findall(r"pids \[([\d, ]+)\]", text) for p in group.split(",")]
    assert len(pids) >= 6, text[-2000:]
    alive = [p for p in pids if Path(f"/proc/{p}").exists() and "zombie" not in
             Path(f"/proc/{p}/status").read_text(errors="replace").lower()]
    assert not alive, f"processes left running: {alive}"

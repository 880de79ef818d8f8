"""The stasis app's entry point: the startup heap is kept out of later garbage collections; a bad
setting stops it with status 2 and one line naming the setting."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from stasis_app.__main__ import freeze_startup_heap
from stasis_app.config import StasisSettings
from tests.unit.coordinator.test_main import check_freezes_startup_heap

ROOT = Path(__file__).resolve().parents[3]


def test_garbage_is_collected_then_the_live_heap_frozen() -> None:
    check_freezes_startup_heap(freeze_startup_heap)


@pytest.mark.parametrize(("env", "named"), [
    ({"CLUSTERQ_NODE_ID": "a b", "CLUSTERQ_ARI_PASSWORD": "s3cret-pw"}, "node id"),
    ({"CLUSTERQ_NODE_ID": "a", "CLUSTERQ_ARI_PASSWORD_FILE": "/nonexistent/pw"},
     "CLUSTERQ_ARI_PASSWORD_FILE=/nonexistent/pw: cannot read"),
    ({"CLUSTERQ_NODE_ID": "a", "CLUSTERQ_ARI_PASSWORD": "s3cret-pw", "CLUSTERQ_GRACE": "soon"},
     "CLUSTERQ_GRACE='soon' is not a number"),
    ({"CLUSTERQ_NODE_ID": "a", "CLUSTERQ_ARI_PASSWORD": "s3cret-pw", "CLUSTERQ_HEALTH_LISTEN": "nope"},
     "CLUSTERQ_HEALTH_LISTEN"),
])
def test_a_bad_setting_exits_with_status_2_and_one_line_naming_it(env: dict[str, str], named: str) -> None:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("CLUSTERQ_")}
    done = subprocess.run([sys.executable, "-m", "stasis_app"], cwd=ROOT, env={**clean, **env},
                          capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 2
    assert named in done.stderr and "Traceback" not in done.stderr
    assert "s3cret-pw" not in done.stderr + done.stdout


def test_a_password_file_that_is_not_text_is_named_without_quoting_it(tmp_path: Path) -> None:
    pw = tmp_path / "pw"
    pw.write_bytes(b"\xffs3cret-pw\n")
    with pytest.raises(ValueError) as err:
        StasisSettings.from_env({"CLUSTERQ_NODE_ID": "a", "CLUSTERQ_ARI_PASSWORD_FILE": str(pw)})
    assert str(err.value) == f"CLUSTERQ_ARI_PASSWORD_FILE={pw}: not UTF-8 text"
    pw.write_text(" s3cret-pw\n")
    assert StasisSettings.from_env({"CLUSTERQ_NODE_ID": "a", "CLUSTERQ_ARI_PASSWORD_FILE": str(pw)}).ari_password == "s3cret-pw"

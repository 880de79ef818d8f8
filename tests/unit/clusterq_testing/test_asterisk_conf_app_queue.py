"""app_queue additions to the test node config (only rendered when NodeConfig.app_queue is set)."""

from __future__ import annotations

import re

import pytest

from clusterq_testing.asterisk_conf import render_config
from clusterq_testing.asterisk_conf_core import APP_QUEUE_MODULES
from clusterq_testing.asterisk_conf_dialplan import app_queue_extensions, queues_conf
from clusterq_testing.asterisk_node_config import AppQueue, AppQueueConfig, NodeConfig


def _cfg(app_queue: AppQueueConfig | None) -> NodeConfig:
    return NodeConfig(name="a", instance_dir="/srv/clusterq/run1/a", module_dir="/usr/lib/asterisk/modules",
                      http_port=18088, sip_port=5061, rtp_start=20200, rtp_end=20599, ari_user="clusterq",
                      ari_password="pw", app_queue=app_queue)


def _files(cfg: NodeConfig) -> dict[str, str]:
    return {f.name: f.text for f in render_config(cfg)}


def test_without_app_queue_nothing_changes() -> None:
    files = _files(_cfg(None))
    assert "queues.conf" not in files and "app_queue.so" not in files["modules.conf"]
    assert "clusterq-appqueue-callers" not in files["extensions.conf"]


def test_app_queue_loads_the_module_and_renders_queues_and_dialplan() -> None:
    aq = AppQueueConfig(queues=(AppQueue("aq", (("strategy", "leastrecent"), ("retry", "1")),
                                         ("Local/agent1@clusterq-agents-bench/n,0,agent1,,no,0,1",)),))
    files = _files(_cfg(aq))
    for module in APP_QUEUE_MODULES:
        assert re.search(rf"^load = {re.escape(module)}$", files["modules.conf"], flags=re.MULTILINE)
    assert files["queues.conf"] == queues_conf(aq)
    assert "[aq]\nstrategy = leastrecent\nretry = 1\nmember => Local/agent1@clusterq-agents-bench/n" \
           in files["queues.conf"]
    assert "persistentmembers = no" in files["queues.conf"] and "autofill = yes" in files["queues.conf"]
    assert files["extensions.conf"].endswith(app_queue_extensions())
    assert "Queue(${EXTEN},c)" in files["extensions.conf"]
    assert "[clusterq-agents-bench]" in files["extensions.conf"] and "[globals]" in files["extensions.conf"]
    assert "queuerules.conf" in files


def test_queue_names_are_validated() -> None:
    with pytest.raises(ValueError):
        _cfg(AppQueueConfig(queues=(AppQueue("bad name"),)))

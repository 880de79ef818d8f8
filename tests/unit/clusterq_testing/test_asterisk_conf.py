"""Every config file of a test node, as rendered together (pure functions)."""

from __future__ import annotations

from clusterq_testing.asterisk_conf import render_config
from clusterq_testing.asterisk_conf_core import asterisk_conf, modules_conf
from clusterq_testing.asterisk_conf_dialplan import extensions_conf
from clusterq_testing.asterisk_conf_pjsip import pjsip_conf
from clusterq_testing.asterisk_node_config import NodeConfig
from tests.unit.clusterq_testing.helpers import node_config


def _files(cfg: NodeConfig) -> dict[str, str]:
    return {f.name: f.text for f in render_config(cfg)}


def test_ports_and_password_land_in_their_files() -> None:
    files = _files(node_config())
    assert "bindaddr = 127.0.0.1" in files["http.conf"] and "bindport = 18088" in files["http.conf"]
    assert "rtpstart = 20200" in files["rtp.conf"] and "rtpend = 20599" in files["rtp.conf"]
    assert "bind = 127.0.0.1:5061" in files["pjsip.conf"]
    assert "[clusterq]" in files["ari.conf"] and "password = s3cret-pw" in files["ari.conf"]
    assert "enabled = no" in files["manager.conf"]
    leaking = [name for name, text in files.items() if "s3cret-pw" in text and name != "ari.conf"]
    assert leaking == []
    assert "s3cret-pw" not in repr(node_config())


def test_each_renderer_lands_in_its_file() -> None:
    cfg = node_config()
    files = _files(cfg)
    assert files["asterisk.conf"] == asterisk_conf(cfg)
    assert files["modules.conf"] == modules_conf()
    assert files["pjsip.conf"] == pjsip_conf(cfg)
    assert files["extensions.conf"] == extensions_conf(cfg.stasis_app, cfg.test_app)

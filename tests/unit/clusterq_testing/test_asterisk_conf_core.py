"""Core config text of a test node: asterisk.conf and the explicit module list."""

from __future__ import annotations

import re

from clusterq_testing.asterisk_conf_core import MODULES, REQUIRED_MODULES, asterisk_conf, modules_conf
from tests.unit.clusterq_testing.helpers import node_config


def test_directories_section_is_not_a_template() -> None:
    text = asterisk_conf(node_config())
    assert "[directories]\n" in text and "[directories](!)" not in text
    assert "astetcdir => /srv/clusterq/run1/a/etc" in text
    assert "astrundir => /srv/clusterq/run1/a/run" in text
    assert "astmoddir => /usr/lib/x86_64-linux-gnu/asterisk/modules" in text
    assert "systemname = a" in text


def test_module_list_is_explicit_and_complete() -> None:
    text = modules_conf()
    assert "autoload = no" in text
    for module in ("res_websocket_client.so", "chan_bridge_media.so", "app_userevent.so", "func_rand.so",
                   "func_logic.so", "res_pjsip_registrar.so", "res_pjsip_outbound_registration.so",
                   "app_senddtmf.so", "res_ari.so", "app_stasis.so"):
        assert module in MODULES
        assert re.search(rf"^(load|require) = {re.escape(module)}$", text, flags=re.MULTILINE)
    assert "app_queue.so" not in text
    assert len(set(MODULES)) == len(MODULES)
    assert REQUIRED_MODULES <= set(MODULES)
    assert "require = res_ari.so" in text and "load = func_rand.so" in text

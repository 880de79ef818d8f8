"""Config text for one test Asterisk 22 node: pure functions, no I/O.

`render_config(NodeConfig) -> tuple[ConfigFile, ...]` gives every file of the node's etc directory.
The values are in asterisk_node_config; the text comes from asterisk_conf_core (asterisk.conf,
modules, logger, HTTP/ARI, RTP), asterisk_conf_pjsip and asterisk_conf_dialplan, plus the few
one-line files here.  The reason for each less obvious setting (formats=ulaw, the module list, the
PJSIP trunks between nodes on loopback) is written next to it in those modules.  Passwords are written to
ari.conf / pjsip.conf only (files readable by root); they are excluded from every repr.
"""

from __future__ import annotations

from clusterq_testing.asterisk_conf_core import (
    APP_QUEUE_MODULES,
    MODULES,
    ari_conf,
    asterisk_conf,
    http_conf,
    logger_conf,
    modules_conf,
    rtp_conf,
)
from clusterq_testing.asterisk_conf_dialplan import app_queue_extensions, extensions_conf, queues_conf
from clusterq_testing.asterisk_conf_pjsip import pjsip_conf
from clusterq_testing.asterisk_node_config import ConfigFile, NodeConfig

__all__ = ["render_config"]

# Config files the core or a module reads at start; empty ones silence "Unable to open" noise.
_EMPTY_FILES: tuple[str, ...] = (
    "stasis.conf",
    "websocket_client.conf",
    "features.conf",
    "ccss.conf",
    "udptl.conf",
    "acl.conf",
    "sorcery.conf",
    "pjproject.conf",
    "res_stun_monitor.conf",
)


def render_config(cfg: NodeConfig) -> tuple[ConfigFile, ...]:
    """Every file of the node's etc directory."""
    files = [
        ConfigFile("asterisk.conf", asterisk_conf(cfg)),
        ConfigFile("modules.conf", modules_conf(MODULES + (APP_QUEUE_MODULES if cfg.app_queue else ()))),
        ConfigFile("logger.conf", logger_conf()),
        ConfigFile("http.conf", http_conf(cfg.bind, cfg.http_port)),
        ConfigFile("ari.conf", ari_conf(cfg.ari_user, cfg.ari_password)),
        ConfigFile("rtp.conf", rtp_conf(cfg.rtp_start, cfg.rtp_end)),
        ConfigFile("extensions.conf", extensions_conf(cfg.stasis_app, cfg.test_app)
                   + ("\n" + app_queue_extensions() if cfg.app_queue else "")),
        ConfigFile("pjsip.conf", pjsip_conf(cfg)),
        ConfigFile("musiconhold.conf", "[general]\n[default]\nmode = files\ndirectory = moh\nsort = alpha\n"),
        ConfigFile("cdr.conf", "[general]\nenable = no\n"),
        ConfigFile("cel.conf", "[general]\nenable = no\n"),
        # AMI is core (not a module): keep it explicitly off, nothing but ARI and SIP may listen
        ConfigFile("manager.conf", "[general]\nenabled = no\n"),
    ]
    files.extend(ConfigFile(name, "") for name in _EMPTY_FILES)
    if cfg.app_queue is not None:
        files += [ConfigFile("queues.conf", queues_conf(cfg.app_queue)), ConfigFile("queuerules.conf", "")]
    return tuple(files)

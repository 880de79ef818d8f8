"""Builders shared by the test-node config tests."""

from __future__ import annotations

import re

from clusterq_testing.asterisk_node_config import NodeConfig, TrunkPeer


def node_config(**overrides: object) -> NodeConfig:
    """Node `a` with trunks to `b` and `c`, ARI password `s3cret-pw`; `overrides` replace fields."""
    base: dict[str, object] = dict(
        name="a", instance_dir="/srv/clusterq/run1/a",
        module_dir="/usr/lib/x86_64-linux-gnu/asterisk/modules",
        http_port=18088, sip_port=5061, rtp_start=20200, rtp_end=20599, ari_user="clusterq",
        ari_password="s3cret-pw", peers=(TrunkPeer("b", 5062), TrunkPeer("c", 5063)),
    )
    base.update(overrides)
    return NodeConfig(**base)  # type: ignore[arg-type]


def sections(text: str) -> list[str]:
    """Section names of a config file, in order (duplicates kept)."""
    return re.findall(r"^\[([^\]]+)\]", text, flags=re.MULTILINE)

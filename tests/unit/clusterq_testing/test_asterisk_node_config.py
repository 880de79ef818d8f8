"""The values that decide a test node's configuration: names and ranges are checked when built."""

from __future__ import annotations

import pytest

from clusterq_testing.asterisk_node_config import PhoneAccount, TrunkPeer
from tests.unit.clusterq_testing.helpers import node_config


@pytest.mark.parametrize("overrides", [
    {"name": "bad name"},
    {"peers": (TrunkPeer("a", 5062),)},  # a peer named like the node itself
    {"phones": (PhoneAccount("b", "x"),)},  # a phone named like a peer
    {"rtp_start": 30000, "rtp_end": 20000},
    {"stasis_app": "no,commas"},
])
def test_invalid_configs_are_rejected(overrides: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        node_config(**overrides)

"""split_app_args against real Asterisk 22: for Stasis() data with quotes, escapes, parentheses and
brackets, what a listed channel's `dialplan.app_data` splits into equals the arguments Asterisk itself
handed to StasisStart (what a restarted stasis app re-reads must be what the first one was given).

The channel is Local/s@clusterq-agent-ops-test/n, whose dialplan runs Stasis(clusterq,${CQ_ARGS}); a
stand-in AriObserver registered as app `clusterq` receives it (no clusterq process runs here).
"""

from __future__ import annotations

import uuid

import pytest

from clusterq_testing.observer import AriObserver
from stasis_app.ari.app_args import split_app_args
from stasis_app.ari.events import channel_info, in_stasis_app
from tests.conftest import AsteriskFactory, ObserverFactory

pytestmark = pytest.mark.integration

DATA = [
    "agent-login,alice,queue=support",
    'agent-login,"bob,jr",state_interface=PJSIP/1001',
    "agent-pause,carol,reason=lunch\\, back at 2",
    'agent-login,dave,note=say \\"hi\\"',
    "support,f(a,b),[c,d],e",
    'support,"(",x',
    "support,,x,",
]


async def _listed_args(phones: AriObserver, stand_in: AriObserver, cq_args: str) -> tuple[tuple[str, ...], str]:
    """Originate into Stasis(clusterq,<cq_args>): (StasisStart's args, the listed channel's app_data)."""
    uid = uuid.uuid4().hex[:10]
    ours = f"args-{uid}"
    mark = stand_in.mark()
    await phones.ari("POST", "/channels", {
        "endpoint": "Local/s@clusterq-agent-ops-test/n", "app": phones.app, "appArgs": "phone",
        "channelId": f"ph-{uid}", "otherChannelId": ours, "formats": "ulaw"},
        {"variables": {"CQ_ARGS": cq_args}})
    start = await stand_in.wait_for(lambda e: e.type == "StasisStart" and e.channel_id == ours, since=mark)
    raw = await stand_in.ari("GET", f"/channels/{ours}")
    info = channel_info(raw)
    assert in_stasis_app(str(raw["dialplan"]["app_name"]), info.app_data, "clusterq"), raw["dialplan"]
    await stand_in.ari("DELETE", f"/channels/{ours}")
    return start.args, info.app_data


async def test_listed_app_data_splits_into_the_stasis_start_args(
        asterisk_factory: AsteriskFactory, observers: ObserverFactory) -> None:
    (node,) = await asterisk_factory(["a"])
    phones = await observers(node)
    stand_in = await observers(node, "clusterq")
    plain_split_wrong = 0
    for cq_args in DATA:
        args, app_data = await _listed_args(phones, stand_in, cq_args)
        assert split_app_args(app_data) == ("clusterq", *args), (cq_args, app_data, args)
        plain_split_wrong += tuple(app_data.split(",")) != ("clusterq", *args)
    # The strings are chosen so that most of them defeat a plain comma split.
    assert plain_split_wrong >= 5

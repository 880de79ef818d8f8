"""Agents log in, pause and log out from the dialplan (app_queue's AddQueueMember & co.) on real Asterisk +
etcd + coordinator: `Stasis(clusterq,agent-login,dora,...)` in a feature-code context, whose next
priority reports CLUSTERQ_AGENT_STATUS / CLUSTERQ_MESSAGE in a UserEvent.

The operation channel is a Local channel the test originates into `clusterq-agent-ops-test` with the
Stasis args in CQ_ARGS; its ;1 half stays with the tests' observer and is never answered. That the
agent can be rung comes from the observer's events (a caller bridged with dora's phone), not from
clusterq's own reports.
"""

from __future__ import annotations

import uuid
from typing import Any

import grpc
import pytest

from clusterq_testing.observer import AriObserver
from tests.e2e.calls import bridged
from tests.e2e.conftest import Clusterq

pytestmark = pytest.mark.e2e

AGENT_ENDPOINT = "Local/dora@clusterq-agents-test/n"


async def _agent_op(obs: AriObserver, args: str) -> tuple[str, str]:
    """Run Stasis(clusterq,<args>) on a fresh channel; (status, message) its UserEvent reports. The
    channel must come back without ever being answered."""
    uid = uuid.uuid4().hex[:10]
    phone, op = f"op-ph-{uid}", f"op-{uid}"
    await obs.ari("POST", "/channels", {
        "endpoint": "Local/s@clusterq-agent-ops-test/n", "app": obs.app, "appArgs": "agentop",
        "channelId": phone, "otherChannelId": op, "formats": "ulaw"}, {"variables": {"CQ_ARGS": args}})
    event = await obs.wait_for(lambda e: e.type == "ChannelUserevent" and e.channel_id == op
                               and e.raw.get("eventname") == "ClusterqAgentOp", timeout=15)
    # Still ringing when the dialplan goes on: clusterq never answered it.
    assert event.raw["channel"]["state"] == "Ring", event.raw["channel"]
    assert not [e for e in obs.events_of("ChannelStateChange") if e.channel_id == op], "the channel was answered"
    fields = event.raw["userevent"]
    return str(fields["status"]), str(fields["message"])


async def test_an_agent_logs_in_pauses_and_logs_out_from_the_dialplan(
        clusterq: Clusterq, asterisk_factory: Any, observers: Any) -> None:
    [node] = await asterisk_factory(["a"])
    obs: AriObserver = await observers(node)
    await clusterq.start_coordinators(1)
    await clusterq.start_stasis([node])
    client = clusterq.client()
    obs.set_agent_behaviour("dora", "answer", delay=0.1)

    assert await _agent_op(obs, f"agent-login,dora,queue=support,endpoint={AGENT_ENDPOINT}") == (
        "LOGGEDIN", "agent dora is available")
    shown = await client.agent_state("dora")
    assert (shown.endpoint, shown.home_node, [m.queue for m in shown.queues]) == (AGENT_ENDPOINT, "a", ["support"])

    # dora can take calls now: a caller of support is bridged with her phone.
    caller = await obs.originate_caller("support", caller_number="904")
    await bridged(obs, caller.queue_id, timeout=15)
    [start] = [e for e in obs.events_of("StasisStart") if e.args[:2] == ("agent", "dora")]
    assert start.raw["channel"]["caller"]["number"] == "904"
    await obs.hangup(caller.phone_id)

    assert await _agent_op(obs, "agent-pause,dora,reason=lunch") == ("PAUSED", "agent dora is paused (lunch)")
    assert (await client.agent_state("dora")).pause_reason == "lunch"
    assert (await _agent_op(obs, "agent-logout,dora"))[0] == "LOGGEDOUT"
    with pytest.raises(grpc.aio.AioRpcError) as gone:
        await client.agent_state("dora")
    assert gone.value.code() == grpc.StatusCode.NOT_FOUND
    assert await _agent_op(obs, "agent-pause,nobody") == ("NOTFOUND", "agent nobody is not logged in")
    assert (await _agent_op(obs, "agent-login,dora"))[0] == "INVALID"

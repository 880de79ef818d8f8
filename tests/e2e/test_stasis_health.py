"""The stasis app's /readyz on real Asterisk and a real coordinator: ready only with ARI up and a
coordinator reached once; a coordinator outage keeps it ready, an Asterisk outage does not. Its
/metrics on the same port counts a real caller joining and hanging up."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from clusterq_common.prometheus import CONTENT_TYPE
from clusterq_testing.asterisk import AsteriskNode
from clusterq_testing.exposition import Family, parse
from clusterq_testing.observer import AriObserver
from clusterq_testing.ports import free_tcp_port
from tests.e2e.conftest import Clusterq

pytestmark = pytest.mark.e2e


async def _readyz(http: aiohttp.ClientSession, url: str) -> tuple[int, str]:
    try:
        async with http.get(url, timeout=aiohttp.ClientTimeout(total=2)) as resp:
            return resp.status, (await resp.text()).strip()
    except aiohttp.ClientConnectionError:
        return 0, "not listening"


async def _until(http: aiohttp.ClientSession, url: str, want: tuple[int, str], timeout: float = 20.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    got = (0, "")
    while asyncio.get_running_loop().time() < deadline:
        got = await _readyz(http, url)
        if got == want:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"/readyz answered {got}, wanted {want} within {timeout} s")


async def _metrics_until(http: aiohttp.ClientSession, url: str, want: dict[tuple[str, str], float],
                         timeout: float = 10.0) -> dict[str, Family]:
    """/metrics once every (family, label value or "") in `want` has its value (the strict parser reads each)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        async with http.get(url, timeout=aiohttp.ClientTimeout(total=2)) as resp:
            assert (resp.status, resp.headers["Content-Type"]) == (200, CONTENT_TYPE)
            families = parse(await resp.text())
        got = {(name, label): next((v for k, v in families[name].samples.items()
                                    if [lv for _, lv in k] == ([label] if label else [])), None)
               for name, label in want}
        if got == want:
            return families
        assert asyncio.get_running_loop().time() < deadline, f"/metrics shows {got}, wanted {want}"
        await asyncio.sleep(0.1)


async def test_readiness_follows_asterisk_and_latches_the_coordinator(
        clusterq: Clusterq, asterisk_factory: object, observers: object) -> None:
    node: AsteriskNode
    [node] = await asterisk_factory(["a"])  # type: ignore[operator]
    port = free_tcp_port()
    url = f"http://127.0.0.1:{port}/readyz"
    async with aiohttp.ClientSession() as http:
        # The app is told where the coordinator will be; nothing listens there yet.
        coord_port = free_tcp_port()
        clusterq.addresses["future"] = f"127.0.0.1:{coord_port}"
        await clusterq.start_stasis([node], wait=False, extra_env={"CLUSTERQ_HEALTH_LISTEN": f"127.0.0.1:{port}"})
        del clusterq.addresses["future"]
        proc = clusterq.stasis[node.name]
        await proc.wait_log("connected (app clusterq)", timeout=20)
        await _until(http, url, (503, "no coordinator reached yet"))
        await clusterq.start_coordinators(1, ports=[coord_port])
        await _until(http, url, (200, "ready"))

        # Stasis(clusterq) really works on the node the probe calls ready: a caller is answered into it.
        obs: AriObserver = await observers(node)  # type: ignore[operator]
        caller = await obs.originate_caller("support")
        await obs.wait_for_type("StasisStart", caller.phone_id, timeout=10)

        # /metrics on the probe port: the caller joined and waits, then hangs up.
        metrics = f"http://127.0.0.1:{port}/metrics"
        await _metrics_until(http, metrics, {("clusterq_node_callers_joined_total", ""): 1,
                                             ("clusterq_node_callers", "waiting"): 1,
                                             ("clusterq_node_queue_callers", "support"): 1,
                                             ("clusterq_node_coordinator_connected", ""): 1,
                                             ("clusterq_node_ari_connected", ""): 1})
        await obs.hangup(caller.phone_id)
        # Events pending 0: the CallLeft has left for the coordinator (counted in events sent).
        families = await _metrics_until(http, metrics, {("clusterq_node_callers_hung_up_total", "waiting"): 1,
                                                        ("clusterq_node_callers", "waiting"): 0,
                                                        ("clusterq_node_events_pending", ""): 0})
        assert families["clusterq_node_callers_joined_total"].samples == {(): 1}
        assert not any(families["clusterq_node_callers_sent_back_total"].samples.values())
        assert families["clusterq_node_leader_epoch"].samples[()] >= 1
        assert families["clusterq_node_events_sent_total"].samples[()] >= 2, "its CallJoined and CallLeft"

        # The coordinator dies: callers keep their music, the node stays in service.
        noticed = proc.log_text().count(f"coordinator 127.0.0.1:{coord_port}")
        for c in clusterq.coordinators.values():
            await c.async_stop()
        deadline = asyncio.get_running_loop().time() + 20
        while proc.log_text().count(f"coordinator 127.0.0.1:{coord_port}") <= noticed:
            assert asyncio.get_running_loop().time() < deadline, "the app never noticed the coordinator gone"
            await asyncio.sleep(0.1)
        assert await _readyz(http, url) == (200, "ready")
        await asyncio.sleep(1.0)
        assert await _readyz(http, url) == (200, "ready")

        # Asterisk stops: Stasis() would fail at once, so the node is not ready until it is back.
        await obs.close()
        await node.async_stop()
        await _until(http, url, (503, "ARI not connected"))
        await node.async_start()
        await _until(http, url, (200, "ready"), timeout=40)

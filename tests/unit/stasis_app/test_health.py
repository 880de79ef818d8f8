"""The stasis app's /livez, /readyz and /metrics: what makes a node ready, and the HTTP answers."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from clusterq_common.prometheus import CONTENT_TYPE
from clusterq_testing.exposition import parse
from stasis_app.ari.fake import FakeAri
from stasis_app.config import StasisSettings
from stasis_app.health import HealthServer, Readiness, parse_listen
from stasis_app.metrics import collect, render
from tests.unit.stasis_app.harness import running


@pytest.mark.parametrize(("state", "reason"), [
    (Readiness(ari_connected=True, coordinator_seen=True), ""),
    (Readiness(ari_connected=False, coordinator_seen=True), "ARI not connected"),
    (Readiness(ari_connected=True, coordinator_seen=False), "no coordinator reached yet"),
    (Readiness(ari_connected=False, coordinator_seen=False), "ARI not connected"),
    (Readiness(ari_connected=True, coordinator_seen=True, stood_down=True),
     "another instance owns the ARI application on this node"),
    (Readiness(ari_connected=True, coordinator_seen=True, stopping=True), "shutting down"),
])
def test_ready_needs_ari_now_and_a_coordinator_once(state: Readiness, reason: str) -> None:
    assert state.reason == reason


@pytest.mark.parametrize("bad", ["8090", ":8090", "host:", "host:65536", "host:http"])
def test_a_bad_listen_address_is_refused_with_the_rule(bad: str) -> None:
    with pytest.raises(ValueError, match="host:port"):
        parse_listen(bad)
    with pytest.raises(ValueError, match="host:port"):
        StasisSettings.from_env({"CLUSTERQ_NODE_ID": "a", "CLUSTERQ_ARI_PASSWORD": "p",
                                 "CLUSTERQ_HEALTH_LISTEN": bad})


def test_listen_addresses_parse() -> None:
    assert parse_listen("0.0.0.0:8090") == ("0.0.0.0", 8090)
    assert parse_listen("[::1]:8090") == ("::1", 8090)
    assert StasisSettings.from_env({"CLUSTERQ_NODE_ID": "a", "CLUSTERQ_ARI_PASSWORD": "p"}).health_listen == ""


async def test_the_node_is_ready_after_resync_and_a_coordinator_and_stays_ready_without_one() -> None:
    ari = FakeAri("a")
    async with running(ari, connect=False) as n:
        assert n.app.readiness().reason == "no coordinator reached yet"
        n.coord.connect()
        assert n.app.readiness().reason == ""
        n.coord.disconnect()  # a coordinator outage: callers keep their music, the node stays in service
        assert n.app.readiness().reason == ""
        ari.drop_connection()
        await n.settle()
        assert n.app.readiness().reason == "ARI not connected"
        ari.restore_connection()
        await n.settle()
        assert n.app.readiness().reason == ""
        ari.replace_application()
        await n.settle()
        assert n.app.readiness().stood_down


async def test_the_http_endpoints_answer_from_the_current_readiness() -> None:
    state = [Readiness(ari_connected=False, coordinator_seen=True)]
    server = HealthServer("127.0.0.1:0", lambda: state[0])
    await server.start()
    try:
        base = f"http://127.0.0.1:{server.port}"
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{base}/livez") as resp:
                assert resp.status == 200
            async with http.get(f"{base}/readyz") as resp:
                assert resp.status == 503
                assert (await resp.text()).strip() == "ARI not connected"
            state[0] = Readiness(ari_connected=True, coordinator_seen=True)
            async with http.get(f"{base}/readyz") as resp:
                assert resp.status == 200
            async with http.get(f"{base}/metrics") as resp:
                assert resp.status == 404, "no metrics given: no /metrics"
    finally:
        await server.close()


async def test_metrics_are_served_beside_the_probes_and_other_paths_and_methods_are_refused() -> None:
    ari = FakeAri("a")
    async with running(ari) as n:
        n.app.counters.callers_joined = 3
        server = HealthServer("127.0.0.1:0", n.app.readiness, lambda: render(collect(n.app, "9.9")))
        await server.start()
        try:
            base = f"http://127.0.0.1:{server.port}"
            async with aiohttp.ClientSession() as http:
                async with http.get(f"{base}/metrics") as resp:
                    assert resp.status == 200
                    assert resp.headers["Content-Type"] == CONTENT_TYPE
                    families = parse(await resp.text())
                assert families["clusterq_node_callers_joined_total"].samples == {(): 3.0}
                assert families["clusterq_node_build_info"].samples == {(("version", "9.9"),): 1.0}
                n.app.counters.callers_joined = 4  # read at each scrape
                async with http.get(f"{base}/metrics") as resp:
                    assert parse(await resp.text())["clusterq_node_callers_joined_total"].samples == {(): 4.0}
                async with http.head(f"{base}/metrics") as resp:
                    assert resp.status == 200
                for path in ("/", "/metric", "/metrics/x", "/favicon.ico"):
                    async with http.get(f"{base}{path}") as resp:
                        assert resp.status == 404, path
                for path in ("/metrics", "/livez", "/readyz"):
                    async with http.post(f"{base}{path}") as resp:
                        assert resp.status == 405, path
                async with http.get(f"{base}/livez") as resp:
                    assert (resp.status, await resp.text()) == (200, "ok\n")
                async with http.get(f"{base}/readyz") as resp:
                    assert (resp.status, await resp.text()) == (200, "ready\n")
        finally:
            await server.close()


async def test_a_stopping_node_is_not_ready_while_its_connections_still_look_up() -> None:
    ari = FakeAri("a")
    async with running(ari) as n:
        assert n.app.readiness().reason == ""
        assert n.task is not None
        n.task.cancel()  # what SIGTERM does
        await asyncio.gather(n.task, return_exceptions=True)
        assert n.app.readiness().reason == "shutting down"


async def test_a_taken_port_fails_start_and_leaves_nothing_open() -> None:
    first = HealthServer("127.0.0.1:0", lambda: Readiness(ari_connected=True, coordinator_seen=True))
    await first.start()
    try:
        second = HealthServer(f"127.0.0.1:{first.port}", lambda: Readiness(ari_connected=True, coordinator_seen=True))
        with pytest.raises(OSError):
            await second.start()
        await second.close()  # nothing to close: start cleaned up after itself
    finally:
        await first.close()

"""HTTP health endpoints of the stasis app, for Kubernetes probes (`CLUSTERQ_HEALTH_LISTEN`).

- `GET /livez`: 200 while the process's event loop answers. Nothing else: restarting the app
  fixes neither an Asterisk nor a coordinator outage.
- `GET /readyz`: 200 when this node can take calls into `Stasis(clusterq,...)`, else 503 with the
  reason as text. Ready means: the ARI connection is up now and its first resync is done (without it,
  Stasis() fails at once with STASISSTATUS=FAILED), and a coordinator was reached at least once
  since the process started, and the app is not shutting down. The coordinator part is latched on
  purpose: during a coordinator outage callers keep their music for the grace time and come back
  from it, and marking every node unready at once would only add a second outage; but a node whose
  coordinator settings are wrong never becomes ready, so a rolling update stops on it.

- `GET /metrics`: the node's Prometheus metrics (stasis_app/metrics.py), on the same address: one
  port per pod to expose and probe, and a scrape is as cheap as a probe.

A pure `Readiness` value computes the answer (tested without HTTP); `HealthServer` serves it with
aiohttp, which the app already depends on through aioari.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from aiohttp import web

from clusterq_common.prometheus import CONTENT_TYPE

log = logging.getLogger(__name__)

__all__ = ["HealthServer", "Readiness", "parse_listen"]


@dataclass(frozen=True)
class Readiness:
    """What /readyz answers from: the node app's view of its two connections."""

    ari_connected: bool
    coordinator_seen: bool
    stood_down: bool = False
    stopping: bool = False

    @property
    def reason(self) -> str:
        """Empty when ready, else why not (the text /readyz returns with 503)."""
        if self.stopping:
            return "shutting down"
        if self.stood_down:
            return "another instance owns the ARI application on this node"
        if not self.ari_connected:
            return "ARI not connected"
        if not self.coordinator_seen:
            return "no coordinator reached yet"
        return ""


def parse_listen(listen: str) -> tuple[str, int]:
    """`host:port` (IPv6 in brackets; port 0: any free port) to (host, port); ValueError with the rule otherwise."""
    host, sep, port = listen.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) < 65536:
        raise ValueError(f"CLUSTERQ_HEALTH_LISTEN must be host:port, not {listen!r}")
    return host.strip("[]"), int(port)


class HealthServer:
    """/livez, /readyz and (given `metrics`) /metrics on one address; `readiness` and `metrics` (the
    exposition text) are called at each request."""

    def __init__(self, listen: str, readiness: Callable[[], Readiness],
                 metrics: Callable[[], str] | None = None) -> None:
        self._host, self._port = parse_listen(listen)
        self._readiness = readiness
        self._metrics = metrics
        self._runner: web.AppRunner | None = None
        self.port = 0

    async def start(self) -> None:
        """Bind and serve; `port` is the bound port afterwards (listen may use port 0)."""
        app = web.Application()
        app.router.add_get("/livez", self._livez)
        app.router.add_get("/readyz", self._readyz)
        if self._metrics is not None:
            app.router.add_get("/metrics", self._metrics_text)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        try:
            await web.TCPSite(runner, self._host, self._port).start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        self.port = int(runner.addresses[0][1])
        log.info("health endpoints on %s:%d (/livez, /readyz%s)", self._host, self.port,
                 ", /metrics" if self._metrics is not None else "")

    async def close(self) -> None:
        """Stop serving."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _livez(self, _request: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def _readyz(self, _request: web.Request) -> web.Response:
        reason = self._readiness().reason
        if reason:
            return web.Response(status=503, text=reason + "\n")
        return web.Response(text="ready\n")

    async def _metrics_text(self, _request: web.Request) -> web.Response:
        assert self._metrics is not None  # the route exists only with it
        return web.Response(body=self._metrics().encode("utf-8"), headers={"Content-Type": CONTENT_TYPE})

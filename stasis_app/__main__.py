"""Composition root of the stasis app: settings -> ARI adapter -> NodeApp."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys

from clusterq_common.prometheus import build_version
from clusterq_common.startup import freeze_startup_heap
from stasis_app.ari.aioari_adapter import AioAriAdapter
from stasis_app.ari.port import AriSettings
from stasis_app.config import StasisSettings
from stasis_app.health import HealthServer
from stasis_app.metrics import collect, render
from stasis_app.node import NodeApp

log = logging.getLogger("stasis_app")


async def serve(settings: StasisSettings) -> None:
    """Run one node's stasis app until SIGTERM/SIGINT."""
    ari = AioAriAdapter(AriSettings(url=settings.ari_url, username=settings.ari_user,
                                    password=settings.ari_password, node_id=settings.node_id, app=settings.app))
    app = NodeApp(settings, ari)
    version = build_version()
    health = (HealthServer(settings.health_listen, app.readiness, lambda: render(collect(app, version)))
              if settings.health_listen else None)
    if health is not None:
        await health.start()
    task = asyncio.ensure_future(app.run())
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, task.cancel)
    tls = settings.coordinator_tls
    log.info("stasis app for node %s: ARI %s, coordinators %s (%s)", settings.node_id, settings.ari_url,
             ",".join(settings.coordinators),
             "plaintext" if tls is None else "TLS with a client certificate" if tls.mutual else "TLS")
    try:
        await task
    except asyncio.CancelledError:
        pass
    finally:
        app.coord.close()
        await ari.close()
        if health is not None:
            await health.close()



def main() -> None:
    """Entry point: `python -m stasis_app` (configuration from CLUSTERQ_* variables)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s stasis %(levelname)s %(name)s: %(message)s")
    try:
        settings = StasisSettings.from_env()
    except (ValueError, OSError) as exc:  # a bad variable or an unreadable secret/TLS file: named, never its content
        log.error("configuration: %s", exc)
        sys.exit(2)
    freeze_startup_heap()
    asyncio.run(serve(settings))


if __name__ == "__main__":
    main()

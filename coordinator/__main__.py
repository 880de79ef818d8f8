"""Composition root of a coordinator replica: settings -> etcd -> election -> gRPC server."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
from functools import partial

from clusterq_common.startup import freeze_startup_heap
from coordinator.config import CoordinatorSettings, host_port
from coordinator.definitions import load_file
from coordinator.election.election import Election
from coordinator.election.leader import run_elected
from coordinator.metrics import build_version, collect
from coordinator.metrics_http import MetricsServer
from coordinator.replica import ReplicaState, lead
from coordinator.rpc.server import build_health_server, build_server, new_health, set_ready
from coordinator.store.etcd_kv import EtcdConfig, EtcdCredentials, EtcdKv, EtcdTls
from coordinator.store.kv import KvPermissionDenied
from coordinator.store.queue_store import QueueStore

log = logging.getLogger("coordinator")


class StartupError(Exception):
    """The replica cannot start (or go on) with this configuration; the message says why."""


def check_queues_file(settings: CoordinatorSettings) -> None:
    """Parse the queues file with the leader's own loader; StartupError if it is unusable.

    The leader applies the file only when it wins an election: an error found then would leave the
    cluster without a leader, long after the rollout that brought the file went through."""
    path = settings.queues_file
    if path is None:
        return
    try:
        load_file(path)
    except Exception as exc:  # OSError, YAML syntax, DefinitionError: all fatal, all explained
        raise StartupError(f"queues file {path} (CLUSTERQ_QUEUES_FILE) is not usable: {exc}") from exc


def etcd_config(settings: CoordinatorSettings) -> EtcdConfig:
    """The etcd client's configuration, the TLS files read now; StartupError if one is unusable.

    The messages name files and variables, never a file's content or the password."""
    credentials = (EtcdCredentials(settings.etcd_user, settings.etcd_password) if settings.etcd_user
                   else None)
    tls = None
    if settings.etcd_ca_file is not None:
        files = {"CLUSTERQ_ETCD_CA_FILE": settings.etcd_ca_file, "CLUSTERQ_ETCD_CERT_FILE": settings.etcd_cert_file,
                 "CLUSTERQ_ETCD_KEY_FILE": settings.etcd_key_file}
        pem: dict[str, bytes | None] = {}
        for var, path in files.items():
            try:
                pem[var] = None if path is None else path.read_bytes()
            except OSError as exc:
                raise StartupError(f"{var} {path} cannot be read: {exc.strerror or exc}") from None
        try:
            tls = EtcdTls(ca=pem["CLUSTERQ_ETCD_CA_FILE"] or b"", cert=pem["CLUSTERQ_ETCD_CERT_FILE"],
                          key=pem["CLUSTERQ_ETCD_KEY_FILE"])
        except ValueError as exc:
            raise StartupError(f"etcd TLS files (CLUSTERQ_ETCD_CA_FILE / _CERT_FILE / _KEY_FILE): {exc}") from None
    return EtcdConfig(endpoints=settings.etcd_endpoints, tls=tls, credentials=credentials)


async def _stop_on_refused_credentials(kv: EtcdKv, settings: CoordinatorSettings) -> None:
    """Wrong etcd credentials, or a user whose roles do not cover the prefix, are configuration
    errors no retry can fix: stop the replica (exit status 2) with etcd's reason instead of
    campaigning against a refusal forever while reporting ready."""
    await kv.credentials_refused.wait()
    if isinstance(kv.auth_error, KvPermissionDenied):
        prefix = settings.etcd_prefix.rstrip("/") + "/"
        # Without a user name, etcd's --client-cert-auth takes the user from the certificate.
        user = repr(settings.etcd_user) if settings.etcd_user else "(the client certificate's common name)"
        raise StartupError(f"{kv.auth_error}: etcd user {user} needs readwrite on the prefix "
                           f"{prefix} (CLUSTERQ_ETCD_PREFIX), e.g. `etcdctl role grant-permission ROLE "
                           f"readwrite --prefix=true {prefix}`")
    raise StartupError(f"{kv.auth_error} (check CLUSTERQ_ETCD_USER / CLUSTERQ_ETCD_PASSWORD)")


async def _report_readiness(state: ReplicaState, kv: EtcdKv) -> None:
    """Keep "" NOT_SERVING until etcd granted this replica's first lease (it campaigns), then
    SERVING until shutdown starts (this task is cancelled first thing then)."""
    try:
        await kv.lease_granted.wait()
        log.info("etcd granted the election lease: ready")
        await set_ready(state, True)
        await asyncio.Future()  # until cancelled
    finally:
        await set_ready(state, False)


async def _follow_leader(state: ReplicaState, election: Election) -> None:
    """Keep state.leader_address current (followers hand it to clients), also while leading:
    a replica that steps down must point at its successor, not at itself."""
    async for info in election.observe():
        state.leader_address = info.value.decode() if info is not None else ""


async def _start_metrics(state: ReplicaState, listen: str) -> MetricsServer:
    """GET /metrics on `listen`, rendered from this replica's state at each scrape; StartupError if
    the address cannot be bound."""
    version = build_version()
    host, port = host_port(listen, "CLUSTERQ_METRICS_LISTEN")
    server = MetricsServer(host, port, lambda: collect(state.runtime, version))
    try:
        await server.start()
    except OSError as exc:  # address in use, no such address or host name
        raise StartupError(f"cannot listen on {listen} (CLUSTERQ_METRICS_LISTEN): {exc.strerror or exc}") from None
    log.info("Prometheus metrics, plaintext, on http://%s/metrics", listen)
    return server


async def serve(settings: CoordinatorSettings, ready: asyncio.Event | None = None) -> None:
    """Run one replica until cancelled: campaign, lead when elected, serve gRPC throughout.

    Raises StartupError (before serving anything) for a queues file that does not load."""
    check_queues_file(settings)
    kv = EtcdKv(etcd_config(settings))
    store = QueueStore(kv, settings.etcd_prefix)
    state = ReplicaState(settings, store, new_health())
    try:
        server, _port = await build_server(state, settings.listen, settings.tls)
    except RuntimeError as exc:  # grpc's bind failure (address in use, no such address)
        raise StartupError(f"cannot listen on {settings.listen} (CLUSTERQ_LISTEN): {exc}") from None
    tls = settings.tls
    log.info("replica %s serving gRPC on %s (advertised %s, %s)", settings.replica_id, settings.listen,
             settings.advertise_address,
             "plaintext" if tls is None else "TLS, client certificates required" if tls.mutual else "TLS")
    health_server = None
    if settings.health_listen:
        try:
            health_server, _ = await build_health_server(state, settings.health_listen)
        except BaseException as exc:
            await server.stop(None)
            if isinstance(exc, RuntimeError):
                raise StartupError(f"cannot listen on {settings.health_listen} (CLUSTERQ_HEALTH_LISTEN): "
                                   f"{exc}") from None
            raise
        log.info("health service alone, plaintext, on %s", settings.health_listen)
    metrics_server = None
    try:
        if settings.metrics_listen:
            metrics_server = await _start_metrics(state, settings.metrics_listen)
        if ready is not None:
            ready.set()
        async with asyncio.TaskGroup() as tg:
            tg.create_task(run_elected(kv, store.election_prefix, settings.advertise_address.encode(),
                                       settings.lease_ttl, partial(lead, state),
                                       step_down_delay=settings.fault_step_down_delay))
            tg.create_task(_follow_leader(state, Election(kv, store.election_prefix)))
            tg.create_task(_report_readiness(state, kv))
            tg.create_task(_stop_on_refused_credentials(kv, settings))
    except BaseExceptionGroup as eg:
        fatal = eg.subgroup(StartupError)
        if fatal is not None:  # the one configuration error, not a group, for main() to report
            raise fatal.exceptions[0] from None
        raise
    finally:
        await set_ready(state, False)
        # The probe port last: it reports NOT_SERVING (set above) while the API drains.
        await server.stop(1.0)
        if health_server is not None:
            await health_server.stop(None)
        if metrics_server is not None:
            await metrics_server.close()
        with contextlib.suppress(Exception):
            await kv.close()



def main() -> None:
    """Entry point: `python -m coordinator` (configuration from CLUSTERQ_* variables)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s coord %(levelname)s %(name)s: %(message)s")
    try:
        settings = CoordinatorSettings.from_env()
    except (ValueError, OSError) as exc:  # a bad variable, TLS or password file: named, never its content
        log.error("configuration: %s", exc)
        sys.exit(2)
    freeze_startup_heap()

    async def run() -> None:
        task = asyncio.ensure_future(serve(settings))
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, task.cancel)
        try:
            await task
        except asyncio.CancelledError:
            pass
        except StartupError as exc:  # serve() checks the configuration before it serves anything
            log.error("%s", exc)
            sys.exit(2)

    profile_out = os.environ.get("CLUSTERQ_PROFILE_OUT")
    if not profile_out:
        asyncio.run(run())
        return
    # Benchmarks only: cProfile of the event-loop thread, written when the replica stops (SIGTERM).
    import cProfile

    profiler = cProfile.Profile()
    profiler.enable()
    try:
        asyncio.run(run())
    finally:
        profiler.disable()
        profiler.dump_stats(profile_out)


if __name__ == "__main__":
    main()

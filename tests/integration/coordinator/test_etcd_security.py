"""EtcdKv against REAL etcd 3.4 with TLS, client certificates (--client-cert-auth) and user auth,
including auth token expiry (--auth-token-ttl 2), and one coordinator process configured only by
the CLUSTERQ_ETCD_* variables."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from clusterq_proto.v1 import admin_pb2, admin_pb2_grpc
from clusterq_testing.certs import CertPair, TestCa
from clusterq_testing.etcd import EtcdCluster, EtcdServerTls
from clusterq_testing.ports import free_tcp_port
from clusterq_testing.processes import coordinator_process
from coordinator.election.session import Session
from coordinator.replica import LEADERSHIP_SERVICE
from coordinator.store.etcd_kv import EtcdConfig, EtcdCredentials, EtcdKv, EtcdTls
from coordinator.store.kv import Compare, KvAuthError, KvPermissionDenied, KvUnavailable, Put, WatchEvent

pytestmark = pytest.mark.integration

PASSWORD = "etcd-root-Pw-7d1f"
TOKEN_TTL = 2  # --auth-token-ttl: a simple token unused this long is gone
PAST_TTL = TOKEN_TTL + 1.5


def _tls(ca: TestCa, client: CertPair | None = None) -> EtcdTls:
    return EtcdTls(ca=ca.ca_cert.read_bytes(), cert=None if client is None else client.cert.read_bytes(),
                   key=None if client is None else client.key.read_bytes())


def _kv(cluster: EtcdCluster, *, tls: EtcdTls | None = None, password: str | None = None,
        retry_budget: float = 5.0) -> EtcdKv:
    creds = None if password is None else EtcdCredentials("root", password)
    return EtcdKv(EtcdConfig(tuple(cluster.endpoints), tls=tls, credentials=creds, retry_budget=retry_budget))


@pytest.fixture
def ca(tmp_path: Path) -> TestCa:
    """A throwaway CA for the test."""
    return TestCa(tmp_path / "ca")


@pytest.fixture
async def auth_etcd(tmp_path: Path) -> AsyncIterator[EtcdCluster]:
    """Plaintext etcd with auth on (root / PASSWORD) and 2 s auth tokens."""
    async with EtcdCluster(tmp_path / "etcd", auth_token_ttl=TOKEN_TTL) as cluster:
        await cluster.enable_auth(PASSWORD)
        yield cluster


async def _watch_into(kv: EtcdKv, prefix: bytes, seen: list[WatchEvent]) -> None:
    async with contextlib.aclosing(kv.watch_prefix(prefix, 0)) as events:
        async for ev in events:
            seen.append(ev)


async def _until(cond: Callable[[], bool], timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not cond():  # noqa: ASYNC110 (polls a plain list)
            await asyncio.sleep(0.02)


async def _exercise(kv: EtcdKv, prefix: bytes) -> None:
    """put / get / txn, a lease granted and refreshed, and a watch seeing a put."""
    seen: list[WatchEvent] = []
    watcher = asyncio.create_task(_watch_into(kv, prefix, seen))
    try:
        rev = await kv.put(prefix + b"a", b"1")
        got = await kv.get(prefix + b"a")
        assert got is not None and got.value == b"1" and got.mod_revision == rev
        txn = await kv.txn([Compare(prefix + b"b", "create", "=", 0)], [Put(prefix + b"b", b"2")])
        assert txn.succeeded
        lease, ttl = await kv.lease_grant(5)
        assert ttl == 5 and await kv.lease_keepalive(lease) == 5
        await asyncio.sleep(0.3)  # the watch is created
        await kv.put(prefix + b"c", b"3", lease=lease)
        await _until(lambda: any(e.kv.key == prefix + b"c" for e in seen))
        await kv.lease_revoke(lease)
        assert await kv.get(prefix + b"c") is None
    finally:
        watcher.cancel()
        await asyncio.gather(watcher, return_exceptions=True)


# ------------------------------------------------------------------------------------- TLS
async def test_tls_with_the_right_ca_serves_kv_leases_and_watches(tmp_path: Path, ca: TestCa) -> None:
    async with EtcdCluster(tmp_path / "etcd", tls=EtcdServerTls.issue(ca)) as cluster:
        kv = _kv(cluster, tls=_tls(ca))
        try:
            await _exercise(kv, b"/tls/")
        finally:
            await kv.close()
        plain = _kv(cluster, retry_budget=1.0)  # a plaintext client is not served
        try:
            with pytest.raises(KvUnavailable):
                await plain.put(b"/tls/x", b"1")
        finally:
            await plain.close()


async def test_a_wrong_ca_fails_with_the_reason_within_the_retry_budget(tmp_path: Path, ca: TestCa) -> None:
    other = TestCa(tmp_path / "other-ca", name="some other CA")
    async with EtcdCluster(tmp_path / "etcd", tls=EtcdServerTls.issue(ca)) as cluster:
        kv = _kv(cluster, tls=_tls(other), retry_budget=1.0)
        t0 = time.monotonic()
        try:
            with pytest.raises(KvUnavailable, match="CERTIFICATE_VERIFY_FAILED"):
                await kv.put(b"/tls/x", b"1")
        finally:
            await kv.close()
        assert time.monotonic() - t0 < 2.5


async def test_client_cert_auth_refuses_a_client_without_a_certificate(tmp_path: Path, ca: TestCa) -> None:
    async with EtcdCluster(tmp_path / "etcd", tls=EtcdServerTls.issue(ca, client_cert_auth=True)) as cluster:
        anonymous = _kv(cluster, tls=_tls(ca), retry_budget=1.0)
        try:
            with pytest.raises(KvUnavailable):
                await anonymous.put(b"/mtls/x", b"1")
        finally:
            await anonymous.close()
        kv = _kv(cluster, tls=_tls(ca, ca.client("clusterq")))
        try:
            await _exercise(kv, b"/mtls/")
        finally:
            await kv.close()


# ------------------------------------------------------------------------------------ auth
async def test_the_right_password_works_and_no_credentials_is_an_auth_error(auth_etcd: EtcdCluster) -> None:
    kv = _kv(auth_etcd, password=PASSWORD)
    try:
        await _exercise(kv, b"/auth/")
        assert kv.authentications == 1
    finally:
        await kv.close()
    anonymous = _kv(auth_etcd)
    try:
        with pytest.raises(KvAuthError, match="requires authentication"):
            await anonymous.get(b"/auth/a")
        assert anonymous.credentials_refused.is_set()
    finally:
        await anonymous.close()


async def test_a_wrong_password_is_a_quick_auth_error_without_retries(auth_etcd: EtcdCluster) -> None:
    kv = _kv(auth_etcd, password="not-the-password")
    t0 = time.monotonic()
    try:
        with pytest.raises(KvAuthError, match="authentication failed, invalid user ID or password") as err:
            await kv.put(b"/auth/x", b"1")
        assert time.monotonic() - t0 < 1.0
        assert "not-the-password" not in str(err.value)
        assert kv.credentials_refused.is_set() and kv.auth_error is err.value
        assert kv.endpoint == auth_etcd.endpoints[0], "not treated as an endpoint failure"
    finally:
        await kv.close()


async def test_puts_leases_and_watches_outlive_the_auth_token(auth_etcd: EtcdCluster) -> None:
    kv = _kv(auth_etcd, password=PASSWORD)
    seen: list[WatchEvent] = []
    try:
        await kv.put(b"/ttl/a", b"1")
        lease, _ = await kv.lease_grant(10)
        watcher = asyncio.create_task(_watch_into(kv, b"/ttl/", seen))
        await asyncio.sleep(0.3)
        assert kv.authentications == 1
        await asyncio.sleep(PAST_TTL)  # the token expires unused
        assert await kv.lease_keepalive(lease) == 10
        await kv.put(b"/ttl/b", b"2", lease=lease)  # refused once, authenticated again
        assert kv.authentications == 2
        await _until(lambda: [e.kv.key for e in seen] == [b"/ttl/b"])
        # a restarted member forgets every simple token: the watch must come back by itself
        await asyncio.sleep(PAST_TTL)
        auth_etcd.kill_member(0)
        await auth_etcd.restart_member(0)
        await kv.put(b"/ttl/c", b"3")
        await _until(lambda: [e.kv.key for e in seen] == [b"/ttl/b", b"/ttl/c"], timeout=10)
        assert kv.authentications >= 3
        watcher.cancel()
        await asyncio.gather(watcher, return_exceptions=True)
    finally:
        await kv.close()


async def test_an_election_session_keeps_its_lease_across_token_expiries(auth_etcd: EtcdCluster) -> None:
    kv = _kv(auth_etcd, password=PASSWORD)
    session = Session(kv, 2.0)
    try:
        await session.start()
        await asyncio.sleep(2 * PAST_TTL)  # only keepalives in between: the token expires twice over
        assert not session.lost.is_set(), session.lost_reason
        await kv.put(b"/sess/k", b"v", lease=session.lease_id)
        assert (await kv.get(b"/sess/k")) is not None
    finally:
        await session.close(revoke=True)
        await kv.close()
    assert kv.authentications == 2


# -------------------------------------------------------------------------- a real replica
async def _leadership(address: str) -> health_pb2.HealthCheckResponse.ServingStatus.ValueType:
    async with grpc.aio.insecure_channel(address) as ch:
        r = await health_pb2_grpc.HealthStub(ch).Check(
            health_pb2.HealthCheckRequest(service=LEADERSHIP_SERVICE), timeout=1)
        return r.status


async def test_a_replica_configured_by_environment_leads_over_tls_and_auth(tmp_path: Path, ca: TestCa) -> None:
    tls = EtcdServerTls.issue(ca, client_cert_auth=True)
    client = ca.client("clusterq")
    async with EtcdCluster(tmp_path / "etcd", tls=tls, auth_token_ttl=TOKEN_TTL) as cluster:
        await cluster.enable_auth(PASSWORD)
        port = free_tcp_port()
        env = {"CLUSTERQ_ETCD_USER": "root", "CLUSTERQ_ETCD_PASSWORD": PASSWORD,
               "CLUSTERQ_ETCD_CA_FILE": str(ca.ca_cert), "CLUSTERQ_ETCD_CERT_FILE": str(client.cert),
               "CLUSTERQ_ETCD_KEY_FILE": str(client.key)}
        proc = coordinator_process("r-sec", tmp_path, etcd_endpoints=cluster.endpoints, port=port,
                                   extra_env=env)
        proc.start()
        try:
            # "leading with epoch" comes after the leadership service turned SERVING ("leading at epoch",
            # the election's line, comes before the term has loaded its state).
            await proc.wait_log("leading with epoch", timeout=20)
            assert await _leadership(f"127.0.0.1:{port}") == health_pb2.HealthCheckResponse.SERVING
            # Still leading after several token TTLs. (Its own regular requests keep renewing a simple
            # token, so expiry itself is exercised by the EtcdKv tests above, not here.)
            await asyncio.sleep(2 * PAST_TTL)
            assert await _leadership(f"127.0.0.1:{port}") == health_pb2.HealthCheckResponse.SERVING
            assert proc.log_text().count("leading at epoch") == 1, proc.log_text()[-3000:]
        finally:
            code = await proc.async_stop()
        log = proc.log_text()
        assert code == 0, log[-3000:]
        assert PASSWORD not in log


async def _exit_2(tmp_path: Path, name: str, cluster: EtcdCluster, env: dict[str, str]) -> str:
    """Start a replica with `env` and return its log once it exited with status 2 (a configuration
    error), within 20 s."""
    proc = coordinator_process(name, tmp_path, etcd_endpoints=cluster.endpoints, port=free_tcp_port(), extra_env=env)
    proc.start()
    try:
        assert proc.proc is not None
        code = await asyncio.to_thread(proc.proc.wait, 20)
    finally:
        await proc.async_stop()
    log = proc.log_text()
    assert code == 2, log[-3000:]
    return log


async def test_a_replica_with_a_wrong_password_exits_with_status_2(tmp_path: Path, auth_etcd: EtcdCluster) -> None:
    pw_file = tmp_path / "etcd-password"
    pw_file.write_text("wrong-Pw-1234\n")
    log = await _exit_2(tmp_path, "r-bad", auth_etcd, {"CLUSTERQ_ETCD_USER": "root",
                                                       "CLUSTERQ_ETCD_PASSWORD_FILE": str(pw_file)})
    assert "refused the credentials of user 'root'" in log and "CLUSTERQ_ETCD_PASSWORD" in log
    assert "wrong-Pw-1234" not in log


# ------------------------------------------------------------- a user restricted to its prefix
USER_PW = "cq-user-Pw-41c2"


async def test_a_user_outside_its_prefix_is_refused_at_once_for_writes_reads_and_watches(
        auth_etcd: EtcdCluster) -> None:
    await auth_etcd.add_user("cq", USER_PW, b"/mine/")
    kv = EtcdKv(EtcdConfig(tuple(auth_etcd.endpoints), credentials=EtcdCredentials("cq", USER_PW),
                           retry_budget=5.0))
    try:
        await kv.put(b"/mine/k", b"v")  # inside its prefix: allowed
        got = await kv.get(b"/mine/k")
        assert got is not None and got.value == b"v"
        started = time.monotonic()
        with pytest.raises(KvPermissionDenied, match="permission denied"):
            await kv.put(b"/clusterq/k", b"v")
        # Not retried across endpoints until the budget is spent: a configuration error.
        assert time.monotonic() - started < 2.0
        assert kv.credentials_refused.is_set() and isinstance(kv.auth_error, KvPermissionDenied)
        with pytest.raises(KvPermissionDenied):
            await kv.get(b"/clusterq/k")
        seen: list[WatchEvent] = []
        with pytest.raises(KvPermissionDenied):
            await asyncio.wait_for(_watch_into(kv, b"/clusterq/", seen), timeout=3)
        assert seen == []
    finally:
        await kv.close()


async def test_a_replica_whose_user_may_use_only_its_prefix_leads_and_writes(
        tmp_path: Path, auth_etcd: EtcdCluster) -> None:
    await auth_etcd.add_user("cq", USER_PW, b"/cq-a/")
    port = free_tcp_port()
    proc = coordinator_process("r-user", tmp_path, etcd_endpoints=auth_etcd.endpoints, port=port,
                               extra_env={"CLUSTERQ_ETCD_USER": "cq", "CLUSTERQ_ETCD_PASSWORD": USER_PW,
                                          "CLUSTERQ_ETCD_PREFIX": "/cq-a"})
    proc.start()
    try:
        await proc.wait_log("leading with epoch", timeout=20)
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as ch:
            qa = admin_pb2_grpc.QueueAdminStub(ch)
            await qa.CreateQueue(admin_pb2.CreateQueueRequest(queue=admin_pb2.QueueDefinition(name="sales")),
                                 timeout=5)
            listed = await qa.ListQueues(admin_pb2.ListQueuesRequest(), timeout=5)
        assert [q.name for q in listed.queues] == ["sales"]
    finally:
        code = await proc.async_stop()
    log = proc.log_text()
    assert code == 0, log[-3000:]
    # The definition really is in etcd, under the user's prefix.
    kv = _kv(auth_etcd, password=PASSWORD)
    try:
        assert [k.key for k in (await kv.get_prefix(b"/cq-a/queues/")).kvs] == [b"/cq-a/queues/sales"]
    finally:
        await kv.close()


async def test_a_replica_whose_user_may_not_use_the_prefix_exits_with_status_2(
        tmp_path: Path, auth_etcd: EtcdCluster) -> None:
    await auth_etcd.add_user("cq", USER_PW, b"/elsewhere/")
    log = await _exit_2(tmp_path, "r-noperm", auth_etcd, {"CLUSTERQ_ETCD_USER": "cq", "CLUSTERQ_ETCD_PASSWORD": USER_PW})
    assert "permission denied" in log and "'cq' needs readwrite on the prefix /clusterq/" in log, log[-3000:]
    assert USER_PW not in log

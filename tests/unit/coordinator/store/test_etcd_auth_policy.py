"""EtcdKv with etcd credentials and TLS: token refusals, refused credentials, and secrets kept out of
repr (scripted attempt outcomes, no etcd needed; the real thing is in
tests/integration/coordinator/test_etcd_security.py)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc
import pytest

from coordinator.store.etcd_channel import EtcdCredentials, EtcdTls, is_token_refusal
from coordinator.store.etcd_grpc import _Conn
from coordinator.store.etcd_kv import EtcdConfig, EtcdKv
from coordinator.store.kv import KvAuthError, KvError, KvPermissionDenied, KvUnavailable
from tests.unit.coordinator.store.test_etcd_kv_policy import UNSENT, Script, rpc_error

# etcd 3.4.23's answers, as seen on the real binary
EXPIRED = rpc_error(grpc.StatusCode.UNAUTHENTICATED, "etcdserver: invalid auth token")
NO_TOKEN = rpc_error(grpc.StatusCode.INVALID_ARGUMENT, "etcdserver: user name is empty")
DENIED = rpc_error(grpc.StatusCode.PERMISSION_DENIED, "etcdserver: permission denied")
PASSWORD = "pw-never-shown"
CA = b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
KEY = b"-----BEGIN EC PRIVATE KEY-----\nMHc\n-----END EC PRIVATE KEY-----\n"


def _kv(credentials: EtcdCredentials | None) -> EtcdKv:
    return EtcdKv(EtcdConfig(("127.0.0.1:1", "127.0.0.1:2"), retry_budget=1.0, credentials=credentials))


@pytest.fixture
async def kv() -> AsyncIterator[EtcdKv]:
    adapter = _kv(EtcdCredentials("clusterq", PASSWORD))
    yield adapter
    await adapter.close()


async def test_a_refused_token_is_dropped_and_the_attempt_repeated_on_the_same_endpoint(
        kv: EtcdKv, monkeypatch: pytest.MonkeyPatch) -> None:
    tokens = kv._tokens
    assert tokens is not None
    tokens.token = "expired-token"
    fetched: list[str] = []

    async def authenticate(channel: object) -> None:
        fetched.append("fresh")
        tokens.token = "fresh"

    monkeypatch.setattr(tokens, "_authenticate", authenticate)
    script = Script(EXPIRED)

    async def attempt(conn: _Conn) -> str:
        await conn.metadata()  # carries "expired-token" (no authentication: there is a token)
        return await script(conn)

    # even a txn unsafe to repeat: etcd refuses a token before it proposes anything
    assert await kv._run(attempt, safe=False) == "ok"
    assert script.endpoints == ["127.0.0.1:1", "127.0.0.1:1"]
    assert fetched == ["fresh"], "the repeated attempt authenticated again"
    assert not kv.credentials_refused.is_set()


async def test_a_token_replaced_meanwhile_is_kept(kv: EtcdKv) -> None:
    assert kv._tokens is not None
    kv._tokens.token = "fresh"
    kv._tokens.invalidate("older")  # a request that carried an older token was refused
    assert kv._tokens.token == "fresh"


async def test_a_fresh_token_refused_again_is_retried_elsewhere_not_fatal(kv: EtcdKv) -> None:
    """A member that has not applied the new token yet refuses it: no proof of wrong credentials."""
    script = Script(EXPIRED, EXPIRED)
    assert await kv._run(script, safe=False) == "ok"  # nothing was applied: even an unsafe txn goes on
    assert script.endpoints == ["127.0.0.1:1", "127.0.0.1:1", "127.0.0.1:2"]
    assert not kv.credentials_refused.is_set()


async def test_refusals_without_end_run_out_of_budget_as_unavailable_not_auth_errors(kv: EtcdKv) -> None:
    script = Script(*[EXPIRED] * 200)
    with pytest.raises(KvUnavailable):
        await kv._run(script)
    assert not kv.credentials_refused.is_set()


async def test_the_token_invalidated_is_the_one_the_refused_request_carried(kv: EtcdKv,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """No token when the attempt began: the attempt authenticates (T1), T1 is refused, so T1 is what
    gets dropped and the retry carries a new one (T2), not T1 again."""
    tokens = kv._tokens
    assert tokens is not None
    issued = iter(["T1", "T2"])

    async def authenticate(channel: object) -> None:
        tokens.token = next(issued)
        tokens.authentications += 1

    monkeypatch.setattr(tokens, "_authenticate", authenticate)
    sent: list[str] = []

    async def attempt(conn: _Conn) -> str:
        metadata = dict(await conn.metadata())
        sent.append(metadata["token"])
        if len(sent) == 1:
            raise EXPIRED
        return "ok"

    assert await kv._run(attempt) == "ok"
    assert sent == ["T1", "T2"]


async def test_concurrent_requests_share_one_authenticate_and_its_failure(kv: EtcdKv,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    tokens = kv._tokens
    assert tokens is not None
    calls = 0

    async def authenticate(channel: object) -> None:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.3)  # an unresponsive member
        raise UNSENT

    monkeypatch.setattr(tokens, "_authenticate", authenticate)
    channel = grpc.aio.insecure_channel("127.0.0.1:1")
    try:
        started = asyncio.get_running_loop().time()
        results = await asyncio.gather(*(tokens.metadata(channel) for _ in range(5)), return_exceptions=True)
        took = asyncio.get_running_loop().time() - started
    finally:
        await channel.close()
    assert calls == 1
    assert all(r is UNSENT for r in results)
    assert took < 0.6, "the waiters failed together, not one timeout after another"


async def test_etcd_demanding_credentials_the_adapter_has_none_of_is_an_auth_error_at_once() -> None:
    anonymous = _kv(None)
    try:
        script = Script(NO_TOKEN)
        with pytest.raises(KvAuthError, match="requires authentication"):
            await anonymous._run(script)
        assert len(script.endpoints) == 1
        assert anonymous.credentials_refused.is_set()
    finally:
        await anonymous.close()


async def test_refused_credentials_from_authenticate_are_raised_and_flagged(kv: EtcdKv) -> None:
    script = Script(KvAuthError("etcd refused the credentials of user 'clusterq'"))
    with pytest.raises(KvAuthError, match="refused the credentials"):
        await kv._run(script)
    assert len(script.endpoints) == 1
    assert kv.credentials_refused.is_set()


async def test_permission_denied_stops_at_once_as_a_configuration_error(kv: EtcdKv) -> None:
    """The user's roles do not cover the key: every member says the same, so no other endpoint is
    tried, and the replica is told (credentials_refused) instead of looping while it looks ready."""
    script = Script(DENIED)
    with pytest.raises(KvPermissionDenied, match="permission denied"):
        await kv._run(script)
    assert script.endpoints == ["127.0.0.1:1"]
    assert kv.credentials_refused.is_set() and isinstance(kv.auth_error, KvPermissionDenied)


async def test_other_plain_errors_are_not_configuration_errors_and_transport_errors_still_rotate(
        kv: EtcdKv) -> None:
    with pytest.raises(KvError) as err:
        await kv._run(Script(rpc_error(grpc.StatusCode.INVALID_ARGUMENT, "etcdserver: duplicate key given in txn")))
    assert not isinstance(err.value, KvAuthError) and not kv.credentials_refused.is_set()
    script = Script(UNSENT)
    assert await kv._run(script) == "ok"
    assert script.endpoints == ["127.0.0.1:1", "127.0.0.1:2"]


@pytest.mark.parametrize(("code", "details", "refusal"), [
    (grpc.StatusCode.UNAUTHENTICATED, "etcdserver: invalid auth token", True),
    (grpc.StatusCode.INVALID_ARGUMENT, "etcdserver: user name is empty", True),
    (grpc.StatusCode.INVALID_ARGUMENT, "etcdserver: revision of auth store is old", True),
    (grpc.StatusCode.INVALID_ARGUMENT, "etcdserver: authentication failed, invalid user ID or password", False),
    (grpc.StatusCode.INVALID_ARGUMENT, "etcdserver: duplicate key given in txn request", False),
    (grpc.StatusCode.PERMISSION_DENIED, "etcdserver: permission denied", False),
])
def test_which_answers_are_token_refusals(code: grpc.StatusCode, details: str, refusal: bool) -> None:
    assert is_token_refusal(code, details) is refusal


def test_secrets_stay_out_of_the_config_repr() -> None:
    cfg = EtcdConfig(("127.0.0.1:1",), tls=EtcdTls(ca=CA, cert=CA, key=KEY),
                     credentials=EtcdCredentials("clusterq", PASSWORD))
    text = repr(cfg)
    assert "clusterq" in text
    assert PASSWORD not in text and "PRIVATE KEY" not in text


@pytest.mark.parametrize(("ca", "cert", "key", "message"), [
    (b"not pem", None, None, "CA certificate is not a PEM"),
    (CA, CA, None, "needs its key"),
    (CA, None, KEY, "needs its key"),
    (CA, KEY, KEY, "client certificate is not a PEM"),
    (CA, CA, CA, "key is not a PEM private key"),
])
def test_tls_material_that_cannot_work_is_refused(ca: bytes, cert: bytes | None, key: bytes | None,
                                                   message: str) -> None:
    with pytest.raises(ValueError, match=message):
        EtcdTls(ca=ca, cert=cert, key=key)


def test_credentials_need_both_parts() -> None:
    with pytest.raises(ValueError):
        EtcdCredentials("clusterq", "")

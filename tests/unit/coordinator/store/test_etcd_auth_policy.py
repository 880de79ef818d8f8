"""EtcdKv with etcd credentials and TLS: token refusals, refused credentials, and secrets kept out of
repr (scripted attempt outcomes, no etcd needed; the real thing is in
tests/integration/coordinator/test_etcd_security.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import pytest

from coordinator.store.etcd_channel import EtcdCredentials, EtcdTls, is_token_refusal
from coordinator.store.etcd_kv import EtcdConfig, EtcdKv
from coordinator.store.kv import KvAuthError, KvError
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


async def test_a_refused_token_is_dropped_and_the_attempt_repeated_on_the_same_endpoint(kv: EtcdKv) -> None:
    assert kv._tokens is not None
    kv._tokens.token = "expired-token"
    script = Script(EXPIRED)
    # even a txn unsafe to repeat: etcd refuses a token before it proposes anything
    assert await kv._run(script, safe=False) == "ok"
    assert script.endpoints == ["127.0.0.1:1", "127.0.0.1:1"]
    assert kv._tokens.token is None, "the next attempt authenticates again"
    assert not kv.credentials_refused.is_set()


async def test_a_token_replaced_meanwhile_is_kept(kv: EtcdKv) -> None:
    assert kv._tokens is not None
    kv._tokens.token = "fresh"
    kv._tokens.invalidate("older")  # a request that carried an older token was refused
    assert kv._tokens.token == "fresh"


async def test_a_second_refusal_in_one_operation_is_an_auth_error_not_a_loop(kv: EtcdKv) -> None:
    script = Script(EXPIRED, EXPIRED, EXPIRED)
    with pytest.raises(KvAuthError, match="fresh auth token"):
        await kv._run(script)
    assert len(script.endpoints) == 2
    assert kv.credentials_refused.is_set() and isinstance(kv.auth_error, KvAuthError)


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


async def test_permission_denied_is_a_plain_error_and_transport_errors_still_rotate(kv: EtcdKv) -> None:
    with pytest.raises(KvError) as err:
        await kv._run(Script(DENIED))
    assert not isinstance(err.value, KvAuthError) and not kv.credentials_refused.is_set()
    script = Script(UNSENT)
    assert await kv._run(script) == "ok"
    assert script.endpoints == ["127.0.0.1:1", "127.0.0.1:2"]


@pytest.mark.parametrize(("code", "details", "refusal"), [
    (grpc.StatusCode.UNAUTHENTICATED, "etcdserver: invalid auth token", True),
    (grpc.StatusCode.INVALID_ARGUMENT, "etcdserver: user name is empty", True),
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

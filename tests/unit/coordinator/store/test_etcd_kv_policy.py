"""EtcdKv's failover / retry policy, driven by scripted attempt outcomes (no etcd needed)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import grpc
import pytest

from coordinator.store.etcd_grpc import _Conn, _Retry
from coordinator.store.etcd_kv import EtcdConfig, EtcdKv
from coordinator.store.kv import KvAmbiguous, KvError, KvUnavailable, LeaseNotFound


def rpc_error(code: grpc.StatusCode, details: str) -> grpc.aio.AioRpcError:
    return grpc.aio.AioRpcError(code, grpc.aio.Metadata(), grpc.aio.Metadata(), details)


UNSENT = rpc_error(grpc.StatusCode.UNAVAILABLE, "failed to connect to all addresses")
RESET = rpc_error(grpc.StatusCode.UNAVAILABLE, "Socket closed")
RAFT_HICCUP = rpc_error(
    grpc.StatusCode.UNKNOWN, "etcdserver: request timed out, possibly due to previous leader failure"
)
DEADLINE = rpc_error(grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded")


class Script:
    """An attempt function that fails with the given outcomes, then returns 'ok'."""

    def __init__(self, *outcomes: BaseException) -> None:
        self._outcomes: Iterator[BaseException] = iter(outcomes)
        self.endpoints: list[str] = []

    async def __call__(self, conn: _Conn) -> str:
        self.endpoints.append(conn.endpoint)
        err = next(self._outcomes, None)
        if err is not None:
            raise err
        return "ok"


@pytest.fixture
async def kv() -> AsyncIterator[EtcdKv]:
    adapter = EtcdKv(EtcdConfig(("127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3"), retry_budget=1.0))
    yield adapter
    await adapter.close()


@pytest.mark.parametrize("err", [UNSENT, RESET, RAFT_HICCUP, DEADLINE, TimeoutError(), _Retry("stream ended")])
async def test_retryable_errors_rotate_to_the_next_endpoint(kv: EtcdKv, err: BaseException) -> None:
    script = Script(err)
    assert await kv._run(script) == "ok"
    assert script.endpoints == ["127.0.0.1:1", "127.0.0.1:2"]
    assert kv.endpoint == "127.0.0.1:2"


async def test_rotation_wraps_around_all_endpoints(kv: EtcdKv) -> None:
    script = Script(UNSENT, UNSENT, UNSENT)
    assert await kv._run(script) == "ok"
    assert script.endpoints == ["127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3", "127.0.0.1:1"]


async def test_unsafe_txn_is_not_retried_after_an_ambiguous_error(kv: EtcdKv) -> None:
    script = Script(RESET)
    with pytest.raises(KvAmbiguous):
        await kv._run(script, safe=False)
    assert script.endpoints == ["127.0.0.1:1"]
    assert kv.endpoint == "127.0.0.1:2", "the failed endpoint is left anyway"


async def test_unsafe_txn_is_retried_when_nothing_was_sent(kv: EtcdKv) -> None:
    no_leader = rpc_error(grpc.StatusCode.UNAVAILABLE, "etcdserver: no leader")
    script = Script(UNSENT, no_leader)
    assert await kv._run(script, safe=False) == "ok"
    assert len(script.endpoints) == 3


async def test_a_closed_channel_cancellation_is_retried_but_a_real_cancel_is_not(kv: EtcdKv) -> None:
    # grpc.aio raises CancelledError in every task using a channel that gets closed.
    script = Script(asyncio.CancelledError())
    assert await kv._run(script) == "ok"

    started = asyncio.Event()

    async def hang(conn: _Conn) -> str:
        started.set()
        await asyncio.Event().wait()
        return "never"

    task = asyncio.create_task(kv._run(hang))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_budget_exhaustion_raises_kv_unavailable(kv: EtcdKv) -> None:
    script = Script(*[UNSENT] * 1000)
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    with pytest.raises(KvUnavailable):
        await kv._run(script)
    assert loop.time() - t0 < 1.5
    assert len(script.endpoints) > 3


@pytest.mark.parametrize(
    ("err", "expected"),
    [
        (rpc_error(grpc.StatusCode.NOT_FOUND, "etcdserver: requested lease not found"), LeaseNotFound),
        (rpc_error(grpc.StatusCode.INVALID_ARGUMENT, "etcdserver: duplicate key given in txn request"), KvError),
        (rpc_error(grpc.StatusCode.UNKNOWN, "something else"), KvError),
    ],
)
async def test_definite_errors_are_not_retried(kv: EtcdKv, err: BaseException, expected: type[Exception]) -> None:
    script = Script(err)
    with pytest.raises(expected):
        await kv._run(script)
    assert len(script.endpoints) == 1


@pytest.mark.parametrize("ms", [0.0, 4.9])
def test_grpc_keepalive_below_5s_is_refused(ms: float) -> None:
    with pytest.raises(ValueError):
        EtcdConfig(("127.0.0.1:1",), grpc_keepalive_time=ms)


@pytest.mark.parametrize("endpoints", [(), ("localhost",), ("http://x:1/",), (":2379",)])
def test_bad_endpoints_are_refused(endpoints: tuple[str, ...]) -> None:
    with pytest.raises(ValueError):
        EtcdConfig(endpoints)


def test_channel_options_never_ping_without_calls() -> None:
    opts = EtcdConfig(("127.0.0.1:1",)).channel_options()
    assert opts["grpc.keepalive_time_ms"] >= 5000
    assert opts["grpc.keepalive_permit_without_calls"] == 0

"""The etcd v3 gRPC layer under EtcdKv: per-endpoint connections, error classification, messages.

etcd_kv.py holds the adapter's policy (which endpoint, when to retry, what to raise, see its module
doc); this module holds what that policy drives, with no policy of its own:
- `_Conn`: one gRPC channel (TLS when configured, see etcd_channel.py) to one endpoint, its stubs
  (aetcd's generated ones), the metadata of its requests (`hasleader`, the auth token), and
  `_KeepAliveStream`, the one LeaseKeepAlive stream all its lease refreshes share (aetcd's
  high-level method opens a stream per refresh: 2.1 ms vs 0.6 ms, measured on 3.4 loopback);
- `_classify`: a gRPC error to `_Retry` (another endpoint may succeed; `unsent` when nothing reached
  etcd, which lets even a txn unsafe to repeat be retried), to `_TokenRefused` (authenticate again,
  same endpoint: etcd checks the token before proposing anything) or to the KvError to raise
  (KvPermissionDenied when the user's roles do not cover the key);
  `_cancel_requested` tells a real cancellation from the one grpc.aio raises on a closed channel;
- `_kv`, `_compare_pb`, `_op_pb`, `_op_response`: kv.py's types to and from etcd's protobuf messages.

The names keep their leading underscore: they serve EtcdKv alone and are no part of the store's
interface (coordinator.store and kv.py).
"""

from __future__ import annotations

import asyncio
import collections
from typing import Any

import grpc
from aetcd import rpc

from coordinator.store.etcd_channel import HASLEADER, EtcdTls, TokenSource, is_token_refusal, open_channel
from coordinator.store.kv import (
    Compare,
    Delete,
    KeyValue,
    KvError,
    KvPermissionDenied,
    LeaseNotFound,
    Op,
    OpResponse,
    Put,
    prefix_range_end,
)

# Sent with every request: a member cut off from the raft leader refuses at once (UNAVAILABLE
# "no leader") instead of timing out, and cancels its watch / keepalive streams.
_METADATA = HASLEADER
# Compare target -> (enum name, operand field of the Compare message)
_TARGETS = {
    "create": ("CREATE", "create_revision"),
    "mod": ("MOD", "mod_revision"),
    "version": ("VERSION", "version"),
    "value": ("VALUE", "value"),
}
_RESULTS = {"=": "EQUAL", "!=": "NOT_EQUAL", ">": "GREATER", "<": "LESS"}


class _Retry(Exception):
    """An attempt failed in a way another endpoint may not; `unsent` when nothing reached etcd."""

    def __init__(self, reason: str, unsent: bool = False) -> None:
        super().__init__(reason)
        self.unsent = unsent


class _TokenRefused(Exception):
    """etcd refused the request's auth token (expired) or found none; nothing was applied."""


def _cancel_requested() -> bool:
    # grpc.aio turns a closed channel into CancelledError in every task using it; only a
    # cancellation requested on our own task is a real one (Task.cancelling(), Python 3.11+).
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


def _classify(err: Any) -> Exception:
    """Map a gRPC error to _Retry (try another endpoint), _TokenRefused or the KvError to raise."""
    code, details = err.code(), str(err.details() or "")
    text = f"{code.name}: {details}"
    if is_token_refusal(code, details):
        return _TokenRefused(text)
    if code == grpc.StatusCode.UNAVAILABLE:
        unsent = any(s in details for s in ("failed to connect", "no leader", "Connection refused"))
        return _Retry(text, unsent=unsent)
    if code == grpc.StatusCode.DEADLINE_EXCEEDED or code == grpc.StatusCode.CANCELLED:
        return _Retry(text)
    if code == grpc.StatusCode.UNKNOWN and ("timed out" in details or "leader" in details):
        return _Retry(text)  # raft hiccup: "request timed out, possibly due to previous leader failure"
    if code == grpc.StatusCode.RESOURCE_EXHAUSTED and "too many requests" in details:
        return _Retry(text, unsent=True)
    if code == grpc.StatusCode.PERMISSION_DENIED:
        # The user's roles do not cover the key: every member says the same, so no retry.
        return KvPermissionDenied(text)
    if code == grpc.StatusCode.NOT_FOUND and "lease not found" in details:
        return LeaseNotFound(details)
    return KvError(text)


def _kv(pb: Any) -> KeyValue:
    return KeyValue(bytes(pb.key), bytes(pb.value), int(pb.create_revision), int(pb.mod_revision),
                    int(pb.version), int(pb.lease))


def _compare_pb(c: Compare) -> Any:
    target, operand_field = _TARGETS[c.target]
    return rpc.Compare(key=c.key, target=getattr(rpc.Compare, target), result=getattr(rpc.Compare, _RESULTS[c.op]),
                       **{operand_field: c.operand})


def _op_pb(op: Op) -> Any:
    end = prefix_range_end(op.key) if not isinstance(op, Put) and op.prefix else b""
    if isinstance(op, Put):
        return rpc.RequestOp(request_put=rpc.PutRequest(key=op.key, value=op.value, lease=op.lease))
    if isinstance(op, Delete):
        return rpc.RequestOp(request_delete_range=rpc.DeleteRangeRequest(key=op.key, range_end=end))
    return rpc.RequestOp(request_range=rpc.RangeRequest(key=op.key, range_end=end))


def _op_response(pb: Any) -> OpResponse:
    kind = pb.WhichOneof("response")
    if kind == "response_range":
        return OpResponse(kvs=tuple(_kv(kv) for kv in pb.response_range.kvs))
    if kind == "response_delete_range":
        return OpResponse(deleted=int(pb.response_delete_range.deleted))
    return OpResponse()


class _KeepAliveStream:
    """One LeaseKeepAlive bidi stream shared by every refresh on a connection.

    etcd answers each request once, in order, so responses pair FIFO with requests per lease.
    Any failure or cancellation of a refresh closes the stream: after it, pairing is unknown.
    """

    def __init__(self, lease_stub: Any, metadata: tuple[tuple[str, str], ...]) -> None:
        self._call = lease_stub.LeaseKeepAlive(metadata=metadata)
        self._waiters: dict[int, collections.deque[asyncio.Future[int]]] = {}
        self._write_lock = asyncio.Lock()
        self.closed = False
        self._reader = asyncio.get_running_loop().create_task(self._read_loop())

    async def refresh(self, lease_id: int) -> int:
        fut: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        try:
            async with self._write_lock:
                self._waiters.setdefault(lease_id, collections.deque()).append(fut)
                await self._call.write(rpc.LeaseKeepAliveRequest(ID=lease_id))
            return await fut
        except BaseException:
            fut.cancel()  # nobody will await it; the reader must not set an unretrieved error
            self.close()
            raise

    async def _read_loop(self) -> None:
        err: BaseException = _Retry("keepalive stream ended")
        try:
            while True:
                resp = await self._call.read()
                if resp is grpc.aio.EOF:
                    break
                queue = self._waiters.get(int(resp.ID))
                if queue:
                    fut = queue.popleft()
                    if not fut.done():
                        fut.set_result(int(resp.TTL))
        except grpc.aio.AioRpcError as e:
            err = e
        except asyncio.CancelledError:
            err = _Retry("keepalive stream closed")
        finally:
            self.closed = True
            for queue in self._waiters.values():
                for fut in queue:
                    if not fut.done():
                        fut.set_exception(err)
            self._waiters.clear()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._call.cancel()
        self._reader.cancel()


class _Conn:
    """One gRPC channel to one endpoint, its stubs and request metadata, plus its keepalive stream."""

    def __init__(self, endpoint: str, options: dict[str, int], tls: EtcdTls | None = None,
                 tokens: TokenSource | None = None) -> None:
        self.endpoint = endpoint
        self.channel = open_channel(endpoint, options, tls)
        self.kv_stub = rpc.KVStub(self.channel)
        self.lease_stub = rpc.LeaseStub(self.channel)
        self.watch_stub = rpc.WatchStub(self.channel)
        self._tokens = tokens
        self._keepalive: _KeepAliveStream | None = None

    async def metadata(self) -> tuple[tuple[str, str], ...]:
        """`hasleader`, plus the auth token when credentials are set (authenticating first if
        there is no token yet: may raise KvAuthError, or a gRPC error the retry policy handles)."""
        if self._tokens is None:
            return _METADATA
        try:
            return _METADATA + await self._tokens.metadata(self.channel)
        except grpc.aio.AioRpcError as e:
            # Authenticate failed, so the request itself was never sent: even a txn unsafe to repeat
            # may go to another endpoint.
            mapped = _classify(e)
            raise (_Retry(str(mapped), unsent=True) if isinstance(mapped, _Retry) else mapped) from e
        except TimeoutError:
            raise _Retry("authenticate timed out", unsent=True) from None

    async def refresh(self, lease_id: int) -> int:
        if self._keepalive is None or self._keepalive.closed:
            # etcd 3.4 does not check the token of a keepalive stream (etcd_channel.py): take the current
            # one as it is rather than spend the keepalive's short time limit authenticating.
            tokens = self._tokens
            if tokens is not None and tokens.token is not None:
                metadata = _METADATA + tokens.current()
            else:
                metadata = await self.metadata()
            self._keepalive = _KeepAliveStream(self.lease_stub, metadata)
        return await self._keepalive.refresh(lease_id)

    async def close(self, grace: float | None) -> None:
        if self._keepalive is not None:
            self._keepalive.close()
        await self.channel.close(grace)

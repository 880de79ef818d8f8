"""EtcdKv's connection settings (`EtcdConfig`) and the TLS and authentication of its gRPC channels:
what etcd_grpc._Conn opens and sends.

TLS: aetcd 1.x opens insecure channels only, so the connection builds its own:
`grpc.aio.secure_channel` with the CA etcd's server certificates are checked against (and, for
etcd's --client-cert-auth, a client certificate and key) when `EtcdTls` is set, else an insecure one.
The host in the endpoint must be named in the server certificate (gRPC checks it).

Authentication (etcd's user / password auth): `TokenSource` calls Auth.Authenticate once and every
request then carries ("token", token) in its metadata. One token serves every connection of an
EtcdKv: etcd replicates simple tokens through raft and JWTs are stateless, so a token from one member
is good on the others. Tokens expire: simple tokens after --auth-token-ttl (300 s) without use, JWTs
at a fixed time. etcd 3.4 then answers UNAUTHENTICATED "etcdserver: invalid auth token" before it
proposes anything (nothing was applied), and a new watch is created already cancelled with that text
as its reason. The adapter drops the token (`invalidate`), the next attempt authenticates again.
Measured on 3.4.23: an open LeaseKeepAlive stream, a new one opened with an expired token, and an
open watch all keep working after expiry (only unary calls and new watches check the token);
Authenticate costs about 84 ms (bcrypt, etcd's default --bcrypt-cost 10).

Wrong credentials are INVALID_ARGUMENT "etcdserver: authentication failed, invalid user ID or
password": raised as KvAuthError at once, never retried (another endpoint would say the same).
A cluster without auth enabled answers Authenticate with FAILED_PRECONDITION "authentication is not
enabled"; like etcd's own Go client, requests then go without a token (auth may be enabled later:
the first "user name is empty" refusal then makes the source authenticate again).
"""

from __future__ import annotations

import asyncio
import logging
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

import grpc
from aetcd import rpc

from coordinator.store.kv import KvAuthError

__all__ = ["HASLEADER", "SENT_TOKEN", "EtcdConfig", "EtcdCredentials", "EtcdTls", "TokenSource",
           "is_token_refusal", "open_channel"]

log = logging.getLogger(__name__)

# etcd 3.4's texts (api/v3rpc/rpctypes): matched on details, the status codes alone are too broad.
INVALID_TOKEN = "etcdserver: invalid auth token"
USER_EMPTY = "etcdserver: user name is empty"
AUTH_FAILED = "etcdserver: authentication failed"
AUTH_NOT_ENABLED = "etcdserver: authentication is not enabled"
# After any change to users or roles, a token issued before it (a JWT carries the auth revision) is
# refused with this until the client authenticates again, as etcd's Go client does.
AUTH_OLD_REVISION = "etcdserver: revision of auth store is old"
TOKEN_REFUSALS = (INVALID_TOKEN, USER_EMPTY, AUTH_OLD_REVISION)
# The user's roles do not cover the key (gRPC PERMISSION_DENIED; a watch is cancelled with this reason).
PERMISSION_DENIED = "etcdserver: permission denied"

# Sent with every request (Authenticate included): a member cut off from the raft leader refuses at
# once (UNAVAILABLE "no leader") instead of timing out.
HASLEADER = (("hasleader", "true"),)

# The token the current task's last request carried (None: none). What a refusal invalidates: the
# token read before an attempt may be None or replaced by the time the attempt fetches its own.
SENT_TOKEN: ContextVar[str | None] = ContextVar("SENT_TOKEN", default=None)


@dataclass(frozen=True)
class EtcdTls:
    """PEM bytes: the CA that signs etcd's server certificates, optionally a client cert + key."""

    ca: bytes = field(repr=False)
    cert: bytes | None = field(default=None, repr=False)
    key: bytes | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if (self.cert is None) != (self.key is None):
            raise ValueError("a client certificate needs its key, and a key its certificate")
        # grpc only parses the PEM at the first handshake; a wrong file is better refused at start-up.
        for what, pem in (("CA certificate", self.ca), ("client certificate", self.cert)):
            if pem is not None and b"-----BEGIN CERTIFICATE-----" not in pem:
                raise ValueError(f"the etcd {what} is not a PEM certificate")
        if self.key is not None and b"PRIVATE KEY-----" not in self.key:
            raise ValueError("the etcd client key is not a PEM private key")

    def credentials(self) -> grpc.ChannelCredentials:
        """gRPC channel credentials for these certificates."""
        return grpc.ssl_channel_credentials(root_certificates=self.ca, private_key=self.key,
                                            certificate_chain=self.cert)


@dataclass(frozen=True)
class EtcdCredentials:
    """An etcd user and its password (never shown in repr)."""

    user: str
    password: str = field(repr=False)

    def __post_init__(self) -> None:
        if not self.user or not self.password:
            raise ValueError("etcd credentials need a user and a password")


@dataclass(frozen=True)
class EtcdConfig:
    """Connection settings; the defaults suit a 2 s lease TTL on a LAN cluster."""

    # "host:port" client URLs of every member; the adapter rotates through them in order.
    endpoints: tuple[str, ...]
    # Deadline of one unary attempt (read, write, txn, grant, revoke). A write sent to a member
    # while raft elects a new leader hangs until this fires (etcd drops the proposal), so it
    # bounds the write stall of a raft failover; etcd's p99 on a LAN is a few ms.
    op_timeout: float = 1.0
    # Deadline of one lease refresh attempt; keep it well under ttl/3 so a stuck member is left
    # while the lease still has time.
    keepalive_timeout: float = 0.6
    # Total time one operation may spend retrying across endpoints before KvUnavailable.
    retry_budget: float = 5.0
    # HTTP/2 ping interval and ack timeout. etcd (3.4, 3.5) GOAWAYs pings under 5 s apart.
    grpc_keepalive_time: float = 10.0
    grpc_keepalive_timeout: float = 5.0
    # TLS (CA, optional client certificate) and etcd user / password auth; None = plaintext / no auth.
    tls: EtcdTls | None = None
    credentials: EtcdCredentials | None = None

    def __post_init__(self) -> None:
        if not self.endpoints:
            raise ValueError("at least one etcd endpoint is required")
        for ep in self.endpoints:
            host, sep, port = ep.rpartition(":")
            if not sep or not host or not port.isdigit():
                raise ValueError(f"endpoint {ep!r} is not host:port")
        if self.grpc_keepalive_time < 5.0:
            raise ValueError("grpc_keepalive_time must be >= 5 s (etcd answers GOAWAY too_many_pings)")
        if min(self.op_timeout, self.keepalive_timeout, self.retry_budget) <= 0:
            raise ValueError("timeouts must be positive")

    def channel_options(self) -> dict[str, int]:
        """gRPC channel arguments."""
        return {
            "grpc.keepalive_time_ms": int(self.grpc_keepalive_time * 1000),
            "grpc.keepalive_timeout_ms": int(self.grpc_keepalive_timeout * 1000),
            # What ends a connection to a member that stopped answering (watches): grpcio 1.85
            # waits this long for a ping's answer (default 60 s), keepalive_timeout_ms alone is not.
            "grpc.http2.ping_timeout_ms": int(self.grpc_keepalive_timeout * 1000),
            "grpc.keepalive_permit_without_calls": 0,
            "grpc.http2.max_pings_without_data": 0,
            "grpc.initial_reconnect_backoff_ms": 200,
            "grpc.min_reconnect_backoff_ms": 200,
            "grpc.max_reconnect_backoff_ms": 2000,
        }


def open_channel(endpoint: str, options: dict[str, int], tls: EtcdTls | None) -> grpc.aio.Channel:
    """A channel to one "host:port"; connects lazily (no I/O here)."""
    items = list(options.items())
    if tls is None:
        return grpc.aio.insecure_channel(endpoint, options=items)
    return grpc.aio.secure_channel(endpoint, tls.credentials(), options=items)


def is_token_refusal(code: grpc.StatusCode, details: str) -> bool:
    """etcd refused the request's token (expired, unknown) or found none: authenticate again."""
    return (code == grpc.StatusCode.UNAUTHENTICATED and INVALID_TOKEN in details) or (
        code == grpc.StatusCode.INVALID_ARGUMENT and (USER_EMPTY in details or AUTH_OLD_REVISION in details))


class TokenSource:
    """The current auth token of one EtcdKv: fetched on first use, dropped when etcd refuses it.

    Concurrent callers share one Authenticate call and its outcome (single flight): after an expiry
    every request in flight is refused at once, and each would otherwise pay etcd's bcrypt check; and
    when that call fails, its waiters fail with it instead of each trying in turn (N waiters would
    otherwise wait up to N timeouts).
    """

    def __init__(self, credentials: EtcdCredentials, timeout: float) -> None:
        self._creds = credentials
        self._timeout = timeout
        self._pending: asyncio.Future[None] | None = None
        self.token: str | None = None
        self.auth_enabled = True  # until etcd says otherwise
        self.authentications = 0  # successful Authenticate calls (observability, tests)

    async def metadata(self, channel: grpc.aio.Channel) -> tuple[tuple[str, str], ...]:
        """("token", ...) for a request, authenticating on `channel` first when there is none."""
        if self.token is None and self.auth_enabled:
            if self._pending is None:
                self._pending = asyncio.ensure_future(self._authenticate(channel))
                self._pending.add_done_callback(self._settled)
            # Shielded: one waiter's cancellation must not cancel the call the others wait for.
            await asyncio.shield(self._pending)
        return self.current()

    def current(self) -> tuple[tuple[str, str], ...]:
        """The current token's metadata, without authenticating (for streams etcd does not check)."""
        SENT_TOKEN.set(self.token)
        return () if self.token is None else (("token", self.token),)

    def _settled(self, fut: asyncio.Future[None]) -> None:
        if self._pending is fut:
            self._pending = None
        if not fut.cancelled():
            fut.exception()  # retrieved here: every waiter got it already

    async def _authenticate(self, channel: grpc.aio.Channel) -> None:
        request = rpc.AuthenticateRequest(name=self._creds.user, password=self._creds.password)
        try:
            resp: Any = await rpc.AuthStub(channel).Authenticate(request, timeout=self._timeout, metadata=HASLEADER)
        except grpc.aio.AioRpcError as e:
            details = str(e.details() or "")
            if AUTH_FAILED in details:
                raise KvAuthError(f"etcd refused the credentials of user {self._creds.user!r}: "
                                  f"{e.code().name}: {details}") from None
            if AUTH_NOT_ENABLED in details:
                log.warning("etcd credentials are configured but etcd has authentication off; "
                            "sending requests without a token")
                self.auth_enabled = False
                return
            raise  # transport trouble: the adapter's retry policy decides
        self.token = str(resp.token)
        self.authentications += 1

    def invalidate(self, stale: str | None) -> None:
        """etcd refused `stale` (the token a failed request carried): fetch a new one next time.

        A token already replaced by a concurrent caller is kept."""
        if self.token == stale:
            self.token = None
        self.auth_enabled = True

"""KvPort: the only etcd-shaped surface of clusterq, and its value types.

Everything above the store layer (election, queue store) talks to etcd through `KvPort`; the real
adapter is `EtcdKv` (etcd_kv.py), the working fake is `MemoryKv` (memory_kv.py). One contract
suite (tests/integration/coordinator/test_kv_contract.py) runs against both.

Semantics are etcd v3's: every write bumps the store revision once (all ops of one txn share it);
a key carries create_revision (revision of its creation, 0 when absent), mod_revision and version
(number of puts since creation); a key put with a lease is deleted when the lease expires or is
revoked; a prefix watch delivers every put/delete in revision order.

Error tree::

    KvError                  anything the store refused or could not do
     +-- KvUnavailable       no endpoint answered within the retry budget (nothing known applied)
     +-- KvAmbiguous         a write may or may not have applied (transport failed mid-request
     |                       and retrying it blindly was not provably safe)
     +-- LeaseNotFound       the lease expired or was revoked
     +-- RevisionCompacted   a watch asked for history etcd has already compacted
     +-- KvAuthError         the store refused the credentials, or requires some and has none
          |                  (configuration: not retried)
          +-- KvPermissionDenied  the credentials were accepted, but the user's roles do not
                                  allow the operation on that key (configuration: not retried)
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

__all__ = [
    "Compare",
    "CompareOp",
    "CompareTarget",
    "Delete",
    "Get",
    "KeyValue",
    "KvAmbiguous",
    "KvAuthError",
    "KvError",
    "KvPermissionDenied",
    "KvPort",
    "KvUnavailable",
    "LeaseNotFound",
    "Op",
    "OpResponse",
    "Put",
    "RangeResult",
    "RevisionCompacted",
    "TxnResult",
    "WatchEvent",
    "prefix_range_end",
    "retry_is_safe",
]

CompareTarget = Literal["create", "mod", "version", "value"]
CompareOp = Literal["=", "!=", ">", "<"]


class KvError(Exception):
    """The store refused the request or could not carry it out."""


class KvUnavailable(KvError):
    """No endpoint could serve the request within the retry budget."""


class KvAmbiguous(KvError):
    """A write failed in transit: it may or may not have been applied."""


class LeaseNotFound(KvError):
    """The lease does not exist (never granted, expired or revoked)."""


class KvAuthError(KvError):
    """The store refused the configured credentials, or requires credentials and none are set."""


class KvPermissionDenied(KvAuthError):
    """The store accepted the credentials, but the user's roles do not allow the operation on that key."""


class RevisionCompacted(KvError):
    """A watch start revision is older than the oldest revision the store still keeps."""

    def __init__(self, compact_revision: int) -> None:
        super().__init__(f"revision compacted below {compact_revision}")
        self.compact_revision = compact_revision


@dataclass(frozen=True)
class KeyValue:
    """One stored key; a deleted key in a watch event has only key and mod_revision set."""

    key: bytes
    value: bytes
    create_revision: int
    mod_revision: int
    version: int
    lease: int


@dataclass(frozen=True)
class RangeResult:
    """Keys read at one store revision, sorted by key."""

    kvs: tuple[KeyValue, ...]
    revision: int


@dataclass(frozen=True)
class Compare:
    """One txn guard: `target(key) op value`; build it with create()/mod()/version()/value()."""

    key: bytes
    target: CompareTarget
    op: CompareOp
    operand: int | bytes

    def __post_init__(self) -> None:
        if self.op not in ("=", "!=", ">", "<"):
            raise ValueError(f"unknown compare op {self.op!r}")
        if self.target == "value":
            if not isinstance(self.operand, bytes):
                raise TypeError("a value compare takes bytes")
        elif self.target in ("create", "mod", "version"):
            if not isinstance(self.operand, int) or isinstance(self.operand, bool):
                raise TypeError(f"a {self.target} compare takes an int")
        else:
            raise ValueError(f"unknown compare target {self.target!r}")

    @classmethod
    def create(cls, key: bytes, op: CompareOp, revision: int) -> Compare:
        """Compare the key's create_revision (0 = the key does not exist)."""
        return cls(key, "create", op, revision)

    @classmethod
    def mod(cls, key: bytes, op: CompareOp, revision: int) -> Compare:
        """Compare the key's mod_revision."""
        return cls(key, "mod", op, revision)

    @classmethod
    def version(cls, key: bytes, op: CompareOp, version: int) -> Compare:
        """Compare the key's version (0 = the key does not exist)."""
        return cls(key, "version", op, version)

    @classmethod
    def value(cls, key: bytes, op: CompareOp, value: bytes) -> Compare:
        """Compare the key's value; always false when the key does not exist (etcd's rule)."""
        return cls(key, "value", op, value)


@dataclass(frozen=True)
class Put:
    """Txn op: set key to value, attached to `lease` (0 = no lease; detaches an old lease)."""

    key: bytes
    value: bytes
    lease: int = 0


@dataclass(frozen=True)
class Delete:
    """Txn op: delete one key, or every key starting with `key` when prefix is True."""

    key: bytes
    prefix: bool = False


@dataclass(frozen=True)
class Get:
    """Txn op: read one key, or every key starting with `key` when prefix is True."""

    key: bytes
    prefix: bool = False


Op = Put | Delete | Get


@dataclass(frozen=True)
class OpResponse:
    """The result of one txn op: kvs for a Get, deleted count for a Delete, empty for a Put."""

    kvs: tuple[KeyValue, ...] = ()
    deleted: int = 0


@dataclass(frozen=True)
class TxnResult:
    """Whether the compares held, the store revision after the txn, one response per branch op."""

    succeeded: bool
    revision: int
    responses: tuple[OpResponse, ...]


@dataclass(frozen=True)
class WatchEvent:
    """A put or delete seen by a watch; kv.mod_revision is the event's revision."""

    type: Literal["put", "delete"]
    kv: KeyValue


class KvPort(Protocol):
    """The etcd operations clusterq needs; both adapters honour the semantics in the module doc."""

    async def get(self, key: bytes) -> KeyValue | None:
        """The key, or None when absent."""
        ...

    async def get_prefix(self, prefix: bytes) -> RangeResult:
        """Every key starting with prefix, sorted by key, with the revision they were read at."""
        ...

    async def put(self, key: bytes, value: bytes, lease: int = 0) -> int:
        """Set a key (unconditionally); returns the new store revision."""
        ...

    async def delete(self, key: bytes, prefix: bool = False) -> int:
        """Delete a key (or a prefix); returns how many keys were deleted."""
        ...

    async def txn(
        self, compares: Sequence[Compare], success: Sequence[Op], failure: Sequence[Op] = ()
    ) -> TxnResult:
        """Atomically: if every compare holds run success, else failure.

        Raises KvAmbiguous when the outcome is unknown and a retry was not provably safe
        (see `retry_is_safe`).
        """
        ...

    async def lease_grant(self, ttl: int) -> tuple[int, int]:
        """Grant a lease; returns (lease_id, granted_ttl). etcd grants at least 2 s."""
        ...

    async def lease_keepalive(self, lease_id: int) -> int:
        """Refresh a lease to its full TTL; returns that TTL. Raises LeaseNotFound."""
        ...

    async def lease_revoke(self, lease_id: int) -> None:
        """Revoke a lease and delete its keys. Raises LeaseNotFound."""
        ...

    def watch_prefix(self, prefix: bytes, start_revision: int = 0) -> AsyncGenerator[WatchEvent, None]:
        """Events under prefix with revision >= start_revision (0 = from now), in order.

        A dropped stream is resumed from the last delivered revision + 1, so no event is lost or
        repeated. Close the iterator (`contextlib.aclosing`) to stop watching.
        """
        ...

    async def close(self) -> None:
        """Release connections; pending watches end."""
        ...


def prefix_range_end(prefix: bytes) -> bytes:
    """The exclusive end of the key range holding every key that starts with prefix."""
    end = bytearray(prefix)
    for i in reversed(range(len(end))):
        if end[i] < 0xFF:
            end[i] += 1
            return bytes(end[: i + 1])
    return b"\0"  # every byte is 0xff (or empty prefix): the range runs to the end of the keyspace


def _covers(key: bytes, op_key: bytes, prefix: bool) -> bool:
    return key.startswith(op_key) if prefix else key == op_key


def retry_is_safe(compares: Sequence[Compare], success: Sequence[Op], failure: Sequence[Op] = ()) -> bool:
    """Whether resending a txn whose first attempt may have applied gives the same answer.

    If the first attempt applied, the retry sees the store after the branch it ran. The retry
    takes the same branch and changes nothing more iff no op of either branch can flip a
    compare: no Put or Delete touches a compared key, except a Put on a key whose
    create_revision is compared to a non-zero revision (a put keeps create_revision). Puts and
    deletes with fixed values are idempotent, so running them twice leaves the same keys and
    values (only revisions move).

    A fenced write (`create_revision(leader_key) == epoch` guarding puts elsewhere) is therefore
    safe; a create-if-absent (`create_revision(k) == 0` then Put k) is not: its retry would
    report failure after a success. Callers of such txns resolve KvAmbiguous by reading back.
    A retried txn that reports failure may still hide an earlier attempt that applied while
    its compares held (e.g. the fence was lost in between): state must be read back, never
    inferred from a failure.
    """
    for c in compares:
        for op in (*success, *failure):
            if isinstance(op, Get):
                continue
            if not _covers(c.key, op.key, isinstance(op, Delete) and op.prefix):
                continue
            keeps_create = (
                isinstance(op, Put) and c.target == "create" and c.op == "=" and c.operand != 0
            )
            if not keeps_create:
                return False
    return True

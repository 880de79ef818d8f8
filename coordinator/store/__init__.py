"""Storage edge: KvPort (kv.py) and its adapters, EtcdKv (real) and MemoryKv (fake)."""

from coordinator.store.kv import (
    Compare,
    Delete,
    Get,
    KeyValue,
    KvAmbiguous,
    KvAuthError,
    KvError,
    KvPort,
    KvUnavailable,
    LeaseNotFound,
    Op,
    OpResponse,
    Put,
    RangeResult,
    RevisionCompacted,
    TxnResult,
    WatchEvent,
)
from coordinator.store.memory_kv import MemoryKv

__all__ = [
    "Compare",
    "Delete",
    "Get",
    "KeyValue",
    "KvAmbiguous",
    "KvAuthError",
    "KvError",
    "KvPort",
    "KvUnavailable",
    "LeaseNotFound",
    "MemoryKv",
    "Op",
    "OpResponse",
    "Put",
    "RangeResult",
    "RevisionCompacted",
    "TxnResult",
    "WatchEvent",
]

"""Mapping of coordinator conditions to gRPC status codes (never a crash, always a message)."""

from __future__ import annotations

from typing import Any, NoReturn

import grpc

from clusterq_proto.v1 import LEADER_TRAILER

__all__ = ["LEADER_TRAILER", "abort", "abort_not_leader"]


async def abort_not_leader(context: Any, leader: str) -> NoReturn:
    """Refuse a leader-only call on a follower; the trailer tells the client where to go."""
    context.set_trailing_metadata(((LEADER_TRAILER, leader),))
    await context.abort(grpc.StatusCode.FAILED_PRECONDITION,
                        f"not the leader; leader is at {leader or 'unknown (election in progress)'}")
    raise AssertionError("unreachable")  # context.abort raises


async def abort(context: Any, code: grpc.StatusCode, message: str) -> NoReturn:
    """Abort with a status code and a human-readable message."""
    await context.abort(code, message)
    raise AssertionError("unreachable")

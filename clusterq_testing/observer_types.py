"""The records of the tests' ARI observer (clusterq_testing/observer.py): what it needs from a node, the
events it records, the caller legs it dials, the agent behaviours it plays, and its REST error.

Import them from clusterq_testing.observer, which re-exports every one (its `__all__`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple, Protocol

AgentKind = Literal["answer", "noanswer", "busy", "answer_then_hangup"]


class AriNode(Protocol):
    """What the observer needs from a node (AsteriskNode satisfies it)."""

    name: str
    ari_user: str
    ari_password: str
    test_app: str

    @property
    def ari_url(self) -> str:
        """http://127.0.0.1:PORT/"""
        ...


@dataclass(frozen=True)
class ObservedEvent:
    """One ARI event as received: type, the channel/bridge it concerns, receive time, raw JSON."""

    type: str
    channel_id: str | None
    bridge_id: str | None
    received_at: float  # time.monotonic()
    raw: Mapping[str, Any] = field(compare=False, repr=False)

    @property
    def args(self) -> tuple[str, ...]:
        """StasisStart args (empty for other events)."""
        return tuple(self.raw.get("args", ()))

    @property
    def channel_name(self) -> str | None:
        """Channel name (e.g. Local/support@clusterq-callers-00000000;2), if the event has one."""
        ch = self.raw.get("channel")
        return str(ch["name"]) if isinstance(ch, dict) and "name" in ch else None

    @property
    def channel_state(self) -> str | None:
        """Channel state in the event (Ring, Ringing, Up, ...), if any."""
        ch = self.raw.get("channel")
        return str(ch["state"]) if isinstance(ch, dict) and "state" in ch else None


@dataclass(frozen=True)
class CallerLegs:
    """The two halves of a test caller: ;1 `phone_id` (in the test app) and ;2 `queue_id` (clusterq)."""

    phone_id: str
    queue_id: str


@dataclass(frozen=True)
class UserEvent:
    """A ChannelUserevent with its fields parsed (UserEvent(Name,key: value,...) in the dialplan)."""

    name: str
    channel_id: str | None
    fields: Mapping[str, str]
    event: ObservedEvent


class BridgeInfo(NamedTuple):
    """A bridge and the channels in it (GET /bridges)."""

    bridge_id: str
    channel_ids: tuple[str, ...]


@dataclass(frozen=True)
class AgentBehaviour:
    """How the observer treats an agent leg entering the test app."""

    kind: AgentKind = "answer"
    delay: float = 0.2  # seconds before answering
    after: float = 1.0  # answer_then_hangup: seconds talking before hanging up


class AriHttpError(RuntimeError):
    """An ARI REST call answered >= 400."""

    def __init__(self, status: int, method: str, path: str, body: str) -> None:
        super().__init__(f"ARI {method} {path} -> {status}: {body[:300]}")
        self.status = status


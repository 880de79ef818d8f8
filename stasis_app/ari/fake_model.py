"""The values `FakeAri` (fake.py) keeps about its in-memory Asterisk (`FakeAsterisk`, fake_asterisk.py):
channels, bridges, playbacks, and the requests the app made (originate, continue)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum

from stasis_app.ari import events as ev

__all__ = ["Continued", "FakeBridge", "FakeChannel", "FakePlayback", "OriginateOutcome", "Originated"]


class OriginateOutcome(StrEnum):
    """What happens to an originated leg (as observed on Asterisk 22 for a Local/ or SIP endpoint)."""

    PENDING = "pending"  # keeps ringing until the test calls answer_leg / fail_leg
    ANSWER = "answer"
    BUSY = "busy"
    CONGESTION = "congestion"
    NOANSWER = "noanswer"  # the originate timeout expired
    UNREACHABLE = "unreachable"  # e.g. no such extension: ChannelDestroyed(0) without any Dial


@dataclass
class FakeChannel:
    """One channel's mutable state (read it in tests; change it only through the driver API)."""

    id: str
    name: str
    state: str
    caller_number: str = ""
    caller_name: str = ""
    context: str = ""
    exten: str = ""
    app_data: str = ""
    creation_time: datetime = field(default_factory=lambda: datetime.now(UTC))
    in_stasis: bool = False
    originated: bool = False  # subscribed by originate: ChannelDestroyed is delivered too
    ringing: bool = False
    moh_class: str | None = None
    bridge_id: str | None = None
    variables: dict[str, str] = field(default_factory=dict)
    dtmf_sent: list[str] = field(default_factory=list)

    def info(self) -> ev.ChannelInfo:
        """This channel as the typed snapshot events carry."""
        return ev.ChannelInfo(
            self.id, self.name, self.state, self.caller_number, self.caller_name,
            self.context, self.exten, self.app_data, self.creation_time,
        )


@dataclass
class FakeBridge:
    """A bridge and its members in join order; a holding bridge may play music to all of them."""

    id: str
    name: str
    channels: list[str] = field(default_factory=list)
    kind: str = "mixing"
    moh_class: str | None = None  # holding bridge music (its announcer channel is not listed)


@dataclass(frozen=True)
class FakePlayback:
    """A playback in progress."""

    id: str
    channel_id: str
    media: tuple[str, ...]


@dataclass(frozen=True)
class Originated:
    """One `originate` request as the app made it."""

    endpoint: str
    channel_id: str
    app_args: tuple[str, ...]
    caller_id: str
    timeout: int
    variables: Mapping[str, str]
    formats: str | None
    other_channel_id: str | None


@dataclass(frozen=True)
class Continued:
    """One `continue_in_dialplan` request."""

    channel_id: str
    context: str | None
    extension: str | None
    priority: int | None

"""The tests' own ARI client (plain aiohttp; deliberately NOT clusterq's ARI code).

`AriObserver` registers a Stasis app (default: the node's test app `cqtest`) with subscribeAll=true and
records EVERY event with its receive time, so tests can assert on what really happened on a node.
It also plays the test's phones:

* callers: `originate_caller("support")` dials Local/support@clusterq-callers/n; the ;2 half runs the
  dialplan into Stasis(clusterq, ...), the ;1 half (the "phone") enters this app once clusterq answers.
* agents: clusterq dials Local/<agent>@clusterq-agents-test/n; the ;2 half enters this app with args
  ["agent", <agent>] and is answered / left ringing / rejected according to `set_agent_behaviour`.

Credentials travel in the Authorization header only (never in a URL, never logged).

The records it produces and takes (events, caller legs, agent behaviours, the REST error) live in
observer_types.py and are re-exported here.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any

import aiohttp

from clusterq_testing.observer_types import (
    AgentBehaviour,
    AgentKind,
    AriHttpError,
    AriNode,
    BridgeInfo,
    CallerLegs,
    ObservedEvent,
    UserEvent,
)

__all__ = [
    "AgentBehaviour",
    "AriHttpError",
    "AriNode",
    "AriObserver",
    "BridgeInfo",
    "CallerLegs",
    "ObservedEvent",
    "UserEvent",
]

log = logging.getLogger(__name__)

# Synthetic event types recorded by the observer itself (not from Asterisk).
DISCONNECTED = "ObserverDisconnected"
CONNECTED = "ObserverConnected"


class AriObserver:
    """Records every event of one ARI app on one node and drives test phones; see module doc."""

    def __init__(self, node: AriNode, app: str | None = None, *, reconnect: bool = True) -> None:
        self.node = node
        self.app = app or node.test_app
        self.reconnect = reconnect
        self.events: list[ObservedEvent] = []
        self.errors: list[str] = []  # failures of background behaviour tasks
        self._auth_header = {"Authorization": aiohttp.encode_basic_auth(node.ari_user, node.ari_password)}
        self._base = node.ari_url.rstrip("/") + "/ari"
        self._session: aiohttp.ClientSession | None = None
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._reader: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._new_event = asyncio.Event()
        self._closing = False
        self._behaviours: dict[str, AgentBehaviour] = {}
        self._default_behaviour = AgentBehaviour()

    @classmethod
    async def open(cls, node: AriNode, app: str | None = None, *, reconnect: bool = True) -> AriObserver:
        """Create and connect (the app is registered when this returns)."""
        obs = cls(node, app, reconnect=reconnect)
        await obs.connect()
        return obs

    async def __aenter__(self) -> AriObserver:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def connect(self) -> None:
        """Open the websocket; raises if the node does not accept it."""
        if self._session is None:
            self._session = aiohttp.ClientSession(headers=self._auth_header)
        self._ws = await self._ws_connect()
        self._reader = asyncio.create_task(self._read_loop(), name=f"observer-{self.node.name}-{self.app}")

    async def _ws_connect(self) -> aiohttp.ClientWebSocketResponse:
        assert self._session is not None
        url = f"{self._base}/events"
        return await self._session.ws_connect(
            url, params={"app": self.app, "subscribeAll": "true"}, heartbeat=None
        )

    async def _read_loop(self) -> None:
        while True:
            ws = self._ws
            if ws is not None:
                try:
                    async for msg in ws:
                        if msg.type == aiohttp.WSMsgType.TEXT:
                            self._on_raw(json.loads(msg.data))
                except (aiohttp.ClientError, OSError, ValueError) as e:
                    self.errors.append(f"websocket: {e!r}")
                # Asterisk closes without a close frame on `core stop now` (seen as a plain EOF).
                self._on_raw({"type": DISCONNECTED})
            self._ws = None
            if self._closing or not self.reconnect:
                return
            await asyncio.sleep(0.2)
            try:
                self._ws = await self._ws_connect()
                self._on_raw({"type": CONNECTED})
            except (aiohttp.ClientError, OSError, TimeoutError):
                continue

    def _on_raw(self, raw: dict[str, Any]) -> None:
        ch, br = raw.get("channel"), raw.get("bridge")
        ev = ObservedEvent(
            type=str(raw.get("type", "")),
            channel_id=ch.get("id") if isinstance(ch, dict) else None,
            bridge_id=br.get("id") if isinstance(br, dict) else None,
            received_at=time.monotonic(),
            raw=raw,
        )
        self.events.append(ev)
        # Wake every waiter: they hold the old Event object, later waiters take the new one.
        self._new_event.set()
        self._new_event = asyncio.Event()
        if ev.type == "StasisStart" and ev.args[:1] == ("agent",) and ev.channel_id:
            agent = ev.args[1] if len(ev.args) > 1 else ""
            self._spawn(self._play_agent(ev.channel_id, self._behaviours.get(agent, self._default_behaviour)))

    def _spawn(self, coro: Any) -> None:
        task: asyncio.Task[None] = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        """Stop reading, cancel behaviour tasks, close the websocket and HTTP session."""
        self._closing = True
        for task in [*self._tasks, *([self._reader] if self._reader else [])]:
            task.cancel()
        for task in [*self._tasks, *([self._reader] if self._reader else [])]:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._ws is not None:
            await self._ws.close()
        if self._session is not None:
            await self._session.close()
        self._session = None

    # ---------------------------------------------------------------- REST
    async def ari(self, method: str, path: str, params: Mapping[str, str | int] | None = None,
                  body: Mapping[str, Any] | None = None) -> Any:
        """One ARI REST call (path below /ari); returns the decoded JSON or None."""
        if self._session is None:
            raise RuntimeError("observer is not connected")
        q = {k: str(v) for k, v in (params or {}).items()}
        async with self._session.request(method, self._base + path, params=q, json=body) as resp:
            text = await resp.text()
            if resp.status >= 400:
                raise AriHttpError(resp.status, method, path, text)
            return json.loads(text) if text else None

    async def originate_caller(self, queue_or_args: str, caller_number: str = "100",
                               caller_name: str = "Caller", variables: Mapping[str, str] | None = None
                               ) -> CallerLegs:
        """Dial a test caller into the queue dialplan; returns its two Local halves.

        `queue_or_args` is a queue name (the extension) or a full Stasis arg string such as
        "support,priority=5,timeout=30" (then passed in CQ_ARGS; its first field is the extension).
        The ;1 half (`phone_id`) enters this observer's app with args ["caller"] once answered.
        """
        queue = queue_or_args.split(",", 1)[0]
        if len(queue) < 2:
            raise ValueError("queue name needs >= 2 characters (dialplan pattern _[a-zA-Z0-9].)")
        variables = dict(variables or {})
        if "," in queue_or_args:
            variables["CQ_ARGS"] = queue_or_args
        uid = uuid.uuid4().hex[:12]
        legs = CallerLegs(phone_id=f"{self.node.name}-ph-{uid}", queue_id=f"{self.node.name}-q-{uid}")
        params = {
            "endpoint": f"Local/{queue}@clusterq-callers/n",
            "app": self.app,
            "appArgs": "caller",
            "channelId": legs.phone_id,  # ;1
            "otherChannelId": legs.queue_id,  # ;2
            # without formats Local channels get slin192 and every frame is resampled (CPU x16)
            "formats": "ulaw",
            "callerId": f'"{caller_name}" <{caller_number}>',
        }
        await self.ari("POST", "/channels", params, {"variables": variables} if variables else None)
        return legs

    async def answer(self, channel_id: str) -> None:
        """Answer a channel."""
        await self.ari("POST", f"/channels/{channel_id}/answer")

    async def ring(self, channel_id: str) -> None:
        """Indicate ringing on a channel."""
        await self.ari("POST", f"/channels/{channel_id}/ring")

    async def hangup(self, channel_id: str, reason: str = "normal") -> None:
        """Hang a channel up with an ARI reason (normal, busy, congestion, no_answer, ...)."""
        await self.ari("DELETE", f"/channels/{channel_id}", {"reason": reason})

    async def send_dtmf(self, channel_id: str, digits: str, between_ms: int = 100, duration_ms: int = 100
                        ) -> None:
        """Send DTMF on a channel (as if that party pressed the keys)."""
        await self.ari("POST", f"/channels/{channel_id}/dtmf",
                       {"dtmf": digits, "between": between_ms, "duration": duration_ms})

    async def list_bridges(self) -> list[BridgeInfo]:
        """Every bridge on the node with its channel ids."""
        return [BridgeInfo(b["id"], tuple(b.get("channels", ()))) for b in await self.ari("GET", "/bridges")]

    async def channel_ids(self) -> list[str]:
        """Ids of every channel on the node."""
        return [c["id"] for c in await self.ari("GET", "/channels")]

    async def get_var(self, channel_id: str, name: str) -> str | None:
        """A channel variable or dialplan function value; None when unset."""
        try:
            res = await self.ari("GET", f"/channels/{channel_id}/variable", {"variable": name})
        except AriHttpError as e:
            if e.status == 404:
                return None
            raise
        return str(res.get("value", "")) if isinstance(res, dict) else None

    async def set_var(self, channel_id: str, name: str, value: str) -> None:
        """Set a channel variable."""
        await self.ari("POST", f"/channels/{channel_id}/variable", {"variable": name, "value": value})

    # ---------------------------------------------------------------- agents
    def set_agent_behaviour(self, agent: str, kind: AgentKind, delay: float = 0.2, after: float = 1.0
                            ) -> None:
        """How legs for `agent` are treated: "answer" after `delay`; "noanswer" (ring forever);
        "busy" (hang up with reason busy, cause 17); "answer_then_hangup" (answer after `delay`,
        hang up `after` seconds later)."""
        self._behaviours[agent] = AgentBehaviour(kind, delay, after)

    def set_default_agent_behaviour(self, kind: AgentKind, delay: float = 0.2, after: float = 1.0) -> None:
        """Behaviour for agents without their own (initially: answer after 0.2 s)."""
        self._default_behaviour = AgentBehaviour(kind, delay, after)

    def agent_legs(self, agent: str) -> list[str]:
        """Channel ids of the agent legs (;2 halves) seen for `agent`, oldest first."""
        return [e.channel_id for e in self.events_of("StasisStart")
                if e.args[:2] == ("agent", agent) and e.channel_id]

    async def _play_agent(self, channel_id: str, how: AgentBehaviour) -> None:
        try:
            if how.kind == "busy":
                await self.hangup(channel_id, "busy")
                return
            await self.ring(channel_id)
            if how.kind == "noanswer":
                return
            await asyncio.sleep(how.delay)
            await self.answer(channel_id)
            if how.kind == "answer_then_hangup":
                await asyncio.sleep(how.after)
                await self.hangup(channel_id)
        except AriHttpError as e:
            if e.status != 404:  # 404: the channel went away meanwhile (caller gave up): fine
                self.errors.append(f"agent leg {channel_id}: {e}")

    # ---------------------------------------------------------------- queries
    def mark(self) -> int:
        """Current number of recorded events: pass as `since` to wait only for newer events."""
        return len(self.events)

    async def wait_for(self, predicate: Callable[[ObservedEvent], bool],
                       timeout: float = 10.0,
                       since: int = 0) -> ObservedEvent:
        """First event from index `since` on (default: all, past ones included) matching `predicate`;
        raises TimeoutError listing the last event types when none arrives in time."""
        deadline = time.monotonic() + timeout
        i = since
        while True:
            signal = self._new_event
            while i < len(self.events):
                if predicate(self.events[i]):
                    return self.events[i]
                i += 1
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                recent = [f"{e.type}:{e.channel_id}" for e in self.events[-8:]]
                raise TimeoutError(f"{self.node.name}/{self.app}: no matching event in {timeout}s; "
                                   f"last events: {recent}")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(signal.wait(), remaining)

    async def wait_for_type(self, type_: str, channel_id: str | None = None,
                            timeout: float = 10.0,
                            since: int = 0) -> ObservedEvent:
        """`wait_for` an event of `type_` (and of `channel_id` if given)."""
        return await self.wait_for(
            lambda e: e.type == type_ and (channel_id is None or e.channel_id == channel_id), timeout, since)

    def events_of(self, type_: str) -> list[ObservedEvent]:
        """Recorded events of one type, oldest first."""
        return [e for e in self.events if e.type == type_]

    def user_events(self, name: str) -> list[UserEvent]:
        """ChannelUserevent events named `name` with their fields."""
        return [
            UserEvent(name, e.channel_id, {str(k): str(v) for k, v in e.raw.get("userevent", {}).items()
                                           if k != "eventname"}, e)
            for e in self.events_of("ChannelUserevent") if e.raw.get("eventname") == name
        ]

    def dtmf_received(self, channel_id: str) -> str:
        """Digits received so far on `channel_id` (ChannelDtmfReceived), in order."""
        return "".join(str(e.raw.get("digit", "")) for e in self.events_of("ChannelDtmfReceived")
                       if e.channel_id == channel_id)

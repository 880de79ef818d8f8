"""FakeAgents: an in-memory Agents service standing in for AdminClient (call/agent_ops.AgentAdmin),
refusing as the coordinator does (NOT_FOUND for an unknown agent or queue), plus scripted failures."""

from __future__ import annotations

import asyncio

import grpc

from clusterq_proto.v1 import admin_pb2


def rpc_error(code: grpc.StatusCode, details: str) -> grpc.aio.AioRpcError:
    """A refusal as the gRPC client raises it."""
    return grpc.aio.AioRpcError(code, grpc.aio.Metadata(), grpc.aio.Metadata(), details)


class FakeAgents:
    """Agents.Login / Logout / Pause / Unpause over a dict of logged-in agents."""

    def __init__(self, queues: tuple[str, ...] = ("support", "sales")) -> None:
        self.queues = queues
        self.agents: dict[str, admin_pb2.AgentState] = {}
        self.requests: list[tuple[str, object]] = []  # (method, request or agent id), in order
        self.failures: list[BaseException] = []  # raised by the next calls, one each
        self.answering = asyncio.Event()  # cleared: calls wait (a coordinator that never answers)
        self.answering.set()
        self.last_error = ""
        self.closed = False

    async def _enter(self, method: str, what: object) -> None:
        self.requests.append((method, what))
        await self.answering.wait()
        if self.failures:
            raise self.failures.pop(0)

    def _known(self, agent_id: str) -> admin_pb2.AgentState:
        state = self.agents.get(agent_id)
        if state is None:
            raise rpc_error(grpc.StatusCode.NOT_FOUND, f"agent {agent_id} is not logged in")
        return state

    async def login_request(self, req: admin_pb2.LoginRequest) -> admin_pb2.AgentState:
        """Log in (or replace the agent's settings)."""
        await self._enter("login", req)
        missing = [m.queue for m in req.queues if m.queue not in self.queues]
        if missing:
            raise rpc_error(grpc.StatusCode.NOT_FOUND, f"unknown queue(s): {', '.join(missing)}")
        state = admin_pb2.AgentState(agent_id=req.agent_id, endpoint=req.endpoint, home_node=req.home_node,
                                     queues=req.queues, skills=req.skills,
                                     state="paused" if req.paused else "available",
                                     pause_reason="login" if req.paused else "")
        self.agents[req.agent_id] = state
        return state

    async def logout(self, agent_id: str) -> admin_pb2.AgentState:
        """Log out."""
        await self._enter("logout", agent_id)
        self._known(agent_id)
        del self.agents[agent_id]
        return admin_pb2.AgentState(agent_id=agent_id, state="logged_out")

    async def pause(self, agent_id: str, reason: str = "") -> admin_pb2.AgentState:
        """Pause with a reason."""
        await self._enter("pause", (agent_id, reason))
        state = self._known(agent_id)
        state.state, state.pause_reason = "paused", reason
        return state

    async def unpause(self, agent_id: str) -> admin_pb2.AgentState:
        """Unpause."""
        await self._enter("unpause", agent_id)
        state = self._known(agent_id)
        state.state, state.pause_reason = "available", ""
        return state

    async def close(self) -> None:
        """Nothing to close."""
        self.closed = True

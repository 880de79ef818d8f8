"""`python -m clusterq_cli` (installed as `clusterq`): queues and agents from a shell, like Asterisk's
`queue show`, `queue add member`, `queue pause member`.

    clusterq [--coordinator host:port,...] queue show [QUEUE]
    clusterq queue create|update|apply FILE|-   (YAML as the coordinator's queues file; apply: create or update)
    clusterq queue delete QUEUE
    clusterq agent list
    clusterq agent show AGENT
    clusterq agent login AGENT --endpoint PJSIP/alice --node a --queue support[:PENALTY[:WEIGHT]] ...
                         [--state-interface PJSIP/alice] [--skill KEY=VALUE ...] [--paused]
    clusterq agent logout|unpause AGENT
    clusterq agent pause AGENT [--reason lunch]

Any replica may be named: the leader is found and followed. TLS: --ca-file (the CA of the
coordinator's certificate; it turns TLS on), --cert-file/--key-file (mutual TLS), --tls-name (the name
to verify), each defaulting to its CLUSTERQ_COORDINATOR_* variable as the stasis app reads it.
Exit status 0 on success, 1 when the coordinator refused the request (its status and message are
printed) or none answered (every address refusing the connection is said after about a second, not
at --timeout), 2 for bad usage or unusable TLS files.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from pathlib import Path

import grpc

from clusterq_cli.arguments import addresses, env_default, membership, seconds, skill, source
from clusterq_cli.queue_files import BadFile, Refused, agent_list, read_queues, send_queues
from clusterq_cli.show import agent_line, device_line, queue_show
from clusterq_common import tls
from clusterq_common.leader_client import AdminClient, Unreachable
from clusterq_proto.v1 import admin_pb2

__all__ = ["main", "run"]


def parser() -> argparse.ArgumentParser:
    """The command line's grammar."""
    p = argparse.ArgumentParser(prog="clusterq", description="clusterq operator commands")
    p.add_argument("--coordinator", default=env_default("CLUSTERQ_COORDINATOR", "127.0.0.1:50051"),
                   metavar="HOST:PORT[,HOST:PORT...]",
                   help="comma-separated coordinator replicas (default: $CLUSTERQ_COORDINATOR or 127.0.0.1:50051)")
    p.add_argument("--timeout", type=seconds, default=10.0, help="seconds to find a leader and get an answer")
    p.add_argument("--ca-file", default=env_default(tls.CLIENT_CA_VAR),
                   help=f"CA of the coordinator's certificate; turns TLS on (default: ${tls.CLIENT_CA_VAR})")
    p.add_argument("--cert-file", default=env_default(tls.CLIENT_CERT_VAR),
                   help=f"client certificate for mutual TLS (default: ${tls.CLIENT_CERT_VAR})")
    p.add_argument("--key-file", default=env_default(tls.CLIENT_KEY_VAR),
                   help=f"its private key (default: ${tls.CLIENT_KEY_VAR})")
    p.add_argument("--tls-name", default=env_default(tls.CLIENT_NAME_VAR),
                   help=f"name to verify the coordinator's certificate against (default: ${tls.CLIENT_NAME_VAR})")
    top = p.add_subparsers(dest="area", required=True)
    queue = top.add_parser("queue").add_subparsers(dest="command", required=True)
    show = queue.add_parser("show", help="queue statistics, members and waiting callers")
    show.add_argument("queue", nargs="?", default="")
    queue.add_parser("delete", help="delete a queue (its callers go back to the dialplan)").add_argument("queue")
    for command, what in (("create", "create the queues of a file"), ("update", "replace their definitions"),
                          ("apply", "create each queue, or update it when it exists")):
        queue.add_parser(command, help=f"{what} (YAML as the coordinator's queues file)").add_argument(
            "file", metavar="FILE|-", help="the file, or - for standard input")
    caller = top.add_parser("caller").add_subparsers(dest="command", required=True)
    priority = caller.add_parser("priority", help="change a waiting caller's priority (app_queue's "
                                                  "'queue priority caller')")
    priority.add_argument("call_id", help="the caller's channel id, as queue show lists it")
    priority.add_argument("priority", type=int)
    agent = top.add_parser("agent").add_subparsers(dest="command", required=True)
    agent.add_parser("list", help="every logged-in agent and its state")
    agent.add_parser("show").add_argument("agent")
    login = agent.add_parser("login", help="log an agent in (or change its settings)")
    login.add_argument("agent")
    login.add_argument("--endpoint", required=True, help="dial string, e.g. PJSIP/alice")
    login.add_argument("--node", required=True, help="the node the agent is rung from")
    login.add_argument("--queue", dest="queues", action="append", type=membership, required=True,
                       metavar="QUEUE[:PENALTY[:WEIGHT]]")
    login.add_argument("--skill", dest="skills", action="append", type=skill, default=[], metavar="KEY=VALUE")
    login.add_argument("--paused", action="store_true")
    login.add_argument("--state-interface", default="", metavar="DEVICE",
                       help="the device whose state tells whether the agent is busy, like app_queue's "
                            "state_interface (default: the endpoint's device)")
    agent.add_parser("logout").add_argument("agent")
    pause = agent.add_parser("pause")
    pause.add_argument("agent")
    pause.add_argument("--reason", default="")
    agent.add_parser("unpause").add_argument("agent")
    return p


async def _queue_show(client: AdminClient, name: str) -> list[str]:
    definitions = await client.list_queues()
    if name:
        definitions = [d for d in definitions if d.name == name]
        if not definitions:
            raise LookupError(f"No such queue: {name}.")
    lines: list[str] = []
    for definition in sorted(definitions, key=lambda d: d.name):
        snapshot = await client.snapshot(definition.name, include_callers=True)
        lines += [*queue_show(definition, snapshot), ""]
    return lines or ["No queues."]


async def _execute(args: argparse.Namespace, client: AdminClient) -> list[str]:
    if args.area == "queue" and args.command == "show":
        return await _queue_show(client, args.queue)
    if args.area == "queue" and args.command == "delete":
        await client.delete_queue(args.queue)
        return [f"Deleted queue {args.queue}."]
    if args.area == "queue":  # create, update, apply: the file was read and checked before (run)
        return await send_queues(client, args.command, *args.definitions)
    if args.area == "caller":
        moved = await client.set_caller_priority(args.call_id, args.priority)
        return [f"{args.call_id} in {moved.queue} now has priority {moved.priority}, position {moved.position}."]
    if args.command == "list":
        return await agent_list(client)
    if args.command == "login":
        req = admin_pb2.LoginRequest(agent_id=args.agent, endpoint=args.endpoint, home_node=args.node,
                                     queues=args.queues, skills=args.skills, paused=args.paused,
                                     state_interface=args.state_interface)
        state = await client.login_request(req)
    elif args.command == "logout":
        state = await client.logout(args.agent)
    elif args.command == "pause":
        state = await client.pause(args.agent, args.reason)
    elif args.command == "unpause":
        state = await client.unpause(args.agent)
    else:
        state = await client.agent_state(args.agent)
        if state.state_interface:  # "" from a leader without device state
            return [agent_line(state), device_line(state)]
    return [agent_line(state)]


def _path(text: str) -> Path | None:
    return Path(text) if text else None


async def run(argv: Sequence[str]) -> tuple[int, list[str]]:
    """Run one command; (exit status, lines to print: on stdout for 0, on stderr otherwise)."""
    args = parser().parse_args(list(argv))
    if args.area == "queue" and args.command in ("create", "update", "apply"):
        try:  # a mistake in the file is bad usage, found before any call
            args.definitions = read_queues(args.file)
        except BadFile as exc:
            return 2, [f"clusterq: {exc}"]
    where = addresses(args.coordinator)
    if not where:
        return 2, [f"clusterq: {source(args.coordinator, '--coordinator')} names no coordinator: "
                   "want HOST:PORT[,HOST:PORT...]"]
    try:
        # A complaint names what the operator set: the flag, or the variable it defaults to.
        client_tls = tls.client_tls_from_files(
            _path(args.ca_file), _path(args.cert_file), _path(args.key_file), args.tls_name,
            names=(source(args.ca_file, "--ca-file"), source(args.cert_file, "--cert-file"),
                   source(args.key_file, "--key-file"), source(args.tls_name, "--tls-name")))
    except tls.TlsConfigError as exc:
        return 2, [f"clusterq: {exc}"]
    # Nothing listening at any address is said after a short round of retries, not at --timeout.
    client = AdminClient(where, client_tls, give_up_refused=min(1.0, args.timeout / 2))
    try:
        return 0, await asyncio.wait_for(_execute(args, client), args.timeout)
    except grpc.aio.AioRpcError as exc:
        return 1, [f"clusterq: {exc.code().name}: {exc.details()}"]
    except Unreachable as exc:
        return 1, [f"clusterq: {exc}"]
    except Refused as exc:
        return 1, exc.lines
    except LookupError as exc:
        return 1, [str(exc)]
    except TimeoutError:
        last = f" (last error: {client.last_error})" if client.last_error else ""
        return 1, [f"clusterq: no answer from a leader at {args.coordinator} within {args.timeout:g} s{last}"]
    finally:
        await client.close()


def main() -> None:
    """Entry point (`clusterq`)."""
    status, lines = asyncio.run(run(sys.argv[1:]))
    print("\n".join(lines).rstrip("\n"), file=sys.stdout if status == 0 else sys.stderr)
    sys.exit(status)


if __name__ == "__main__":
    main()

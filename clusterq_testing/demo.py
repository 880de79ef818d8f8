"""`make run`: a local clusterq on real parts, with calls flowing, in a readable console log.

Starts one etcd member, two coordinator replicas, two Asterisk nodes (a, b) each with its stasis
app, logs in four demo agents (two homed on each node; they answer after a second and talk for
3-6 s), then places a sample call every ~2 s on alternating nodes until stopped (fewer than the agents
can take: the queue stays short). What you see:

    QUEUED   a-q-... on a            (the caller is answered and hears music on hold)
    BRIDGED  a-q-... <-> agent b2    (seen on Asterisk: both legs in one bridge)
    STATS    support: waiting 2, answered 5 ...

Ctrl-C (or --duration) stops everything this program started, by PID.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
import tempfile
import time
from pathlib import Path

from clusterq_testing.asterisk_cluster import AsteriskCluster
from clusterq_testing.client import AdminClient
from clusterq_testing.etcd import EtcdCluster
from clusterq_testing.observer import AriObserver, ObservedEvent
from clusterq_testing.ports import free_tcp_port
from clusterq_testing.processes import ManagedProcess, coordinator_process, stasis_process

QUEUES = """
queues:
  support:
    strategy: leastrecent
    ring_timeout: 10
    wrapup_time: 1
"""
AGENTS = {"a1": "a", "a2": "a", "b1": "b", "b2": "b"}


def say(kind: str, text: str) -> None:
    """One console line."""
    print(f"{time.strftime('%H:%M:%S')}  {kind:<8} {text}", flush=True)


def _report_bridges(obs: AriObserver, since: int, seen: set[str], counts: dict[str, int]) -> int:
    """Print bridges that got their second channel (as Asterisk reported them); returns the new mark."""
    events: list[ObservedEvent] = obs.events[since:]
    for e in events:
        if e.type != "ChannelEnteredBridge":
            continue
        bridge = e.raw.get("bridge", {})
        chans = bridge.get("channels", [])
        if len(chans) != 2 or bridge.get("id") in seen:
            continue
        seen.add(bridge["id"])
        caller = next((c for c in chans if "-q-" in c), None)
        if caller is None:  # the agent's half of a cross-node call: agent leg + trunk leg
            agent = next((c for c in chans if "-ag-" in c), chans[0])
            say("TRUNK", f"agent leg {agent} on node {obs.node.name} joined to the trunk towards the caller")
            continue
        counts["bridged"] += 1
        other = next(c for c in chans if c != caller)
        how = "agent leg" if "-ag-" in other else "trunk leg from the agent's node"
        say("BRIDGED", f"caller {caller} <-> {how} {other} on node {obs.node.name}")
    return since + len(events)


CALL_EVERY = 2.0  # seconds between sample calls: ~0.5 calls/s, within what four agents take (~0.6/s)
STATS_EVERY = 6.0


async def run(duration: float | None, calls_per_node: int | None) -> int:
    """Start everything, place calls, print what happens; returns the number of bridged calls."""
    work = Path(tempfile.mkdtemp(prefix="clusterq-run-"))
    say("START", f"work dir {work}")
    procs: list[ManagedProcess] = []
    etcd = EtcdCluster(work / "etcd", members=1)
    cluster = AsteriskCluster()
    observers: list[AriObserver] = []
    counts = {"bridged": 0, "placed": 0}
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGINT, stop.set)
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    try:
        await etcd.start()
        say("ETCD", f"up at {etcd.endpoints[0]} (pids {etcd.member_pids})")
        nodes = cluster.add_nodes(["a", "b"])
        await cluster.start(nodes)
        for n in nodes:
            say("ASTERISK", f"node {n.name}: ARI {n.ari_url} SIP 127.0.0.1:{n.sip_port} (pid {n.pid})")
        qfile = work / "queues.yaml"
        qfile.write_text(QUEUES)
        addrs = []
        for i in range(2):
            port = free_tcp_port()
            p = coordinator_process(f"coord-{i}", work / "logs", etcd_endpoints=etcd.endpoints, port=port,
                                    queues_file=qfile, lease_ttl=2.0,
                                    extra_env={"CLUSTERQ_QUEUE_LOG": str(work / "logs" / f"coord-{i}.queue_log")})
            p.start()
            procs.append(p)
            addrs.append(f"127.0.0.1:{port}")
            say("COORD", f"replica coord-{i} on 127.0.0.1:{port} (pid {p.pid}, log {p.log_path})")
        for n in nodes:
            p = stasis_process(n.name, work / "logs", ari_url=n.ari_url, ari_user=n.ari_user,
                               ari_password=n.ari_password, coordinators=addrs)
            p.start()
            procs.append(p)
            say("STASIS", f"node {n.name} app (pid {p.pid}, log {p.log_path})")
        for p in procs[2:]:
            await p.wait_log("connected to leader", 30)
            await p.wait_log("connected (app clusterq)", 30)
        say("CLI", f"in another shell: export CLUSTERQ_COORDINATOR={','.join(addrs)}; "
                   ".venv/bin/python -m clusterq_cli queue show support")
        seen: set[str] = set()
        for n in nodes:
            observers.append(await AriObserver.open(n))
        marks = [0 for _ in observers]
        client = AdminClient(addrs)
        for agent, home in AGENTS.items():
            await client.login(agent, f"Local/{agent}@clusterq-agents-auto/n", home, ["support"])
            say("AGENT", f"{agent} logged in, homed on node {home}")
        started = time.monotonic()
        next_stats = started
        i = 0
        while not stop.is_set() and (duration is None or time.monotonic() - started < duration):
            if calls_per_node is None or counts["placed"] < calls_per_node * len(nodes):
                obs = observers[i % len(observers)]
                legs = await obs.originate_caller("support", caller_number=f"55500{i:02d}", caller_name=f"Demo {i}")
                counts["placed"] += 1
                say("QUEUED", f"{legs.queue_id} on node {obs.node.name} (caller 55500{i:02d})")
                i += 1
            for k, obs in enumerate(observers):
                marks[k] = _report_bridges(obs, marks[k], seen, counts)
            if time.monotonic() >= next_stats:
                next_stats += STATS_EVERY
                snap = await client.snapshot("support")
                for q in snap.queues:
                    say("STATS", f"{q.queue}: waiting {q.waiting}, answered {q.answered}, agents available "
                                 f"{q.agents_available}/{q.agents_logged_in}, longest wait {q.longest_wait:.1f}s "
                                 f"(leader epoch {snap.epoch})")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), CALL_EVERY)
        await client.close()
    finally:
        say("STOP", "stopping everything this run started")
        for obs in observers:
            await obs.close()
        for p in reversed(procs):
            await p.async_stop()
        await cluster.stop()
        await etcd.stop()
        say("STOP", f"done: {counts['placed']} calls placed, {counts['bridged']} bridged; queue_log: "
                    f"{', '.join(str(q) for q in sorted((work / 'logs').glob('*.queue_log')))}")
    return counts["bridged"]


def main() -> None:
    """Entry point of `make run`."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=float, default=None, help="stop after this many seconds")
    ap.add_argument("--calls-per-node", type=int, default=None,
                    help="stop placing calls after this many per node (default: until stopped)")
    args = ap.parse_args()
    bridged = asyncio.run(run(args.duration, args.calls_per_node))
    sys.exit(0 if bridged > 0 else 1)


if __name__ == "__main__":
    main()

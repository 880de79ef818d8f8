"""Several test Asterisk nodes of one run: full-mesh trunks, phone hosts, parallel start and stop.

`AsteriskCluster` creates nodes sharing a root and run id, gives every node a PJSIP trunk to every
other (and phone hosts a registration at their server) and starts them in parallel; `start_nodes` is
the one-call form.
"""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import Mapping, Sequence
from pathlib import Path

from clusterq_testing.asterisk import AsteriskNode
from clusterq_testing.asterisk_instance import default_root
from clusterq_testing.asterisk_node_config import PhoneRegistration
from clusterq_testing.ports import release_rtp_range

__all__ = ["AsteriskCluster", "start_nodes"]


class AsteriskCluster:
    """Nodes of one test run: shared root and run id, full-mesh trunks, optional phone hosts."""

    def __init__(
        self,
        *,
        root: Path | None = None,
        run_id: str | None = None,
        stasis_app: str = "clusterq",
        test_app: str = "cqtest",
        keep: bool = False,
    ) -> None:
        self.root = root or default_root()
        self.run_id = run_id or f"{os.getpid()}-{secrets.token_hex(3)}"
        self.stasis_app = stasis_app
        self.test_app = test_app
        self.keep = keep
        self.nodes: dict[str, AsteriskNode] = {}

    def _new_node(self, name: str, **kwargs: object) -> AsteriskNode:
        if name in self.nodes:
            raise ValueError(f"node {name!r} exists already")
        node = AsteriskNode(name, root=self.root, run_id=self.run_id, stasis_app=self.stasis_app,
                            test_app=self.test_app, keep=self.keep, **kwargs)  # type: ignore[arg-type]
        self.nodes[name] = node
        return node

    def add_nodes(self, names: Sequence[str], phones: Mapping[str, Sequence[str]] | None = None
                  ) -> list[AsteriskNode]:
        """Create nodes meshed with each other and with the cluster's trunk nodes (not started)."""
        trunk_nodes = [n for n in self.nodes.values() if not n.registrations]
        new = [self._new_node(name, phones=tuple((phones or {}).get(name, ()))) for name in names]
        for node in new:
            for other in [*trunk_nodes, *new]:
                if other is not node:
                    node.add_peer(other.name, other.sip_port)
                    if other in trunk_nodes:
                        other.add_peer(node.name, node.sip_port)  # reloads pjsip if running
        return new

    def add_phone_host(self, name: str, server: AsteriskNode, phones: Sequence[str]) -> AsteriskNode:
        """Create a node that REGISTERs at `server` as each of `phones` (created there if missing).

        Calls from `server` to such a phone arrive on the host in [clusterq-agents-test], i.e. in
        Stasis(<test app>,agent,<phone>).  The host has no trunks.
        """
        regs = []
        for phone in phones:
            known = phone in {p.name for p in server.phones}
            account = server.phone(phone) if known else server.add_phone(phone)
            regs.append(PhoneRegistration(phone, account.password, server.name, server.sip_port))
        return self._new_node(name, registrations=tuple(regs))

    async def start(self, nodes: Sequence[AsteriskNode] | None = None, timeout: float = 30.0) -> None:
        """Start `nodes` (default: every node not running) in parallel; on any failure stop the
        ones that started and raise the first error."""
        todo = [n for n in (nodes if nodes is not None else self.nodes.values()) if n.pid is None]
        results = await asyncio.gather(*(n.async_start(timeout) for n in todo), return_exceptions=True)
        errors = [r for r in results if isinstance(r, BaseException)]
        if errors:
            await asyncio.gather(*(n.async_stop() for n in todo), return_exceptions=True)
            raise errors[0]
        # Phone hosts: wait until their servers list the contacts.  Asterisk sends each
        # registration's first REGISTER after a random 1-10 s (also after `pjsip send register`).
        waits = [server.async_wait_registered(reg.phone, timeout=max(timeout, 15.0))
                 for n in todo for reg in n.registrations
                 if (server := self.nodes.get(reg.server)) is not None and server.pid is not None]
        await asyncio.gather(*waits)

    async def stop(self, save_logs_to: Path | None = None) -> None:
        """Stop every node (in parallel); logs copied to save_logs_to/<name>/ if given."""
        await asyncio.gather(*(
            n.async_stop(save_logs_to=save_logs_to / n.name if save_logs_to else None)
            for n in self.nodes.values()
        ))
        # Not in AsteriskNode.stop: restart() reuses a node's range.
        for n in self.nodes.values():
            release_rtp_range(n.rtp)


async def start_nodes(
    names: Sequence[str],
    stasis_app: str = "clusterq",
    test_app: str = "cqtest",
    *,
    phones: Mapping[str, Sequence[str]] | None = None,
    root: Path | None = None,
    run_id: str | None = None,
    keep: bool = False,
    timeout: float = 30.0,
) -> list[AsteriskNode]:
    """Create full-mesh nodes `names` and start them in parallel (the caller stops them)."""
    cluster = AsteriskCluster(root=root, run_id=run_id, stasis_app=stasis_app, test_app=test_app, keep=keep)
    nodes = cluster.add_nodes(names, phones=phones)
    await cluster.start(nodes, timeout=timeout)
    return nodes

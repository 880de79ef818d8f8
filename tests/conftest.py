"""Shared pytest fixtures: real Asterisk nodes, the tests' ARI observers, real etcd clusters.

Every real process is started by a fixture and stopped by PID at teardown, also when the test fails.
A real part that cannot start makes the test ERROR (the fixture raises), it is never skipped.

Skips of `e2e` / `chaos` tests count as FAILURES (see `pytest_runtest_makereport` and
`pytest_collectreport` below): such a test silently not running would hide exactly the regressions
those suites exist for.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Generator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from clusterq_testing.asterisk import AsteriskNode
from clusterq_testing.asterisk_cluster import AsteriskCluster
from clusterq_testing.observer import AriObserver

if TYPE_CHECKING:
    from clusterq_testing.etcd import EtcdCluster

_STRICT_MARKERS = ("e2e", "chaos")
# e2e/chaos modules skipped as a whole at collection (one pytest session per process)
_skipped_modules: list[str] = []


# ------------------------------------------------------------------------------ skips -> failures
@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Turn the skip of a test marked e2e or chaos (skip/skipif marker, pytest.skip() in a fixture or
    the test, importorskip) into a failure carrying the skip reason.  xfail is left alone."""
    report: pytest.TestReport = yield
    if report.skipped and not hasattr(report, "wasxfail"):
        strict = [m for m in _STRICT_MARKERS if item.get_closest_marker(m) is not None]
        if strict:
            reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
            report.outcome = "failed"
            report.longrepr = (f"{'/'.join(strict)} test was SKIPPED, which counts as a failure "
                               f"(a real part must run or ERROR): {reason}")
    return report


def pytest_collectreport(report: pytest.CollectReport) -> None:
    """A module skipped at collection (module-level pytest.skip / importorskip) has no items, so the
    hook above never sees it: if its source uses an e2e/chaos mark, remember it."""
    if not report.skipped or not report.nodeid.endswith(".py"):
        return
    try:
        source = Path(report.fspath).read_text(errors="replace")
    except OSError:
        return
    if re.search(r"mark\.(e2e|chaos)\b", source):
        _skipped_modules.append(f"{report.nodeid}: {report.longrepr}")


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Name the e2e/chaos modules skipped at collection."""
    for line in _skipped_modules:
        terminalreporter.write_line(f"FAILED (e2e/chaos module skipped at collection): {line}", red=True)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Never exit 0 after skipping an e2e/chaos module at collection."""
    if _skipped_modules and exitstatus in (pytest.ExitCode.OK, pytest.ExitCode.NO_TESTS_COLLECTED):
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


# ------------------------------------------------------------------------------ Asterisk
class AsteriskFactory:
    """`await asterisk_factory(["a", "b"])` -> started, full-mesh nodes (see `__call__`)."""

    def __init__(self, cluster: AsteriskCluster) -> None:
        self.cluster = cluster

    async def __call__(self, names: Sequence[str], phones: Mapping[str, Sequence[str]] | None = None,
                       timeout: float = 30.0) -> list[AsteriskNode]:
        """Create and start nodes `names`, meshed with each other and with nodes made earlier in the
        test; `phones` maps a node name to phone endpoints it hosts."""
        nodes = self.cluster.add_nodes(names, phones=phones)
        await self.cluster.start(nodes, timeout=timeout)
        return nodes

    async def phone_host(self, name: str, server: AsteriskNode, phones: Sequence[str],
                         timeout: float = 30.0) -> AsteriskNode:
        """Start a node that REGISTERs at `server` as each phone in `phones`; returns once the server
        lists the contacts (Asterisk delays a first REGISTER by a random 1-10 s)."""
        node = self.cluster.add_phone_host(name, server, phones)
        await self.cluster.start([node], timeout=timeout)
        return node


@pytest.fixture
async def asterisk_factory(tmp_path: Path) -> AsyncIterator[AsteriskFactory]:
    """Factory of real Asterisk nodes; every node is stopped (by our PID) at teardown, logs are copied
    to <tmp_path>/asterisk-logs/<node>/ for post-mortems."""
    cluster = AsteriskCluster()
    try:
        yield AsteriskFactory(cluster)
    finally:
        await cluster.stop(save_logs_to=tmp_path / "asterisk-logs")


class ObserverFactory:
    """`await observers(node)` -> a connected AriObserver for the node's test app (or `app`)."""

    def __init__(self) -> None:
        self.opened: list[AriObserver] = []

    async def __call__(self, node: AsteriskNode, app: str | None = None) -> AriObserver:
        """Connect an observer (the app is registered when this returns)."""
        obs = await AriObserver.open(node, app)
        self.opened.append(obs)
        return obs

    async def close_all(self) -> None:
        """Close every observer opened through this factory."""
        for obs in self.opened:
            await obs.close()


@pytest.fixture
async def observers() -> AsyncIterator[ObserverFactory]:
    """Opens AriObservers on demand; all closed at teardown."""
    factory = ObserverFactory()
    try:
        yield factory
    finally:
        await factory.close_all()


# ------------------------------------------------------------------------------ etcd
class EtcdFactory:
    """`await etcd_factory(members=1)` -> a started clusterq_testing.etcd.EtcdCluster."""

    def __init__(self, base_dir: Path) -> None:
        self.base_dir = base_dir
        self.clusters: list[EtcdCluster] = []

    async def __call__(self, members: int = 1, **kwargs: Any) -> EtcdCluster:
        """Start an etcd cluster of `members` in its own folder under tmp_path."""
        # Imported here so the Asterisk tests run even where the etcd helper is absent/broken.
        from clusterq_testing.etcd import EtcdCluster

        cluster = EtcdCluster(self.base_dir / f"etcd-{len(self.clusters)}", members=members, **kwargs)
        self.clusters.append(cluster)  # before start: a half-started cluster is stopped too
        await cluster.start()
        return cluster


@pytest.fixture
async def etcd_factory(tmp_path: Path) -> AsyncIterator[EtcdFactory]:
    """Factory of real etcd clusters; all stopped at teardown."""
    factory = EtcdFactory(tmp_path)
    try:
        yield factory
    finally:
        for cluster in factory.clusters:
            await cluster.stop()

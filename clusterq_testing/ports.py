"""Free loopback ports for tests that start real processes.

Guarantees, within ONE Python process: a port handed out by `free_tcp_port` / `free_udp_port` is never
handed out again, and RTP ranges from `reserve_rtp_range` never overlap each other nor contain a port
handed out here.  Non-guarantees: another process may grab a port between our probe and the real
server's bind (the usual race of "bind to port 0, close, pass the number on"); the window is short
and tests that hit it fail loudly at start (a real part that cannot start is an ERROR).

Everything binds 127.0.0.1 only.
"""

from __future__ import annotations

import random
import socket
import threading
from dataclasses import dataclass

__all__ = ["PortRange", "free_tcp_port", "free_udp_port", "release_rtp_range", "reserve_rtp_range"]

_LOOPBACK = "127.0.0.1"
_RTP_LOW = 20000
_RTP_HIGH = 60000
_RTP_STEP = 200
# Tried bases before giving up; each try costs a few bind() calls.
_RTP_TRIES = 200

_lock = threading.Lock()
_handed_out: set[int] = set()
_ranges: list[PortRange] = []


@dataclass(frozen=True)
class PortRange:
    """An inclusive port range [start, end] (RTP for one Asterisk node)."""

    start: int
    end: int

    def __contains__(self, port: object) -> bool:
        return isinstance(port, int) and self.start <= port <= self.end

    def overlaps(self, other: PortRange) -> bool:
        """True when the two inclusive ranges share at least one port."""
        return self.start <= other.end and other.start <= self.end


def _bindable(port: int, kind: socket.SocketKind) -> bool:
    with socket.socket(socket.AF_INET, kind) as s:
        try:
            s.bind((_LOOPBACK, port))
        except OSError:
            return False
        return True


def _in_reserved_range(port: int) -> bool:
    return any(port in r for r in _ranges)


def _free_port(kind: socket.SocketKind) -> int:
    # The kernel picks an unused port; we reject ones handed out before (the kernel may well
    # give the same number again once our probe socket is closed) or inside an RTP range.
    for _ in range(1000):
        with socket.socket(socket.AF_INET, kind) as s:
            s.bind((_LOOPBACK, 0))
            port = int(s.getsockname()[1])
        with _lock:
            if port in _handed_out or _in_reserved_range(port):
                continue
            _handed_out.add(port)
            return port
    raise RuntimeError("no free loopback port found after 1000 tries")


def free_tcp_port() -> int:
    """A TCP port free on 127.0.0.1 now and never returned before in this process."""
    return _free_port(socket.SOCK_STREAM)


def free_udp_port() -> int:
    """A UDP port free on 127.0.0.1 now and never returned before in this process."""
    return _free_port(socket.SOCK_DGRAM)


def _ephemeral_range() -> PortRange:
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range", encoding="ascii") as f:
            lo, hi = (int(x) for x in f.read().split())
        return PortRange(lo, hi)
    except (OSError, ValueError):
        return PortRange(32768, 60999)


def reserve_rtp_range(size: int = 400) -> PortRange:
    """Reserve `size` UDP ports for one node's RTP (`rtp.conf` rtpstart/rtpend).

    The base is random in 20000-60000, aligned to 200. Bases outside the kernel's ephemeral range are
    preferred (fewer clashes with sockets bound to port 0). A few ports of the range are probed.
    """
    if size < 20 or size % 2:
        raise ValueError("RTP range size must be an even number >= 20")
    ephemeral = _ephemeral_range()
    bases = list(range(_RTP_LOW, _RTP_HIGH - size + 1, _RTP_STEP))
    random.shuffle(bases)
    # Stable sort: non-ephemeral bases first, random order within each group.
    bases.sort(key=lambda b: PortRange(b, b + size - 1).overlaps(ephemeral))
    for base in bases[:_RTP_TRIES]:
        cand = PortRange(base, base + size - 1)
        with _lock:
            if any(cand.overlaps(r) for r in _ranges) or any(p in cand for p in _handed_out):
                continue
        probes = (cand.start, cand.start + size // 2, cand.end - 1)
        if not all(_bindable(p, socket.SOCK_DGRAM) for p in probes):
            continue
        with _lock:
            # Re-check under the lock: another thread may have reserved meanwhile.
            if any(cand.overlaps(r) for r in _ranges):
                continue
            _ranges.append(cand)
        return cand
    raise RuntimeError(f"no free RTP range of {size} ports found")


def release_rtp_range(r: PortRange) -> None:
    """Give a node's RTP range back once the node has stopped for good (a long test session would
    otherwise run out of ranges)."""
    with _lock:
        if r in _ranges:
            _ranges.remove(r)

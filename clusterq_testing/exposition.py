"""A strict reader of Prometheus text exposition (format 0.0.4) as clusterq writes it, for tests:
every deviation is an AssertionError saying where."""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass

NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
HELP_RE = re.compile(rf"# HELP ({NAME}) (.*)")
TYPE_RE = re.compile(rf"# TYPE ({NAME}) (counter|gauge|histogram|summary|untyped)")
SAMPLE_RE = re.compile(rf"({NAME})(?:\{{(.*)\}})? (\S+)")
LABEL_RE = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\[\\"n])*)"(,|$)')
VALUE_RE = re.compile(r"[+-]?(?:Inf|NaN|\d+(?:\.\d*)?(?:[eE][+-]?\d+)?|\.\d+(?:[eE][+-]?\d+)?)")

Labels = tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Family:
    """One parsed metric family."""

    kind: str
    help: str
    samples: dict[Labels, float]


def _unescape(value: str) -> str:
    return re.sub(r"\\(.)", lambda m: {"n": "\n"}.get(m[1], m[1]), value)


def parse(text: str) -> dict[str, Family]:
    """Parse exposition text strictly (AssertionError on any deviation from format 0.0.4 as we emit
    it: HELP then TYPE then the family's samples, each family once, no blank or unknown lines)."""
    assert text.endswith("\n") and not text.endswith("\n\n")
    families: dict[str, Family] = {}
    current = ""
    lines = text[:-1].split("\n")
    i = 0
    while i < len(lines):
        help_m, type_m = HELP_RE.fullmatch(lines[i]), TYPE_RE.fullmatch(lines[i + 1]) if i + 1 < len(lines) else None
        if help_m is not None:
            assert type_m is not None and type_m[1] == help_m[1], f"HELP without its TYPE at line {i + 1}"
            current = help_m[1]
            assert current not in families, f"{current} appears twice"
            assert current.startswith("clusterq_")
            assert (type_m[2] == "counter") == current.endswith("_total"), f"{current}: _total iff counter"
            families[current] = Family(type_m[2], _unescape(help_m[2]), {})
            i += 2
            continue
        m = SAMPLE_RE.fullmatch(lines[i])
        assert m is not None, f"not a sample line: {lines[i]!r}"
        assert m[1] == current, f"{m[1]} sampled outside its family"
        labels: list[tuple[str, str]] = []
        rest = m[2] or ""
        while rest:
            lm = LABEL_RE.match(rest)
            assert lm is not None, f"bad labels {m[2]!r}"
            labels.append((lm[1], _unescape(lm[2])))
            rest = rest[lm.end():]
        assert VALUE_RE.fullmatch(m[3]), f"bad value {m[3]!r}"
        key = tuple(labels)
        assert key not in families[current].samples, f"{current}{key} twice"
        families[current].samples[key] = float(m[3])
        i += 1
    return families


def value(families: dict[str, Family], name: str, queue: str | None = None) -> float:
    """The sample of `name` (for `queue`, if given)."""
    return families[name].samples[(("queue", queue),) if queue is not None else ()]


@dataclass(frozen=True)
class HttpAnswer:
    """A response as read off the wire."""

    status: int
    headers: dict[str, str]  # names in lower case
    body: str


async def http_get(host: str, port: int, path: str = "/metrics", method: str = "GET",
                   timeout: float = 5.0) -> HttpAnswer:
    """One plain HTTP/1.1 request on its own connection (the server closes it after answering)."""
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(f"{method} {path} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode())
        await writer.drain()
        raw = await asyncio.wait_for(reader.read(), timeout)
    finally:
        writer.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    status_line, *fields = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v for k, _, v in (f.partition(": ") for f in fields)}
    return HttpAnswer(int(status_line.split(" ")[1]), headers, body.decode("utf-8"))

"""Writing Prometheus text exposition (format 0.0.4), shared by the coordinator's and the stasis app's
/metrics (coordinator/metrics.py, stasis_app/metrics.py): the content type, escaping, sample values
and the HELP/TYPE header of a family. Pure string work; what is exported stays with each service.
"""

from __future__ import annotations

import importlib.metadata
import math

__all__ = ["CONTENT_TYPE", "build_version", "escape_help", "escape_label", "header", "number"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def escape_label(value: str) -> str:
    """A label value escaped as the format requires: backslash, double quote and line feed."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def escape_help(text: str) -> str:
    """HELP text escaped as the format requires: backslash and line feed (a quote stays as it is)."""
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def number(value: float) -> str:
    """A sample value: integers as such, floats at full precision, NaN and infinities spelled as Prometheus does."""
    if isinstance(value, int):
        return str(value)
    if math.isfinite(value):
        return repr(value)
    return "NaN" if math.isnan(value) else "+Inf" if value > 0 else "-Inf"


def header(out: list[str], name: str, kind: str, help_text: str) -> None:
    """Append a family's `# HELP` and `# TYPE` lines to `out` (its samples must follow at once)."""
    out.append(f"# HELP {name} {escape_help(help_text)}")
    out.append(f"# TYPE {name} {kind}")


def build_version() -> str | None:
    """The installed clusterq package's version (pyproject's at install time), None if not installed."""
    try:
        return importlib.metadata.version("clusterq")
    except importlib.metadata.PackageNotFoundError:
        return None

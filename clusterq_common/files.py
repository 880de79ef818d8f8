"""Files named by a setting (secrets, certificates): read once, errors name the setting and the path,
never the content (it may be a password or a key)."""

from __future__ import annotations

from pathlib import Path

__all__ = ["read_named", "read_secret_text"]


def read_named(var: str, path: Path, error: type[ValueError] = ValueError) -> bytes:
    """The bytes of the file `var` names; `error` naming both if it cannot be read."""
    try:
        return path.read_bytes()
    except OSError as exc:
        raise error(f"{var}={path}: cannot read the file: {exc.strerror or exc}") from None


def read_secret_text(var: str, path: Path) -> str:
    """The UTF-8 text of a secret file, unstripped (each caller knows what its whitespace means).
    Not UTF-8 is a ValueError naming the file: a UnicodeDecodeError's message would quote a byte of it."""
    try:
        return read_named(var, path).decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError(f"{var}={path}: not UTF-8 text") from None

"""The command line's value types: each refuses with the form it expects (argparse prints the message
after the option's name, exit status 2), and settings that default to a variable remember it, so
that a complaint names what the operator set: the flag, or the variable."""

from __future__ import annotations

import argparse
import math
import os

from clusterq_common.text import clip
from clusterq_proto.v1 import admin_pb2, common_pb2

__all__ = ["FromEnv", "addresses", "env_default", "membership", "seconds", "skill", "source"]


class FromEnv(str):
    """A default read from the variable `var` (compares and prints as the plain value)."""

    var: str

    def __new__(cls, value: str, var: str) -> FromEnv:
        """The value `var` holds."""
        self = super().__new__(cls, value)
        self.var = var
        return self


def env_default(var: str, fallback: str = "") -> FromEnv:
    """The variable's value (or `fallback` when it is not set) as an option's default."""
    return FromEnv(os.environ.get(var, fallback), var)


def source(value: str, flag: str) -> str:
    """Where `value` came from: its variable when it is a default read from one, else `flag`."""
    return value.var if isinstance(value, FromEnv) else flag


def membership(text: str) -> admin_pb2.QueueMembership:
    """QUEUE[:PENALTY[:WEIGHT]] -> QueueMembership."""
    queue, *rest = text.split(":")
    try:
        if not queue or len(rest) > 2:
            raise ValueError(text)
        numbers = [int(x) for x in rest]
    except ValueError:
        raise argparse.ArgumentTypeError(f"want QUEUE[:PENALTY[:WEIGHT]] (whole numbers), not {clip(text)}") from None
    return admin_pb2.QueueMembership(queue=queue, penalty=numbers[0] if numbers else 0,
                                     weight=numbers[1] if len(numbers) > 1 else 0)


def skill(text: str) -> common_pb2.Skill:
    """KEY=VALUE -> Skill."""
    key, sep, value = text.partition("=")
    if not sep or not key or not value:
        raise argparse.ArgumentTypeError(f"want KEY=VALUE, e.g. language=de, not {clip(text)}")
    return common_pb2.Skill(key=key, value=value)


def seconds(text: str) -> float:
    """A positive, finite number of seconds (NaN would make every deadline test false)."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"want a number of seconds > 0, e.g. 10, not {clip(text)}")
    return value


def addresses(text: str) -> list[str]:
    """host:port,... -> the addresses (empty items dropped; the caller refuses an empty list)."""
    return [a.strip() for a in text.split(",") if a.strip()]

"""Ids of the channels and bridges a node creates for an offer: `<node>-<kind>-<offer id>_` (shared: the
leader names the agent leg in queue_log CONNECT lines, as app_queue names the member channel).

Asterisk refuses a new channel id that is a case-insensitive PREFIX of an existing one (measured on
22.10: with `x-10` up, originating `x-1` answers 409 "already exists"; after such a 409, `core stop now`
no longer stops that Asterisk, it had to be killed), and offer ids are `e<epoch>-<n>`,
so `a-ag-e2-1` would collide with `a-ag-e2-10`. Ending every id with a character that never occurs in
an offer id makes the ids prefix-free: no id is a prefix of another (nor of its Local `;2` half)."""

from __future__ import annotations

__all__ = ["agent_leg_id", "bridge_id", "holding_bridge_id", "offer_of_bridge", "trunk_leg_id"]

_END = "_"


def agent_leg_id(node_id: str, offer_id: str) -> str:
    """The channel id of the agent leg rung for an offer on its agent's home node."""
    return f"{node_id}-ag-{offer_id}{_END}"


def trunk_leg_id(node_id: str, offer_id: str) -> str:
    """The channel id of the trunk leg an agent's node dials to the caller's node."""
    return f"{node_id}-tr-{offer_id}{_END}"


def bridge_id(node_id: str, offer_id: str) -> str:
    """The bridge of an offer's call on one node (the same name on both sides of a cross-node call)."""
    return f"{node_id}-br-{offer_id}{_END}"


def holding_bridge_id(node_id: str, music_class: str) -> str:
    """The holding bridge whose one music stream of `music_class` this node's waiting callers hear."""
    return f"{node_id}-hold-{music_class}{_END}"


def offer_of_bridge(node_id: str, bridge: str) -> str | None:
    """The offer id of one of this node's bridges, None for any other bridge."""
    prefix = f"{node_id}-br-"
    if not bridge.startswith(prefix) or not bridge.endswith(_END):
        return None
    return bridge[len(prefix):-len(_END)] or None

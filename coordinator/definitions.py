"""Queue and agent definitions: the declarative file, JSON for etcd, and protobuf conversion.

The queues file (YAML, like queues.conf) looks like:

    queues:
      support:
        strategy: leastrecent
        ring_timeout: 15
        wrapup_time: 5
        music_class: default
        penalty_rules: [{after_seconds: 30, max_penalty: 2}]
    agents:            # optional: agents logged in at start
      alice: {endpoint: "PJSIP/alice", home_node: a, queues: {support: {penalty: 0}}, skills: {language: en}}
      bob: {endpoint: "Local/bob@agents/n", home_node: b, queues: [support], state_interface: "PJSIP/bob"}

Which wins when both change: the file is applied when the leader starts, but only for the queues
and agents whose file text changed since it was last applied (a hash per entry is kept in etcd). So
an admin change (gRPC UpdateQueue, Login, Logout) survives leader changes and restarts until the
file's own entry for that queue or agent is edited, which then wins, like a redeploy. A queue removed
from the file is NOT deleted (deleting drops waiting callers): delete it with DeleteQueue; an agent
removed from the file stays logged in until Logout.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from clusterq_common.dialplan import RESERVED_FIRST_ARGS
from clusterq_common.text import clip, cut, plain_text_error
from clusterq_proto.v1 import admin_pb2, common_pb2
from coordinator.app_queue_names import ALIASES, empty_conditions, penalty_rules, yes_no_word
from coordinator.queue.model import (
    DURATIONS,
    MAX_SECONDS,
    MIN_PERIOD,
    NAME_RE,
    PERIODS,
    AgentConfig,
    Membership,
    QueueConfig,
    Strategy,
)

MAX_QUEUES_FILE_BYTES = 1_000_000
# Bounds on what one definition may carry: a queue's media settings ride in every JoinAck, and
# every definition is held in memory and written to etcd. Names are bounded by NAME_RE already.
MAX_TEXT_LEN = 256  # music class, exit context, endpoint, state interface, each periodic prompt
MAX_ITEMS = 64  # penalty rules, periodic prompts, memberships, skills
MAX_SKILL_VALUE_LEN = 64
_FIELDS = {f.name: f for f in dataclasses.fields(QueueConfig)}
log = logging.getLogger(__name__)


class DefinitionError(ValueError):
    """A queue or agent definition is invalid; the message names the field."""


def queue_from_mapping(name: str, raw: Mapping[str, Any], *, stored: bool = False) -> QueueConfig:
    """Build and validate a QueueConfig from a file/JSON mapping (keys may use '-' or '_', and
    app_queue's names and yes/no words: see app_queue_names). `stored`: a record already in etcd,
    whose durations are brought within bounds added since (see `_within_bounds`)."""
    # Every message below names the queue: a name that is no name is refused first, quoted short.
    if not NAME_RE.match(name):
        raise DefinitionError(f"queue name {clip(name)} must match {NAME_RE.pattern}")
    if not isinstance(raw, Mapping):
        raise DefinitionError(f"queue {name}: the definition must be a mapping of settings")
    kw: dict[str, Any] = {"name": name}
    for key, value in raw.items():
        field = str(key).replace("-", "_")
        field = ALIASES.get(field, field)
        if field == "name":
            continue
        if field not in _FIELDS:
            raise DefinitionError(f"queue {name}: unknown setting {clip(key)}")
        try:
            kw[field] = _coerce(field, value)
        except (TypeError, ValueError, KeyError, AttributeError) as exc:
            # The reason may quote the value (int("..."), float("...")): it is cut like the value.
            raise DefinitionError(f"queue {name}: bad value for {clip(key)}: {cut(str(exc))}") from exc
    if stored:
        _within_bounds(name, kw)
    try:
        cfg = QueueConfig(**kw)
        cfg.validate()
    except (TypeError, ValueError) as exc:
        raise DefinitionError(str(exc)) from exc
    _check_queue_bounds(cfg, stored)
    return cfg


def _within_bounds(name: str, kw: dict[str, Any]) -> None:
    """Durations of a stored queue moved to the nearest valid value (with a warning): an older leader
    accepted them before the bounds (MIN_PERIOD, MAX_SECONDS) existed, and a record that no longer
    validated would vanish from the next leader with its waiting callers."""
    for field in DURATIONS:
        value = kw.get(field)
        if not isinstance(value, float) or not math.isfinite(value) or value < 0:
            continue  # never accepted: validation refuses it as before
        low = MIN_PERIOD if field == "ring_timeout" or (field in PERIODS and value > 0) else 0.0
        fixed = min(max(value, low), MAX_SECONDS)
        if fixed != value:
            log.warning("stored queue %s: %s %r is out of bounds, %r is used", name, field, value, fixed)
            kw[field] = fixed
    rules = kw.get("penalty_rules")
    if rules:
        # A rule after more than MAX_SECONDS of waiting can never apply: it is dropped, not moved
        # (two moved to the bound would no longer be in order).
        kept = tuple(r for r in rules if not (math.isfinite(r.after_seconds) and r.after_seconds > MAX_SECONDS))
        if len(kept) != len(rules):
            log.warning("stored queue %s: %d penalty rules after more than %.0f s dropped (they never apply)",
                        name, len(rules) - len(kept), MAX_SECONDS)
            kw["penalty_rules"] = kept


def _check_queue_bounds(cfg: QueueConfig, stored: bool) -> None:
    if cfg.name in RESERVED_FIRST_ARGS:
        raise DefinitionError(f"queue {cfg.name}: the name is reserved (Stasis(clusterq,{cfg.name},...) means "
                              "one of clusterq's own legs or an agent's feature code, never a queue)")
    for field in ("music_class", "exit_context"):
        if len(getattr(cfg, field)) > MAX_TEXT_LEN:
            raise DefinitionError(f"queue {cfg.name}: {field} longer than {MAX_TEXT_LEN} characters")
        # Names Asterisk is given (a music class, a dialplan context): a line break or a NUL has no
        # place in them. They never reach queue_log, so "|" stays allowed.
        if not stored and (error := plain_text_error(field, getattr(cfg, field), bar=False)):
            raise DefinitionError(f"queue {cfg.name}: {error}")
    for field in ("periodic_announce", "penalty_rules"):
        if len(getattr(cfg, field)) > MAX_ITEMS:
            raise DefinitionError(f"queue {cfg.name}: more than {MAX_ITEMS} {field}")
    if any(len(prompt) > MAX_TEXT_LEN for prompt in cfg.periodic_announce):
        raise DefinitionError(f"queue {cfg.name}: a periodic_announce prompt is longer than {MAX_TEXT_LEN} characters")
    for prompt in () if stored else cfg.periodic_announce:  # stored: accepted before the check, kept
        if error := plain_text_error("a periodic_announce prompt", prompt, bar=False):
            raise DefinitionError(f"queue {cfg.name}: {error}")


def _coerce(field: str, value: Any) -> Any:
    if field == "strategy":
        try:
            return Strategy(str(value))
        except ValueError:
            raise ValueError(f"{clip(value)} is not one of {[s.value for s in Strategy]}") from None
    if field in ("joinempty", "leavewhenempty"):
        return empty_conditions(field, value)
    if field in ("announce_position", "announce_holdtime"):
        return yes_no_word(value)
    if field == "periodic_announce":
        items = value.split(",") if isinstance(value, str) else list(value)
        return tuple(str(x).strip() for x in items if str(x).strip())
    if field == "penalty_rules":
        return penalty_rules(value)
    default = _FIELDS[field].default
    if isinstance(default, bool):
        if isinstance(value, str):
            return value.lower() in ("yes", "true", "1", "on")
        return bool(value)
    if isinstance(default, int):
        return int(value)
    if isinstance(default, float):
        return float(value)
    return str(value)


def queue_to_mapping(cfg: QueueConfig) -> dict[str, Any]:
    """The JSON-able form of a QueueConfig (stored in etcd)."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(cfg):
        v = getattr(cfg, f.name)
        if isinstance(v, frozenset):
            v = sorted(v)
        elif f.name == "penalty_rules":
            v = [dataclasses.asdict(r) for r in v]
        elif isinstance(v, tuple):
            v = list(v)
        elif isinstance(v, Strategy):
            v = v.value
        out[f.name] = v
    return out


def queue_json(cfg: QueueConfig) -> bytes:
    """Canonical JSON bytes of a queue definition."""
    return json.dumps(queue_to_mapping(cfg), sort_keys=True).encode()


def queue_from_json(data: bytes) -> QueueConfig:
    """Inverse of queue_json; raises DefinitionError for anything that is not a valid definition."""
    try:
        raw = json.loads(data)
        name = raw.pop("name")
    except (ValueError, TypeError, KeyError, AttributeError) as exc:  # not JSON, not a mapping, no name
        raise DefinitionError(f"stored queue is not a JSON definition with a name: {exc!r}") from exc
    return queue_from_mapping(str(name), raw, stored=True)


def definition_hash(raw: Mapping[str, Any]) -> str:
    """Stable hash of one queue's file text, to detect edits of the file."""
    return hashlib.sha256(json.dumps(raw, sort_keys=True, default=str).encode()).hexdigest()[:16]


def agent_from_mapping(agent_id: str, raw: Mapping[str, Any], *, stored: bool = False) -> AgentConfig:
    """Build and validate an AgentConfig from the file (or, `stored`, etcd's JSON) form; raises
    DefinitionError."""
    if not isinstance(raw, Mapping):
        raise DefinitionError(f"agent {agent_id}: the definition must be a mapping")
    if "endpoint" not in raw or "home_node" not in raw:
        raise DefinitionError(f"agent {agent_id}: endpoint and home_node are required")
    try:
        queues = raw.get("queues") or {}
        if isinstance(queues, list):
            queues = {q: {} for q in queues}
        memberships = tuple(Membership(str(q), int((m or {}).get("penalty", 0)), int((m or {}).get("weight", 0)))
                            for q, m in dict(queues).items())
        skills = tuple((str(k), str(v)) for k, v in dict(raw.get("skills") or {}).items())
    except (TypeError, ValueError, AttributeError) as exc:
        raise DefinitionError(f"agent {agent_id}: bad queues or skills: {exc}") from exc
    return checked_agent(AgentConfig(agent_id=agent_id, endpoint=str(raw["endpoint"]),
                                     home_node=str(raw["home_node"]), memberships=memberships, skills=skills,
                                     state_interface=str(raw.get("state_interface") or "")), stored=stored)


def checked_agent(agent: AgentConfig, *, stored: bool = False) -> AgentConfig:
    """`agent` if it is usable by the engine (AgentConfig.validate) and within the size bounds;
    raises DefinitionError otherwise. Every agent built from outside input goes through here.
    `stored`: a record already in etcd, where what is only refused to new input (a `hint:` state
    interface, refused since) is let through: the agent must not vanish from the next leader."""
    if not NAME_RE.match(agent.agent_id):
        raise DefinitionError(f"agent_id {agent.agent_id[:70]!r} must match {NAME_RE.pattern}")
    # A dial string goes to Asterisk as is: no spaces or control characters (a newline or a NUL in it
    # was stored, shown and dialled), as the stasis app's agent-login refuses them too. A stored one
    # was accepted before this check: it stays, like a `hint:` state interface below.
    endpoint = agent.endpoint
    if (not endpoint or len(endpoint) > MAX_TEXT_LEN or "/" not in endpoint
            or (not stored and (not endpoint.isprintable() or any(c.isspace() for c in endpoint)))):
        raise DefinitionError(f"agent {agent.agent_id}: endpoint must be a dial string like PJSIP/alice "
                              f"(at most {MAX_TEXT_LEN} characters, no spaces or control characters)")
    if not NAME_RE.match(agent.home_node):
        raise DefinitionError(f"agent {agent.agent_id}: home_node must match {NAME_RE.pattern}")
    iface = agent.state_interface
    # A device name: it goes to the home node's watch list and into Asterisk's device state lookups.
    # A comma would make the node's ARI subscription several event sources: it refuses such a name.
    if iface and (len(iface) > MAX_TEXT_LEN or not iface.isprintable() or any(c.isspace() or c == "," for c in iface)):
        raise DefinitionError(f"agent {agent.agent_id}: state_interface must be a device name like PJSIP/alice "
                              f"(at most {MAX_TEXT_LEN} characters, no spaces, commas or control characters)")
    if iface[:5].lower() == "hint:" and not stored:
        # app_queue resolves hint:EXT@CONTEXT itself (extension state); Asterisk's device state, which
        # the home node follows over ARI, has no such device and would say INVALID: never offered.
        raise DefinitionError(f"agent {agent.agent_id}: state_interface {iface[:80]!r} is app_queue's extension "
                              "hint form, which Asterisk's device state does not know; give the device the hint "
                              "points at, e.g. PJSIP/1001")
    if not agent.memberships:
        raise DefinitionError(f"agent {agent.agent_id}: an agent needs at least one queue membership")
    if len(agent.memberships) > MAX_ITEMS:
        raise DefinitionError(f"agent {agent.agent_id}: more than {MAX_ITEMS} queue memberships")
    for m in agent.memberships:
        if not NAME_RE.match(m.queue):
            raise DefinitionError(f"agent {agent.agent_id}: invalid queue name {m.queue[:70]!r}")
    if len(agent.skills) > MAX_ITEMS:
        raise DefinitionError(f"agent {agent.agent_id}: more than {MAX_ITEMS} skills")
    # etcd keeps skills as a mapping: of two values of one key the next leader would know one only.
    keys = [key for key, _ in agent.skills]
    if len(set(keys)) != len(keys):
        twice = sorted({k for k in keys if keys.count(k) > 1})
        raise DefinitionError(f"agent {agent.agent_id}: skill {clip(twice[0])} given more than once "
                              "(one value per skill)")
    for key, value in agent.skills:
        if (not NAME_RE.match(key) or not value or len(value) > MAX_SKILL_VALUE_LEN
                or not (stored or value.isprintable())):
            raise DefinitionError(f"agent {agent.agent_id}: invalid skill {key[:64]!r} (value 1..{MAX_SKILL_VALUE_LEN} "
                                  "characters, no control characters)")
    try:
        agent.validate()  # duplicate memberships, negative penalties, ...
    except ValueError as exc:
        raise DefinitionError(str(exc)) from exc
    return agent


def load_file(path: Path) -> tuple[dict[str, tuple[QueueConfig, str]], dict[str, tuple[AgentConfig, str]]]:
    """Parse the queues file: {name: (config, hash)} and {agent_id: (config, hash)}, each hash that of
    the entry's own text (see definition_hash)."""
    if path.stat().st_size > MAX_QUEUES_FILE_BYTES:
        raise DefinitionError(f"{path}: larger than {MAX_QUEUES_FILE_BYTES} bytes")
    doc = yaml.safe_load(path.read_text()) or {}
    if not isinstance(doc, dict):
        raise DefinitionError(f"{path}: top level must be a mapping with 'queues' (and optional 'agents')")
    raw_queues, raw_agents = doc.get("queues") or {}, doc.get("agents") or {}
    if not isinstance(raw_queues, dict) or not isinstance(raw_agents, dict):
        raise DefinitionError(f"{path}: 'queues' and 'agents' must be mappings by name")
    queues = {str(n): (queue_from_mapping(str(n), q or {}), definition_hash(q or {})) for n, q in raw_queues.items()}
    agents = {str(a): (agent_from_mapping(str(a), r or {}), definition_hash(r or {})) for a, r in raw_agents.items()}
    return queues, agents


# ---- protobuf --------------------------------------------------------------------------------
def queue_from_pb(q: admin_pb2.QueueDefinition) -> QueueConfig:
    """Convert an admin request's definition (zero values mean defaults); raises DefinitionError."""
    raw: dict[str, Any] = {}
    for name in ("strategy", "music_class", "announce_position", "announce_holdtime", "exit_context", "ewt_method"):
        if getattr(q, name):
            raw[name] = getattr(q, name)
    for name in ("wrapup_time", "max_wait", "announce_frequency", "periodic_announce_frequency", "retry",
                 "maxlen", "autopause_after", "weight", "ringinuse", "announce_position_only_up"):
        raw[name] = getattr(q, name)
    if q.HasField("ring_timeout"):
        raw["ring_timeout"] = q.ring_timeout
    if q.HasField("service_level"):
        raw["service_level"] = q.service_level
    if q.HasField("min_announce_frequency"):
        raw["min_announce_frequency"] = q.min_announce_frequency
    if q.HasField("announce_position_limit"):
        raw["announce_position_limit"] = q.announce_position_limit
    raw["joinempty"] = list(q.joinempty)
    raw["leavewhenempty"] = list(q.leavewhenempty)
    raw["periodic_announce"] = list(q.periodic_announce)
    raw["penalty_rules"] = [{"after_seconds": r.after_seconds, "max_penalty": r.max_penalty,
                             "min_penalty": r.min_penalty} for r in q.penalty_rules]
    return queue_from_mapping(q.name, raw)


def queue_to_pb(cfg: QueueConfig) -> admin_pb2.QueueDefinition:
    """The full definition of a queue as a protobuf message."""
    return admin_pb2.QueueDefinition(
        name=cfg.name, strategy=cfg.strategy.value, ring_timeout=cfg.ring_timeout, wrapup_time=cfg.wrapup_time,
        maxlen=cfg.maxlen, max_wait=cfg.max_wait, joinempty=sorted(cfg.joinempty),
        leavewhenempty=sorted(cfg.leavewhenempty), service_level=cfg.service_level, music_class=cfg.music_class,
        announce_frequency=cfg.announce_frequency, announce_position=cfg.announce_position,
        announce_holdtime=cfg.announce_holdtime, periodic_announce=list(cfg.periodic_announce),
        periodic_announce_frequency=cfg.periodic_announce_frequency, exit_context=cfg.exit_context,
        ringinuse=cfg.ringinuse, autopause_after=cfg.autopause_after, ewt_method=cfg.ewt_method,
        weight=cfg.weight, retry=cfg.retry, min_announce_frequency=cfg.min_announce_frequency,
        announce_position_limit=cfg.announce_position_limit, announce_position_only_up=cfg.announce_position_only_up,
        penalty_rules=[admin_pb2.PenaltyRule(after_seconds=r.after_seconds, max_penalty=r.max_penalty,
                                             min_penalty=r.min_penalty) for r in cfg.penalty_rules])


def agent_from_pb(req: admin_pb2.LoginRequest) -> AgentConfig:
    """Convert and validate a Login request; raises DefinitionError on bad input."""
    # Counts are checked before anything is copied out of the request.
    if len(req.queues) > MAX_ITEMS or len(req.skills) > MAX_ITEMS:
        raise DefinitionError(f"at most {MAX_ITEMS} queue memberships and {MAX_ITEMS} skills")
    return checked_agent(AgentConfig(
        agent_id=req.agent_id, endpoint=req.endpoint, home_node=req.home_node,
        memberships=tuple(Membership(m.queue, m.penalty, m.weight) for m in req.queues),
        skills=tuple((s.key, s.value) for s in req.skills), state_interface=req.state_interface))


def agent_json(agent: AgentConfig, paused: bool, reason: str) -> bytes:
    """JSON bytes of an agent's durable state (login, pause, skills, state interface) for etcd."""
    record: dict[str, Any] = {
        "agent_id": agent.agent_id, "endpoint": agent.endpoint, "home_node": agent.home_node,
        "queues": {m.queue: {"penalty": m.penalty, "weight": m.weight} for m in agent.memberships},
        "skills": dict(agent.skills), "paused": paused, "pause_reason": reason}
    if agent.state_interface:  # only when set: records of agents without one stay as they were
        record["state_interface"] = agent.state_interface
    return json.dumps(record, sort_keys=True).encode()


def agent_from_json(data: bytes) -> tuple[AgentConfig, bool, str]:
    """Inverse of agent_json: (config, paused, reason); raises DefinitionError for a bad record."""
    try:
        raw = json.loads(data)
        agent_id = str(raw["agent_id"])
    except (ValueError, TypeError, KeyError) as exc:  # not JSON, not a mapping, no agent_id
        raise DefinitionError(f"stored agent is not a JSON record with an agent_id: {exc!r}") from exc
    return (agent_from_mapping(agent_id, raw, stored=True), bool(raw.get("paused")),
            str(raw.get("pause_reason", "")))


def skills_pb(agent: AgentConfig) -> list[common_pb2.Skill]:
    """An agent's skills as protobuf values."""
    return [common_pb2.Skill(key=k, value=v) for k, v in agent.skills]

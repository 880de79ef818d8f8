"""Dialplan text for a test node: pure functions, no I/O.

extensions.conf with the contexts clusterq and its tests rely on; with app_queue (benchmarks) the
extra dialplan for its callers and agents, and queues.conf.
"""

from __future__ import annotations

from clusterq_testing.asterisk_node_config import AppQueueConfig

__all__ = ["app_queue_extensions", "extensions_conf", "queues_conf"]


def extensions_conf(stasis_app: str = "clusterq", test_app: str = "cqtest") -> str:
    """extensions.conf with the contexts clusterq and its tests rely on."""
    # ${IF(c?a:b)} is expanded inside-out: CQ_ARGS may hold commas (they become separate Stasis
    # args) but no ':' or '?' (IF would split on them).
    return f"""\
[general]
static = yes
writeprotect = yes

[clusterq-callers]
; Callers: Local/<queue>@clusterq-callers/n ; optional channel var CQ_ARGS overrides the Stasis args
; (e.g. "support,priority=5,timeout=30"); after clusterq gives the caller back, report and hang up.
exten => _[a-zA-Z0-9].,1,NoOp(clusterq caller for ${{EXTEN}})
 same => n,Stasis({stasis_app},${{IF($["${{CQ_ARGS}}" = ""]?${{EXTEN}}:${{CQ_ARGS}})}})
 same => n,UserEvent(ClusterqResult,status: ${{CLUSTERQ_STATUS}},wait: ${{CLUSTERQ_WAIT}},\
position: ${{CLUSTERQ_POSITION}})
 same => n,Hangup()

[clusterq-exit]
; exit-digit destination used by tests: EXITWITHKEY goes to <digit>@clusterq-exit
exten => _X,1,UserEvent(ClusterqExitKey,digit: ${{EXTEN}},status: ${{CLUSTERQ_STATUS}})
 same => n,Hangup()

[clusterq-from-node]
; legs arriving over a PJSIP trunk from another node (cross-node bridging)
exten => _[a-zA-Z0-9].,1,Stasis({stasis_app},inbound,${{EXTEN}})
 same => n,Hangup()

[clusterq-agents-test]
; test agent phones: Local/<agent>@clusterq-agents-test/n; the ;2 half enters the TESTS' observer app
exten => _[a-zA-Z0-9].,1,Stasis({test_app},agent,${{EXTEN}})
 same => n,Hangup()

[clusterq-agent-ops-test]
; agent feature codes: Local/s@clusterq-agent-ops-test/n with channel var CQ_ARGS holding the Stasis args
; (e.g. "agent-login,dora,queue=support"); clusterq sends the channel back unanswered: report and hang up.
exten => s,1,Stasis({stasis_app},${{CQ_ARGS}})
 same => n,UserEvent(ClusterqAgentOp,status: ${{CLUSTERQ_AGENT_STATUS}},message: ${{CLUSTERQ_MESSAGE}})
 same => n,Hangup()

[clusterq-agents-auto]
; demo agents for `make run`: ring 1 s, answer, talk a few seconds, hang up
exten => _[a-zA-Z0-9].,1,Ringing()
 same => n,Wait(1)
 same => n,Answer()
 same => n,Wait(${{RAND(3,6)}})
 same => n,Hangup()

[clusterq-hold]
exten => s,1,Wait(86400)
"""


def app_queue_extensions() -> str:
    """Dialplan added with app_queue: callers into Queue(), and agent phones for benchmarks."""
    # Agent talk time is random in [MIN_MS, MAX_MS] so agents do not all free up at the same instant;
    # the globals can be changed at run time (ARI POST /asterisk/variable).
    return """\
[globals]
CQ_AGENT_RING = 0
CQ_AGENT_TALK_MIN_MS = 500
CQ_AGENT_TALK_MAX_MS = 1500

[clusterq-appqueue-callers]
; Callers for Asterisk's own app_queue: Local/<queue>@clusterq-appqueue-callers/n (answered first,
; like clusterq answers its callers); option c: back here when the agent hangs up (like clusterq).
exten => _[a-zA-Z0-9].,1,Answer()
 same => n,Queue(${EXTEN},c)
 same => n,UserEvent(AppQueueResult,status: ${QUEUESTATUS})
 same => n,Hangup()

[clusterq-agents-bench]
; Agent phones without a test app (clusterq endpoints and app_queue members alike):
; Local/<agent>@clusterq-agents-bench/n rings CQ_AGENT_RING s, answers, talks, hangs up.
exten => _[a-zA-Z0-9].,1,Wait(${CQ_AGENT_RING})
 same => n,Answer()
 same => n,Wait($[${RAND(${CQ_AGENT_TALK_MIN_MS},${CQ_AGENT_TALK_MAX_MS})} / 1000])
 same => n,Hangup()
"""


def queues_conf(aq: AppQueueConfig) -> str:
    """queues.conf for app_queue (it declines to load without the file)."""
    parts = ["[general]", *(f"{k} = {v}" for k, v in aq.general)]
    for q in aq.queues:
        parts += ["", f"[{q.name}]", *(f"{k} = {v}" for k, v in q.settings), *(f"member => {m}" for m in q.members)]
    return "\n".join(parts) + "\n"

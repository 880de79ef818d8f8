"""extensions.conf of a test node: the contexts clusterq and its tests rely on."""

from __future__ import annotations

from clusterq_testing.asterisk_conf_dialplan import extensions_conf
from tests.unit.clusterq_testing.helpers import sections


def test_dialplan_contexts_and_app_names() -> None:
    text = extensions_conf("myq", "mytest")
    assert sections(text) == ["general", "clusterq-callers", "clusterq-exit", "clusterq-from-node",
                              "clusterq-agents-test", "clusterq-agent-ops-test", "clusterq-agents-auto",
                              "clusterq-hold"]
    assert 'Stasis(myq,${IF($["${CQ_ARGS}" = ""]?${EXTEN}:${CQ_ARGS})})' in text
    assert "Stasis(myq,inbound,${EXTEN})" in text
    assert "exten => s,1,Stasis(myq,${CQ_ARGS})" in text
    assert "UserEvent(ClusterqAgentOp,status: ${CLUSTERQ_AGENT_STATUS},message: ${CLUSTERQ_MESSAGE})" in text
    assert "Stasis(mytest,agent,${EXTEN})" in text
    assert "UserEvent(ClusterqResult,status: ${CLUSTERQ_STATUS},wait: ${CLUSTERQ_WAIT}," \
           "position: ${CLUSTERQ_POSITION})" in text
    assert "UserEvent(ClusterqExitKey,digit: ${EXTEN},status: ${CLUSTERQ_STATUS})" in text
    assert "Wait(${RAND(3,6)})" in text
    assert "Stasis(clusterq" not in text and "Stasis(cqtest" not in text  # app names substituted

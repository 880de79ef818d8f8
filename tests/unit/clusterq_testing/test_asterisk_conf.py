"""Config text generation for test Asterisk nodes (pure functions)."""

from __future__ import annotations

import re

import pytest

from clusterq_testing.asterisk_conf import (
    MODULES,
    REQUIRED_MODULES,
    NodeConfig,
    PhoneAccount,
    PhoneRegistration,
    TrunkPeer,
    extensions_conf,
    modules_conf,
    render_config,
)


def _cfg(**overrides: object) -> NodeConfig:
    base: dict[str, object] = dict(
        name="a", instance_dir="/srv/clusterq/run1/a",
        module_dir="/usr/lib/x86_64-linux-gnu/asterisk/modules",
        http_port=18088, sip_port=5061, rtp_start=20200, rtp_end=20599, ari_user="clusterq",
        ari_password="s3cret-pw", peers=(TrunkPeer("b", 5062), TrunkPeer("c", 5063)),
    )
    base.update(overrides)
    return NodeConfig(**base)  # type: ignore[arg-type]


def _files(cfg: NodeConfig) -> dict[str, str]:
    return {f.name: f.text for f in render_config(cfg)}


def _sections(text: str) -> list[str]:
    return re.findall(r"^\[([^\]]+)\]", text, flags=re.MULTILINE)


def test_directories_section_is_not_a_template() -> None:
    text = _files(_cfg())["asterisk.conf"]
    assert "[directories]\n" in text and "[directories](!)" not in text
    assert "astetcdir => /srv/clusterq/run1/a/etc" in text
    assert "astrundir => /srv/clusterq/run1/a/run" in text
    assert "astmoddir => /usr/lib/x86_64-linux-gnu/asterisk/modules" in text
    assert "systemname = a" in text


def test_module_list_is_explicit_and_complete() -> None:
    text = modules_conf()
    assert "autoload = no" in text
    for module in ("res_websocket_client.so", "chan_bridge_media.so", "app_userevent.so", "func_rand.so",
                   "func_logic.so", "res_pjsip_registrar.so", "res_pjsip_outbound_registration.so",
                   "app_senddtmf.so", "res_ari.so", "app_stasis.so"):
        assert module in MODULES
        assert re.search(rf"^(load|require) = {re.escape(module)}$", text, flags=re.MULTILINE)
    assert "app_queue.so" not in text
    assert len(set(MODULES)) == len(MODULES)
    assert REQUIRED_MODULES <= set(MODULES)
    assert "require = res_ari.so" in text and "load = func_rand.so" in text


def test_ports_and_password_land_in_their_files() -> None:
    files = _files(_cfg())
    assert "bindaddr = 127.0.0.1" in files["http.conf"] and "bindport = 18088" in files["http.conf"]
    assert "rtpstart = 20200" in files["rtp.conf"] and "rtpend = 20599" in files["rtp.conf"]
    assert "bind = 127.0.0.1:5061" in files["pjsip.conf"]
    assert "[clusterq]" in files["ari.conf"] and "password = s3cret-pw" in files["ari.conf"]
    assert "enabled = no" in files["manager.conf"]
    leaking = [name for name, text in files.items() if "s3cret-pw" in text and name != "ari.conf"]
    assert leaking == []
    assert "s3cret-pw" not in repr(_cfg())


def test_full_mesh_trunks_identify_by_from_user_and_keep_caller_id() -> None:
    pjsip = _files(_cfg())["pjsip.conf"]
    assert _sections(pjsip).count("b") == 2 and _sections(pjsip).count("c") == 2  # endpoint + aor
    assert "contact = sip:127.0.0.1:5062" in pjsip and "contact = sip:127.0.0.1:5063" in pjsip
    for option in ("from_user = a", "send_pai = yes", "trust_id_inbound = yes",
                   "context = clusterq-from-node",
                   "media_address = 127.0.0.1", "bind_rtp_to_media_address = yes", "allow = ulaw"):
        assert option in pjsip
    assert "taskprocessor_overload_trigger = pjsip_only" in pjsip
    assert "endpoint_identifier_order = username,ip" in pjsip


def test_phones_and_registrations() -> None:
    cfg = _cfg(phones=(PhoneAccount("agent7", "phone-pw"),),
               registrations=(PhoneRegistration("agent9", "reg-pw", "z", 5099),))
    pjsip = _files(cfg)["pjsip.conf"]
    assert _sections(pjsip).count("agent7") == 3  # endpoint, auth, aor
    assert "max_contacts = 1" in pjsip and "password = phone-pw" in pjsip
    assert "[reg-agent9]" in pjsip and "client_uri = sip:agent9@127.0.0.1:5099" in pjsip
    assert "line = yes" in pjsip and "endpoint = registrar-z" in pjsip
    assert "[registrar-z]" in pjsip and "context = clusterq-agents-test" in pjsip
    assert "phone-pw" not in repr(cfg) and "reg-pw" not in repr(cfg)


def test_dialplan_contexts_and_app_names() -> None:
    text = extensions_conf("myq", "mytest")
    assert _sections(text) == ["general", "clusterq-callers", "clusterq-exit", "clusterq-from-node",
                               "clusterq-agents-test", "clusterq-agents-auto", "clusterq-hold"]
    assert 'Stasis(myq,${IF($["${CQ_ARGS}" = ""]?${EXTEN}:${CQ_ARGS})})' in text
    assert "Stasis(myq,inbound,${EXTEN})" in text
    assert "Stasis(mytest,agent,${EXTEN})" in text
    assert "UserEvent(ClusterqResult,status: ${CLUSTERQ_STATUS},wait: ${CLUSTERQ_WAIT}," \
           "position: ${CLUSTERQ_POSITION})" in text
    assert "UserEvent(ClusterqExitKey,digit: ${EXTEN},status: ${CLUSTERQ_STATUS})" in text
    assert "Wait(${RAND(3,6)})" in text
    assert "Stasis(clusterq" not in text and "Stasis(cqtest" not in text  # app names substituted


@pytest.mark.parametrize("overrides", [
    {"name": "bad name"},
    {"peers": (TrunkPeer("a", 5062),)},  # a peer named like the node itself
    {"phones": (PhoneAccount("b", "x"),)},  # a phone named like a peer
    {"rtp_start": 30000, "rtp_end": 20000},
    {"stasis_app": "no,commas"},
])
def test_invalid_configs_are_rejected(overrides: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        _cfg(**overrides)

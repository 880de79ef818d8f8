"""pjsip.conf of a test node: trunks, hosted phones, registrations as a phone elsewhere."""

from __future__ import annotations

from clusterq_testing.asterisk_conf_pjsip import pjsip_conf
from clusterq_testing.asterisk_node_config import PhoneAccount, PhoneRegistration
from tests.unit.clusterq_testing.helpers import node_config, sections


def test_full_mesh_trunks_identify_by_from_user_and_keep_caller_id() -> None:
    pjsip = pjsip_conf(node_config())
    assert sections(pjsip).count("b") == 2 and sections(pjsip).count("c") == 2  # endpoint + aor
    assert "contact = sip:127.0.0.1:5062" in pjsip and "contact = sip:127.0.0.1:5063" in pjsip
    for option in ("from_user = a", "send_pai = yes", "trust_id_inbound = yes",
                   "context = clusterq-from-node",
                   "media_address = 127.0.0.1", "bind_rtp_to_media_address = yes", "allow = ulaw"):
        assert option in pjsip
    assert "taskprocessor_overload_trigger = pjsip_only" in pjsip
    assert "endpoint_identifier_order = username,ip" in pjsip


def test_phones_and_registrations() -> None:
    cfg = node_config(phones=(PhoneAccount("agent7", "phone-pw"),),
                      registrations=(PhoneRegistration("agent9", "reg-pw", "z", 5099),))
    pjsip = pjsip_conf(cfg)
    assert sections(pjsip).count("agent7") == 3  # endpoint, auth, aor
    assert "max_contacts = 1" in pjsip and "password = phone-pw" in pjsip
    assert "[reg-agent9]" in pjsip and "client_uri = sip:agent9@127.0.0.1:5099" in pjsip
    assert "line = yes" in pjsip and "endpoint = registrar-z" in pjsip
    assert "[registrar-z]" in pjsip and "context = clusterq-agents-test" in pjsip
    assert "phone-pw" not in repr(cfg) and "reg-pw" not in repr(cfg)

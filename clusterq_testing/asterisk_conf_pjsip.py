"""pjsip.conf for a test node: pure functions, no I/O.

One UDP transport, a trunk to every peer node, phone endpoints hosted here, and registrations of
this node as a phone at another node.  Phone and registration passwords are written here (and the
ARI password to ari.conf) and nowhere else.
"""

from __future__ import annotations

from clusterq_testing.asterisk_node_config import NodeConfig

__all__ = ["pjsip_conf"]


def _media_options(bind: str) -> str:
    # RTP stays on loopback and inside this node's rtp.conf range; ulaw only (no transcoding).
    return f"""\
disallow = all
allow = ulaw
direct_media = no
media_address = {bind}
bind_rtp_to_media_address = yes
rtp_symmetric = yes
"""


def pjsip_conf(cfg: NodeConfig) -> str:
    """pjsip.conf: UDP transport, full-mesh trunks, hosted phones, outbound phone registrations."""
    parts = [
        f"""\
[global]
type = global
user_agent = clusterq-test-{cfg.name}
; username: nodes identify each other by From user, so any number of nodes can share 127.0.0.1.
; (The unnamed "line" identifier of outbound registrations is always tried first: requests to a
; contact we registered carry ;line= and map to that registration's endpoint.)
endpoint_identifier_order = username,ip
; default "global": ANY overloaded taskprocessor (e.g. an ARI event burst) makes PJSIP reject calls
taskprocessor_overload_trigger = pjsip_only

[transport-udp]
type = transport
protocol = udp
bind = {cfg.bind}:{cfg.sip_port}
"""
    ]
    for peer in cfg.peers:
        parts.append(f"""\
; trunk to node {peer.name}; it identifies us by the From user (= {cfg.name})
[{peer.name}]
type = endpoint
transport = transport-udp
context = clusterq-from-node
aors = {peer.name}
from_user = {cfg.name}
{_media_options(cfg.bind)}\
trust_id_inbound = yes
trust_id_outbound = yes
; from_user replaces the caller number in From:, P-Asserted-Identity carries the real one
send_pai = yes

[{peer.name}]
type = aor
contact = sip:{cfg.bind}:{peer.sip_port}
""")
    for phone in cfg.phones:
        parts.append(f"""\
; phone {phone.name}: a SIP UA registers here (one contact); calls from it enter the queue dialplan
[{phone.name}]
type = endpoint
transport = transport-udp
context = clusterq-callers
aors = {phone.name}
auth = {phone.name}
{_media_options(cfg.bind)}\
send_pai = yes
trust_id_outbound = yes

[{phone.name}]
type = auth
auth_type = userpass
username = {phone.name}
password = {phone.password}

[{phone.name}]
type = aor
max_contacts = 1
remove_existing = yes
""")
    servers = sorted({(r.server, r.server_sip_port) for r in cfg.registrations})
    for server, _port in servers:
        parts.append(f"""\
; calls from node {server} to phones we registered there (matched by the contact's ;line=)
[registrar-{server}]
type = endpoint
transport = transport-udp
context = clusterq-agents-test
{_media_options(cfg.bind)}\
trust_id_inbound = yes
""")
    for reg in cfg.registrations:
        uri = f"{cfg.bind}:{reg.server_sip_port}"
        parts.append(f"""\
; register as phone {reg.phone} at node {reg.server}
[reg-{reg.phone}]
type = registration
transport = transport-udp
outbound_auth = reg-{reg.phone}
server_uri = sip:{uri}
client_uri = sip:{reg.phone}@{uri}
contact_user = {reg.phone}
line = yes
endpoint = registrar-{reg.server}
expiration = 300
; the server may start after us: retry fast and forever
retry_interval = 1
forbidden_retry_interval = 1
max_retries = 1000000
auth_rejection_permanent = no

[reg-{reg.phone}]
type = auth
auth_type = userpass
username = {reg.phone}
password = {reg.password}
""")
    return "\n".join(parts)

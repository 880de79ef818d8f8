"""Config text for one test Asterisk 22 node: pure functions, no I/O.

`render_config(NodeConfig) -> tuple[ConfigFile, ...]` gives every file of the node's etc directory.
Reasons behind the less obvious settings are in /work/shared/asterisk/README.md ("Pitfalls"); the
important ones are repeated next to the setting.  Passwords are written to ari.conf / pjsip.conf only
(files readable by root); they are excluded from every repr.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

__all__ = [
    "APP_QUEUE_MODULES",
    "MODULES",
    "REQUIRED_MODULES",
    "AppQueue",
    "AppQueueConfig",
    "ConfigFile",
    "NodeConfig",
    "PhoneAccount",
    "PhoneRegistration",
    "TrunkPeer",
    "app_queue_extensions",
    "ari_conf",
    "asterisk_conf",
    "extensions_conf",
    "http_conf",
    "modules_conf",
    "pjsip_conf",
    "queues_conf",
    "render_config",
    "rtp_conf",
    "valid_name",
]

_NAME_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_-]*$")

# Explicit module list (autoload=no): deterministic, starts in < 1 s, no warnings, and nothing listens
# except HTTP/ARI and PJSIP/RTP on 127.0.0.1.
MODULES: tuple[str, ...] = (
    # timing (MOH, playback, bridges)
    "res_timing_timerfd.so",
    # sorcery (pjsip config)
    "res_sorcery_config.so", "res_sorcery_memory.so", "res_sorcery_astdb.so",
    # dialplan
    "pbx_config.so", "func_channel.so", "func_strings.so", "func_callerid.so", "func_logic.so", "func_dialplan.so",
    "func_global.so", "func_uuid.so", "func_rand.so", "app_dial.so", "app_playback.so", "app_echo.so",
    "app_stasis.so", "app_userevent.so", "app_senddtmf.so", "app_milliwatt.so", "app_stack.so",
    # formats + codecs (sounds/moh are gsm, trunks ulaw, Local channels ulaw when asked)
    "format_gsm.so", "format_wav.so", "format_wav_gsm.so", "format_pcm.so", "format_sln.so",
    "codec_ulaw.so", "codec_alaw.so", "codec_a_mu.so", "codec_gsm.so", "codec_resample.so",
    # bridging
    "bridge_simple.so", "bridge_softmix.so", "bridge_holding.so", "bridge_native_rtp.so",
    "bridge_builtin_features.so",
    # 'Announcer'/'Recorder' channels: without it bridge MOH/playback via ARI answers 500
    "chan_bridge_media.so", "res_musiconhold.so",
    # HTTP + ARI + Stasis
    "res_http_websocket.so",
    # res_ari needs res_websocket_client since 22.x, else every res_ari_* fails to load
    "res_websocket_client.so", "res_stasis.so", "res_stasis_answer.so", "res_stasis_playback.so",
    "res_stasis_recording.so", "res_stasis_snoop.so", "res_stasis_device_state.so", "res_ari.so",
    "res_ari_model.so", "res_ari_applications.so", "res_ari_asterisk.so", "res_ari_bridges.so",
    "res_ari_channels.so", "res_ari_device_states.so", "res_ari_endpoints.so", "res_ari_events.so",
    "res_ari_playbacks.so", "res_ari_recordings.so", "res_ari_sounds.so",
    # PJSIP: trunks between nodes, phones registering to a node, a node registering as a phone
    "res_pjproject.so", "res_rtp_asterisk.so", "res_pjsip.so", "res_pjsip_session.so",
    "res_pjsip_pubsub.so", "chan_pjsip.so", "res_pjsip_sdp_rtp.so", "res_pjsip_endpoint_identifier_user.so",
    "res_pjsip_endpoint_identifier_ip.so", "res_pjsip_authenticator_digest.so",
    "res_pjsip_outbound_authenticator_digest.so", "res_pjsip_registrar.so",
    "res_pjsip_outbound_registration.so", "res_pjsip_caller_id.so", "res_pjsip_header_funcs.so",
    "res_pjsip_rfc3326.so", "res_pjsip_dtmf_info.so", "res_pjsip_logger.so", "func_pjsip_endpoint.so",
)

# Loaded with "require": if one fails Asterisk exits at once (a clear start error with the reason in
# the log) instead of running without ARI/SIP and failing tests in confusing ways later.
REQUIRED_MODULES: frozenset[str] = frozenset({
    "pbx_config.so", "app_stasis.so", "res_stasis.so", "res_http_websocket.so", "res_ari.so",
    "res_ari_channels.so", "res_ari_bridges.so", "res_ari_events.so", "res_pjsip.so",
    "res_pjsip_session.so", "chan_pjsip.so",
})

# Only with NodeConfig.app_queue (Asterisk's own queue, for benchmarks against clusterq). Loaded after
# pbx_config and the channel drivers above, as queues.conf.sample asks for Local-channel members.
APP_QUEUE_MODULES: tuple[str, ...] = ("app_queue.so",)

# Config files the core or a module reads at start; empty ones silence "Unable to open" noise.
_EMPTY_FILES: tuple[str, ...] = (
    "stasis.conf",
    "websocket_client.conf",
    "features.conf",
    "ccss.conf",
    "udptl.conf",
    "acl.conf",
    "sorcery.conf",
    "pjproject.conf",
    "res_stun_monitor.conf",
)


def valid_name(name: str) -> bool:
    """True for names usable as node, endpoint and section names (letters, digits, '_', '-')."""
    return bool(_NAME_RE.match(name))


@dataclass(frozen=True)
class TrunkPeer:
    """Another node reachable over a PJSIP trunk (endpoint and aor named after it)."""

    name: str
    sip_port: int


@dataclass(frozen=True)
class PhoneAccount:
    """A plain PJSIP phone endpoint hosted by a node: a real SIP UA may REGISTER as it."""

    name: str
    password: str = field(repr=False)


@dataclass(frozen=True)
class PhoneRegistration:
    """This node registers as `phone` at node `server` (it then plays that phone: calls to the
    phone arrive here in [clusterq-agents-test] with the phone name as extension)."""

    phone: str
    password: str = field(repr=False)
    server: str
    server_sip_port: int


@dataclass(frozen=True)
class ConfigFile:
    """One file of a node's etc directory."""

    name: str
    text: str


@dataclass(frozen=True)
class AppQueue:
    """One app_queue queue: queues.conf settings (app_queue's own names, in order) and member lines
    ("interface,penalty,name,state_interface,ringinuse,wrapuptime,paused")."""

    name: str
    settings: tuple[tuple[str, str], ...] = ()
    members: tuple[str, ...] = ()


@dataclass(frozen=True)
class AppQueueConfig:
    """app_queue on a node: the [general] settings of queues.conf and its queues."""

    queues: tuple[AppQueue, ...] = ()
    general: tuple[tuple[str, str], ...] = (("persistentmembers", "no"), ("autofill", "yes"))


@dataclass(frozen=True)
class NodeConfig:
    """Everything that decides one node's configuration."""

    name: str
    instance_dir: str  # path INSIDE the chroot
    module_dir: str  # path INSIDE the chroot
    http_port: int
    sip_port: int
    rtp_start: int
    rtp_end: int
    ari_user: str
    ari_password: str = field(repr=False)
    entity_id: str = "02:00:00:00:00:01"
    stasis_app: str = "clusterq"
    test_app: str = "cqtest"
    peers: tuple[TrunkPeer, ...] = ()
    phones: tuple[PhoneAccount, ...] = ()
    registrations: tuple[PhoneRegistration, ...] = ()
    bind: str = "127.0.0.1"
    app_queue: AppQueueConfig | None = None  # None: app_queue is not even loaded

    def __post_init__(self) -> None:
        names = [self.name, *(p.name for p in self.peers), *(p.name for p in self.phones)]
        queues = [q.name for q in self.app_queue.queues] if self.app_queue else []
        for n in [*names, self.stasis_app, self.test_app, *(r.phone for r in self.registrations), *queues]:
            if not valid_name(n):
                raise ValueError(f"bad name {n!r} (letters, digits, '_' and '-' only)")
        # pjsip.conf sections share one namespace per type: a phone named like a peer would clash.
        if len(set(names)) != len(names):
            raise ValueError(f"node, peer and phone names must be distinct: {names}")
        if not 0 < self.rtp_start < self.rtp_end < 65536:
            raise ValueError(f"bad RTP range {self.rtp_start}-{self.rtp_end}")


def asterisk_conf(cfg: NodeConfig) -> str:
    """asterisk.conf: per-node directories inside the chroot, systemname and entity id."""
    d = cfg.instance_dir
    return f"""\
; clusterq test node {cfg.name}
; no "(!)" after [directories]: with it the section is a template and silently ignored
[directories]
astcachedir => {d}/cache
astetcdir => {d}/etc
astmoddir => {cfg.module_dir}
astvarlibdir => /var/lib/asterisk
astdbdir => {d}/lib
astkeydir => /var/lib/asterisk
astdatadir => /usr/share/asterisk
astagidir => /usr/share/asterisk/agi-bin
astspooldir => {d}/spool
astrundir => {d}/run
astlogdir => {d}/log
astsbindir => /usr/sbin

[options]
; systemname prefixes channel ids ("{cfg.name}-1700000000.12"): unique across nodes
systemname = {cfg.name}
; no usable NIC MAC in a test box: a stable, unique entity id per node
entityid = {cfg.entity_id}
maxfiles = 65536
documentation_language = en_US
transmit_silence = no
hideconnect = yes
"""


def modules_conf(modules: tuple[str, ...] = MODULES) -> str:
    """modules.conf: autoload=no plus the explicit list."""
    lines = ["[modules]", "autoload = no",
             *(f"{'require' if m in REQUIRED_MODULES else 'load'} = {m}" for m in modules)]
    return "\n".join(lines) + "\n"


def logger_conf() -> str:
    """logger.conf: messages.log gets verbose lines too (their amount follows -v)."""
    return """\
[general]
dateformat = %F %T.%3q
[logfiles]
messages.log => notice,warning,error,verbose
console => notice,warning,error
"""


def http_conf(bind: str, http_port: int) -> str:
    """http.conf: ARI on bind:http_port only."""
    return f"""\
[general]
enabled = yes
bindaddr = {bind}
bindport = {http_port}
enablestatic = no
; default of 100 concurrent HTTP sessions is low for load tests
sessionlimit = 2000
session_keep_alive = 15000
"""


def ari_conf(ari_user: str, ari_password: str) -> str:
    """ari.conf with one read-write user."""
    return f"""\
[general]
enabled = yes
pretty = no
; default 100 ms: a busy test process could get its websocket closed
websocket_write_timeout = 2000

[{ari_user}]
type = user
read_only = no
password = {ari_password}
password_format = plain
"""


def rtp_conf(rtp_start: int, rtp_end: int) -> str:
    """rtp.conf: this node's own RTP port range (nodes share 127.0.0.1)."""
    return f"""\
[general]
rtpstart = {rtp_start}
rtpend = {rtp_end}
icesupport = no
"""


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


def render_config(cfg: NodeConfig) -> tuple[ConfigFile, ...]:
    """Every file of the node's etc directory."""
    files = [
        ConfigFile("asterisk.conf", asterisk_conf(cfg)),
        ConfigFile("modules.conf", modules_conf(MODULES + (APP_QUEUE_MODULES if cfg.app_queue else ()))),
        ConfigFile("logger.conf", logger_conf()),
        ConfigFile("http.conf", http_conf(cfg.bind, cfg.http_port)),
        ConfigFile("ari.conf", ari_conf(cfg.ari_user, cfg.ari_password)),
        ConfigFile("rtp.conf", rtp_conf(cfg.rtp_start, cfg.rtp_end)),
        ConfigFile("extensions.conf", extensions_conf(cfg.stasis_app, cfg.test_app)
                   + ("\n" + app_queue_extensions() if cfg.app_queue else "")),
        ConfigFile("pjsip.conf", pjsip_conf(cfg)),
        ConfigFile("musiconhold.conf", "[general]\n[default]\nmode = files\ndirectory = moh\nsort = alpha\n"),
        ConfigFile("cdr.conf", "[general]\nenable = no\n"),
        ConfigFile("cel.conf", "[general]\nenable = no\n"),
        # AMI is core (not a module): keep it explicitly off, nothing but ARI and SIP may listen
        ConfigFile("manager.conf", "[general]\nenabled = no\n"),
    ]
    files.extend(ConfigFile(name, "") for name in _EMPTY_FILES)
    if cfg.app_queue is not None:
        files += [ConfigFile("queues.conf", queues_conf(cfg.app_queue)), ConfigFile("queuerules.conf", "")]
    return tuple(files)

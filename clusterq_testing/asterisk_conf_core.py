"""Config text for a test node's core and listeners: pure functions, no I/O.

asterisk.conf (directories inside the chroot, systemname), modules.conf (the explicit module list),
logger.conf, http.conf and ari.conf (HTTP with ARI, the only TCP listener), rtp.conf (the node's own
RTP range).
"""

from __future__ import annotations

from clusterq_testing.asterisk_node_config import NodeConfig

__all__ = [
    "APP_QUEUE_MODULES",
    "MODULES",
    "REQUIRED_MODULES",
    "ari_conf",
    "asterisk_conf",
    "http_conf",
    "logger_conf",
    "modules_conf",
    "rtp_conf",
]

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

"""TLS for the coordinator's gRPC API: settings read once from files, turned into grpc credentials.

The coordinator (server side) and its clients (the stasis app's node stream, the `clusterq` CLI,
AdminClient) all build their credentials here, so every side reads the same PEM files the same way.

- Files are read when the settings are made (start-up), never again: a rotated certificate needs a
  restart. Each file is checked then (PEM markers; a certificate and key pair must match, checked by
  Python's ssl module), so a wrong configuration stops the program with a message that names the
  variable, never later at the first connection.
- Private keys are never logged: the dataclasses leave them out of repr, and no error message
  quotes a file's content (only variable names and paths).
- Not covered: certificate revocation and reloading; the client checks the server's certificate
  against the configured CA only (no system roots), which is what a cluster-internal CA needs.
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc

from clusterq_common.files import read_named

__all__ = [
    "ClientTls", "ServerTls", "TlsConfigError", "client_tls_from_env", "client_tls_from_files", "open_channel",
    "server_tls_from_env", "server_tls_from_files",
]

# Server side (the coordinator).
SERVER_CERT_VAR = "CLUSTERQ_TLS_CERT_FILE"
SERVER_KEY_VAR = "CLUSTERQ_TLS_KEY_FILE"
SERVER_CLIENT_CA_VAR = "CLUSTERQ_TLS_CLIENT_CA_FILE"
# Client side (stasis app, CLI): the coordinator's CA turns TLS on; cert + key add a client certificate.
CLIENT_CA_VAR = "CLUSTERQ_COORDINATOR_CA_FILE"
CLIENT_CERT_VAR = "CLUSTERQ_COORDINATOR_CERT_FILE"
CLIENT_KEY_VAR = "CLUSTERQ_COORDINATOR_KEY_FILE"
CLIENT_NAME_VAR = "CLUSTERQ_COORDINATOR_TLS_NAME"
CLIENT_VARS = (CLIENT_CA_VAR, CLIENT_CERT_VAR, CLIENT_KEY_VAR, CLIENT_NAME_VAR)
"""What client_tls_from_files's messages call its four settings by default."""

_CERT_MARK = b"-----BEGIN CERTIFICATE-----"
_KEY_MARK = b"PRIVATE KEY-----"
_ENCRYPTED_MARK = b"ENCRYPTED"  # "BEGIN ENCRYPTED PRIVATE KEY" or a legacy "Proc-Type: 4,ENCRYPTED"


class TlsConfigError(ValueError):
    """The TLS settings are incomplete or a file is unusable; the message names the variable."""


@dataclass(frozen=True)
class ServerTls:
    """The coordinator's certificate chain and key (PEM), and the CA its clients' certificates must
    be signed by (mutual TLS) or None (any client may connect, as long as it speaks TLS)."""

    cert_chain: bytes = field(repr=False)
    private_key: bytes = field(repr=False)
    client_ca: bytes | None = field(default=None, repr=False)

    @property
    def mutual(self) -> bool:
        """Whether clients must present a certificate signed by client_ca."""
        return self.client_ca is not None

    def credentials(self) -> grpc.ServerCredentials:
        """grpc server credentials for add_secure_port."""
        return grpc.ssl_server_credentials([(self.private_key, self.cert_chain)], root_certificates=self.client_ca,
                                           require_client_auth=self.client_ca is not None)


@dataclass(frozen=True)
class ClientTls:
    """What a client trusts (the coordinator's CA, PEM), its own certificate and key for mutual TLS
    (both or neither), and the name to verify the coordinator's certificate against ("" = the host
    of the address dialled). The name matters because followers send clients to the leader's
    advertised address, often a pod IP that no certificate names."""

    ca: bytes = field(repr=False)
    cert_chain: bytes | None = field(default=None, repr=False)
    private_key: bytes | None = field(default=None, repr=False)
    target_name: str = ""

    def __post_init__(self) -> None:
        if (self.cert_chain is None) != (self.private_key is None):
            raise TlsConfigError("a client certificate needs its key and a key its certificate")

    @property
    def mutual(self) -> bool:
        """Whether this client presents a certificate."""
        return self.cert_chain is not None

    def credentials(self) -> grpc.ChannelCredentials:
        """grpc channel credentials for secure_channel."""
        return grpc.ssl_channel_credentials(root_certificates=self.ca, private_key=self.private_key,
                                            certificate_chain=self.cert_chain)

    def channel_options(self) -> list[tuple[str, Any]]:
        """Channel options that go with the credentials (the name override, if any)."""
        return [("grpc.ssl_target_name_override", self.target_name)] if self.target_name else []


def open_channel(address: str, tls: ClientTls | None, options: Sequence[tuple[str, Any]] = ()) -> grpc.aio.Channel:
    """A grpc.aio channel to address: plaintext when tls is None, else TLS with tls's credentials."""
    if tls is None:
        return grpc.aio.insecure_channel(address, options=list(options))
    return grpc.aio.secure_channel(address, tls.credentials(), options=[*options, *tls.channel_options()])


def _read(path: Path, var: str, mark: bytes, what: str) -> bytes:
    """The file's bytes; TlsConfigError naming var if it cannot be read or holds no `what`."""
    data = read_named(var, path, TlsConfigError)
    if mark not in data:
        # Never quote the content: it may be a key.
        raise TlsConfigError(f"{var}={path}: not a PEM {what}")
    return data


def _read_pair(cert: Path, key: Path, cert_var: str, key_var: str) -> tuple[bytes, bytes]:
    """A certificate (chain) and its key, read once; refused if the key does not belong to the
    certificate (grpc would only fail at the handshake) or is encrypted."""
    chain = _read(cert, cert_var, _CERT_MARK, "certificate")
    private = _read(key, key_var, _KEY_MARK, "private key")
    if _ENCRYPTED_MARK in private:
        raise TlsConfigError(f"{key_var}={key}: the key is encrypted (passphrase): grpc needs an unencrypted key")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    try:
        # A password callback that refuses: OpenSSL must never prompt on a terminal for a passphrase.
        ctx.load_cert_chain(cert, key, password=_no_passphrase)
    except (ssl.SSLError, OSError, TlsConfigError) as exc:
        reason = exc.reason if isinstance(exc, ssl.SSLError) else exc
        raise TlsConfigError(f"{key_var}={key} is not the key of {cert_var}={cert} "
                             f"(or one of them is damaged or encrypted): {reason}") from None
    return chain, private


def _no_passphrase() -> str:
    raise TlsConfigError("the key asks for a passphrase")


def _check_ca(path: Path, var: str) -> None:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    try:
        ctx.load_verify_locations(cafile=path)
    except ssl.SSLError as exc:
        raise TlsConfigError(f"{var}={path}: not a usable CA certificate: {exc.reason or exc}") from None


def server_tls_from_files(cert: Path | None, key: Path | None, client_ca: Path | None) -> ServerTls | None:
    """ServerTls from file paths (None = that setting absent); None when TLS is off (no cert and key)."""
    if cert is None and key is None:
        if client_ca is not None:
            raise TlsConfigError(f"{SERVER_CLIENT_CA_VAR} (mutual TLS) needs {SERVER_CERT_VAR} and {SERVER_KEY_VAR}")
        return None
    if cert is None or key is None:
        raise TlsConfigError(f"{SERVER_CERT_VAR} and {SERVER_KEY_VAR} go together: set both or neither")
    chain, private = _read_pair(cert, key, SERVER_CERT_VAR, SERVER_KEY_VAR)
    ca = None
    if client_ca is not None:
        ca = _read(client_ca, SERVER_CLIENT_CA_VAR, _CERT_MARK, "certificate")
        _check_ca(client_ca, SERVER_CLIENT_CA_VAR)
    return ServerTls(chain, private, ca)


def client_tls_from_files(ca: Path | None, cert: Path | None, key: Path | None, target_name: str = "", *,
                          names: tuple[str, str, str, str] = CLIENT_VARS) -> ClientTls | None:
    """ClientTls from file paths (None = absent); None when TLS is off (no CA). `names`: what the
    messages call the CA, certificate, key and name settings (the variables; a CLI, its flags)."""
    ca_var, cert_var, key_var, name_var = names
    if ca is None:
        if cert is not None or key is not None or target_name:
            raise TlsConfigError(f"{cert_var}, {key_var} and {name_var} need {ca_var} "
                                 "(the CA that signed the coordinator's certificate; it turns TLS on)")
        return None
    trusted = _read(ca, ca_var, _CERT_MARK, "certificate")
    _check_ca(ca, ca_var)
    if cert is None and key is None:
        return ClientTls(trusted, target_name=target_name)
    if cert is None or key is None:
        raise TlsConfigError(f"{cert_var} and {key_var} go together: set both or neither")
    chain, private = _read_pair(cert, key, cert_var, key_var)
    return ClientTls(trusted, chain, private, target_name)


def _path(env: Mapping[str, str], var: str) -> Path | None:
    v = env.get(var, "").strip()
    return Path(v) if v else None


def server_tls_from_env(env: Mapping[str, str]) -> ServerTls | None:
    """The coordinator's TLS from CLUSTERQ_TLS_CERT_FILE / _KEY_FILE / _CLIENT_CA_FILE (None = plaintext)."""
    return server_tls_from_files(_path(env, SERVER_CERT_VAR), _path(env, SERVER_KEY_VAR),
                                 _path(env, SERVER_CLIENT_CA_VAR))


def client_tls_from_env(env: Mapping[str, str]) -> ClientTls | None:
    """A client's TLS from CLUSTERQ_COORDINATOR_CA_FILE / _CERT_FILE / _KEY_FILE / _TLS_NAME (None = plaintext)."""
    return client_tls_from_files(_path(env, CLIENT_CA_VAR), _path(env, CLIENT_CERT_VAR), _path(env, CLIENT_KEY_VAR),
                                 env.get(CLIENT_NAME_VAR, "").strip())

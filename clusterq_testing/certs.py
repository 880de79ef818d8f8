"""A throwaway certificate authority for tests: a CA, server certificates and client certificates.

Made with the `openssl` command line (installed by scripts/provision.sh), into a directory the
caller owns; nothing is ever written into the repository. Keys are EC P-256, certificates valid for
one day, server certificates carry `subjectAltName` IP:127.0.0.1 and DNS:localhost plus any
names asked for, so both etcd (Go's TLS, which ignores the CN) and gRPC's hostname check accept them.
A failing openssl raises RuntimeError with its output: a real part that cannot be made is a test
error, never a skip.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

__all__ = ["CertPair", "TestCa"]


@dataclass(frozen=True)
class CertPair:
    """A PEM certificate and its private key, as files."""

    cert: Path
    key: Path


def _openssl(*args: str, cwd: Path) -> None:
    proc = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"openssl {args[0]} failed ({proc.returncode}): {proc.stderr.strip()[-2000:]}")


class TestCa:
    """A certificate authority in `directory`; `ca_cert` is what clients and servers trust."""

    __test__ = False  # not a pytest test class, despite the name

    def __init__(self, directory: Path, name: str = "clusterq test CA") -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.ca_key = directory / "ca.key"
        self.ca_cert = directory / "ca.pem"
        _openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", str(self.ca_key), cwd=directory)
        _openssl("req", "-x509", "-new", "-key", str(self.ca_key), "-sha256", "-days", "1",
                 "-subj", f"/CN={name}", "-addext", "basicConstraints=critical,CA:TRUE",
                 "-addext", "keyUsage=critical,keyCertSign,cRLSign", "-out", str(self.ca_cert), cwd=directory)
        self._serial = 1

    def server(self, name: str, extra_names: tuple[str, ...] = (), *, ip: bool = True) -> CertPair:
        """A server certificate for localhost, 127.0.0.1 unless `ip` is False (like a pod whose IP no
        certificate names), and `extra_names` (DNS names), signed by this CA."""
        sans = [*(["IP:127.0.0.1"] if ip else []), "DNS:localhost", *(f"DNS:{n}" for n in extra_names)]
        return self._issue(name, f"subjectAltName={','.join(sans)}\nextendedKeyUsage=serverAuth,clientAuth\n")

    def client(self, name: str) -> CertPair:
        """A client certificate with common name `name` (etcd maps a client certificate's CN to a user)."""
        return self._issue(name, "extendedKeyUsage=clientAuth\n")

    def _issue(self, name: str, extensions: str) -> CertPair:
        key = self.directory / f"{name}.key"
        csr = self.directory / f"{name}.csr"
        cert = self.directory / f"{name}.pem"
        ext = self.directory / f"{name}.ext"
        ext.write_text("basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n" + extensions)
        _openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", str(key), cwd=self.directory)
        _openssl("req", "-new", "-key", str(key), "-subj", f"/CN={name}", "-out", str(csr), cwd=self.directory)
        self._serial += 1
        _openssl("x509", "-req", "-in", str(csr), "-CA", str(self.ca_cert), "-CAkey", str(self.ca_key),
                 "-set_serial", str(self._serial), "-days", "1", "-sha256", "-extfile", str(ext),
                 "-out", str(cert), cwd=self.directory)
        key.chmod(0o600)
        return CertPair(cert=cert, key=key)

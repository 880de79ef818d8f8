"""k8s/components/etcd-tls on the real etcd binary: etcd is started with the rendered ETCD_* variables
and client-URL scheme (the Secrets' files from a test CA put where the pods mount them, loopback
ports instead of pod names), and the coordinator's etcd client is built from the rendered coordinator
environment by the coordinator's own settings and start-up code. A misspelt variable on either side
would leave etcd in plaintext or without client-certificate checks, or the client without TLS:
each shows here as a failed or an unrefused request."""

from __future__ import annotations

import asyncio
import os
import ssl
import subprocess
import urllib.request
from pathlib import Path

import pytest

from clusterq_testing.certs import TestCa
from clusterq_testing.etcd import default_etcd_binary
from clusterq_testing.ports import free_tcp_port
from coordinator.__main__ import etcd_config
from coordinator.config import CoordinatorSettings
from coordinator.store.etcd_kv import EtcdConfig, EtcdKv, EtcdTls
from coordinator.store.kv import KvError
from tests.unit.k8s.conftest import render
from tests.unit.k8s.rendering import Rendered, _container, _pod_env, secret_files

pytestmark = pytest.mark.integration


def _with_files(r: Rendered, kind: str, name: str, container: str, secret: str,
                files: dict[str, Path], fields: dict[str, str] | None) -> dict[str, str]:
    """The container's rendered env, each path into the mounted Secret replaced by the test file."""
    workload = r.get(kind, name)
    c = _container(workload, container)
    mounted = secret_files(workload, c, secret)
    env = _pod_env(r, c, fields, "not-real")
    return {k: str(files[mounted[v]]) if v in mounted else v for k, v in env.items()}


async def _healthy(url: str, ctx: ssl.SSLContext, proc: subprocess.Popen[bytes], log: Path) -> None:
    def get() -> bool:
        with urllib.request.urlopen(url, timeout=1, context=ctx) as resp:
            return b'"health":"true"' in resp.read()
    async with asyncio.timeout(20):
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"etcd exited ({proc.returncode}):\n{log.read_text()[-3000:]}")
            try:
                if await asyncio.to_thread(get):
                    return
            except OSError:
                pass
            await asyncio.sleep(0.1)


async def test_etcd_and_the_coordinator_as_rendered_speak_tls_with_client_certificates(tmp_path: Path) -> None:
    r = render(tmp_path, "etcd-tls")
    ca = TestCa(tmp_path / "ca")
    server, client = ca.server("etcd"), ca.client("clusterq")
    etcd_env = {k: v for k, v in _with_files(r, "StatefulSet", "etcd", "etcd", "clusterq-etcd-tls",
                                             {"tls.crt": server.cert, "tls.key": server.key, "ca.crt": ca.ca_cert},
                                             None).items() if k.startswith("ETCD_")}
    etcd_args = _container(r.get("StatefulSet", "etcd"), "etcd")["args"]
    scheme = next(a for a in etcd_args if a.startswith("--listen-client-urls=")).split("=", 1)[1].split("://")[0]
    port, peer = free_tcp_port(), free_tcp_port()
    log = tmp_path / "etcd.log"
    cmd = [str(default_etcd_binary()), "--name", "m0", "--data-dir", str(tmp_path / "data"),
           f"--listen-client-urls={scheme}://127.0.0.1:{port}", f"--advertise-client-urls={scheme}://127.0.0.1:{port}",
           f"--listen-peer-urls=http://127.0.0.1:{peer}", f"--initial-advertise-peer-urls=http://127.0.0.1:{peer}",
           f"--initial-cluster=m0=http://127.0.0.1:{peer}"]
    clean = {k: v for k, v in os.environ.items() if not k.startswith("ETCD_")}
    with log.open("wb") as out:
        proc = await asyncio.to_thread(subprocess.Popen, cmd, env={**clean, **etcd_env}, stdout=out,
                                       stderr=subprocess.STDOUT)
    try:
        ctx = ssl.create_default_context(cafile=str(ca.ca_cert))
        ctx.load_cert_chain(str(client.cert), str(client.key))
        await _healthy(f"https://127.0.0.1:{port}/health", ctx, proc, log)
        # etcd took every ETCD_* variable as the flag it means (an unknown one is only warned about).
        # etcd 3.4 asks for client certificates as soon as it has a trusted CA, so the refusal below
        # alone would not show ETCD_CLIENT_CERT_AUTH was read; with etcd auth on, that flag also makes
        # etcd take the certificate's common name as the user.
        text = log.read_text()
        assert "client-cert-auth = true" in text, text[-3000:]
        assert "unrecognized environment variable" not in text, text[-3000:]

        fields = {"metadata.name": "clusterq-coordinator-abc12", "status.podIP": "10.1.2.3"}
        coord_env = _with_files(r, "Deployment", "clusterq-coordinator", "coordinator", "clusterq-etcd-client-tls",
                                {"tls.crt": client.cert, "tls.key": client.key, "ca.crt": ca.ca_cert}, fields)
        coord_env["CLUSTERQ_ETCD_ENDPOINTS"] = f"127.0.0.1:{port}"
        kv = EtcdKv(etcd_config(CoordinatorSettings.from_env(coord_env)))
        try:
            await kv.put(b"/clusterq/probe", b"tls")
            got = await kv.get(b"/clusterq/probe")
            assert got is not None and got.value == b"tls"
        finally:
            await kv.close()

        # Refused: plaintext, and TLS without a client certificate (etcd's --client-cert-auth).
        no_cert = EtcdTls(ca=ca.ca_cert.read_bytes())
        for config in (EtcdConfig(endpoints=(f"127.0.0.1:{port}",), retry_budget=2.0),
                       EtcdConfig(endpoints=(f"127.0.0.1:{port}",), retry_budget=2.0, tls=no_cert)):
            refused = EtcdKv(config)
            try:
                with pytest.raises(KvError):
                    await refused.put(b"/clusterq/probe", b"plain")
            finally:
                await refused.close()
    finally:
        proc.kill()
        proc.wait(10)

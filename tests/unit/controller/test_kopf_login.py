"""kopf's login from the controller's configuration: every credential form reaches kopf's
ConnectionInfo, and each login reads rotated tokens and runs exec plugins afresh."""

from __future__ import annotations

import base64
import ssl
import stat
import sys
from datetime import UTC, datetime
from pathlib import Path

from vmbmc.controller.handlers import connection_info
from vmbmc.k8s.kubeconfig import ClusterConfig, ExecPlugin, TokenFile
from vmbmc.redfish.tls import self_signed_certificate


def pki(tmp_path: Path) -> tuple[Path, Path]:
    (tmp_path / "pki").mkdir()
    return self_signed_certificate(names=("client.test",), directory=tmp_path / "pki")


async def test_token_file_rotation_reaches_kopf(tmp_path: Path) -> None:
    ca, _ = pki(tmp_path)
    token = tmp_path / "token"
    token.write_text("first")
    cfg = ClusterConfig(server="https://api.test:6443", ca_pem=ca.read_text(), token_file=TokenFile(token))
    info = await connection_info(cfg)
    assert (info.server, info.scheme, info.token) == ("https://api.test:6443", "Bearer", "first")
    assert info.as_http_headers() == {"Authorization": "Bearer first"}
    assert info.ca_data == ca.read_text() and info.as_ssl_context().verify_mode == ssl.CERT_REQUIRED
    token.write_text("rotated")
    assert (await connection_info(cfg)).token == "rotated"  # a re-login re-reads the file at once


async def test_client_certificate_and_basic_auth(tmp_path: Path) -> None:
    cert, key = pki(tmp_path)
    files = ClusterConfig(server="https://x", insecure=True, cert_file=str(cert), key_file=str(key))
    info = await connection_info(files)
    assert (info.certificate_path, info.private_key_path, info.insecure) == (str(cert), str(key), True)
    assert info.as_ssl_context().verify_mode == ssl.CERT_NONE  # loads the chain
    data = ClusterConfig(
        server="https://x",
        insecure=True,
        cert_pem=cert.read_text(),
        key_pem=key.read_text(),
        username="u",
        password="p",
    )
    info = await connection_info(data)
    assert info.certificate_path is None and info.certificate_data == cert.read_text()
    assert info.as_http_headers()["Authorization"] == "Basic " + base64.b64encode(b"u:p").decode()
    info.as_ssl_context()


async def test_exec_plugin_certificate_and_expiry(tmp_path: Path) -> None:
    cert, key = pki(tmp_path)
    plugin = tmp_path / "plugin"
    plugin.write_text(
        f"#!{sys.executable}\nimport json\n"
        "print(json.dumps({'apiVersion': 'client.authentication.k8s.io/v1', 'kind': 'ExecCredential',"
        f" 'status': {{'clientCertificateData': open({str(cert)!r}).read(),"
        f" 'clientKeyData': open({str(key)!r}).read(), 'expirationTimestamp': '2999-01-01T00:00:00Z'}}}}))\n"
    )
    plugin.chmod(plugin.stat().st_mode | stat.S_IXUSR)
    cfg = ClusterConfig(
        server="https://x",
        insecure=True,
        exec_plugin=ExecPlugin(command=str(plugin), api_version="client.authentication.k8s.io/v1"),
    )
    info = await connection_info(cfg)
    assert info.token is None and info.certificate_data == cert.read_text()
    assert info.private_key_data == key.read_text()
    assert info.expiration == datetime(2999, 1, 1, tzinfo=UTC)  # kopf logs in again then
    info.as_ssl_context()

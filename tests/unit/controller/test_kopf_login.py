"""kopf's login from the controller's configuration (lightkube's, through vmbmc.k8s.config): every
credential form reaches kopf's ConnectionInfo, and each login reads rotated tokens and runs exec plugins
afresh."""

from __future__ import annotations

import base64
import ssl
import stat
import sys
from pathlib import Path
from typing import Any

from lightkube import KubeConfig

from vmbmc.controller.handlers import connection_info
from vmbmc.k8s.config import SingleConfig, select
from vmbmc.redfish.tls import self_signed_certificate


def pki(tmp_path: Path) -> tuple[Path, Path]:
    (tmp_path / "pki").mkdir()
    return self_signed_certificate(names=("client.test",), directory=tmp_path / "pki")


def single(cluster: dict[str, Any], user: dict[str, Any], base: Path) -> SingleConfig:
    doc = {
        "clusters": [{"name": "c", "cluster": cluster}],
        "users": [{"name": "u", "user": user}],
        "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
        "current-context": "x",
    }
    return select(KubeConfig.from_dict(doc, fname=base / "kubeconfig"), None)


def b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


async def test_token_file_rotation_reaches_kopf(tmp_path: Path) -> None:
    """A relative tokenFile is the kubeconfig's neighbour (as for kubectl)."""
    ca, _ = pki(tmp_path)
    token = tmp_path / "token"
    token.write_text("first")
    cfg = single(
        {"server": "https://api.test:6443", "certificate-authority-data": b64(ca)},
        {"tokenFile": "token"},
        tmp_path,
    )
    info = await connection_info(cfg)
    assert (info.server, info.scheme, info.token) == ("https://api.test:6443", "Bearer", "first")
    assert info.as_http_headers() == {"Authorization": "Bearer first"}
    assert info.ca_data == ca.read_bytes() and info.as_ssl_context().verify_mode == ssl.CERT_REQUIRED
    token.write_text("rotated")
    assert (await connection_info(cfg)).token == "rotated"  # a re-login re-reads the file at once


async def test_client_certificate_and_basic_auth(tmp_path: Path) -> None:
    cert, key = pki(tmp_path)
    files = single(
        {"server": "https://x", "insecure-skip-tls-verify": True},
        {"client-certificate": "pki/" + cert.name, "client-key": str(key)},
        tmp_path,
    )
    info = await connection_info(files)
    assert (info.certificate_path, info.private_key_path, info.insecure) == (str(cert), str(key), True)
    assert info.as_ssl_context().verify_mode == ssl.CERT_NONE  # loads the chain
    data = single(
        {"server": "https://x", "insecure-skip-tls-verify": True},
        {"client-certificate-data": b64(cert), "client-key-data": b64(key), "username": "u", "password": "p"},
        tmp_path,
    )
    info = await connection_info(data)
    assert info.certificate_path is None and info.certificate_data == cert.read_bytes()
    assert info.as_http_headers()["Authorization"] == "Basic " + base64.b64encode(b"u:p").decode()
    info.as_ssl_context()


async def test_exec_plugin_runs_at_each_login(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    plugin = tmp_path / "plugin"
    plugin.write_text(
        f"#!{sys.executable}\nimport json\n"
        f"with open({str(runs)!r}, 'a') as f: f.write('run\\n')\n"
        f"count = open({str(runs)!r}).read().count('run')\n"
        "print(json.dumps({'apiVersion': 'client.authentication.k8s.io/v1beta1', 'kind': 'ExecCredential',"
        " 'status': {'token': f'exec-{count}'}}))\n"
    )
    plugin.chmod(plugin.stat().st_mode | stat.S_IXUSR)
    cfg = single(
        {"server": "https://x", "insecure-skip-tls-verify": True},
        {"exec": {"apiVersion": "client.authentication.k8s.io/v1beta1", "command": str(plugin)}},
        tmp_path,
    )
    assert (await connection_info(cfg)).token == "exec-1"
    assert (await connection_info(cfg)).token == "exec-2"  # kopf logs in again after a 401

"""The API client (lightkube's configuration, httpx2's transport) against real servers: the emulator over
HTTPS (its CA, service-account tokens, tokenFile rotation, exec plugins, in-cluster files) and a TLS
server that demands a client certificate. Who the API server saw is read back from a SelfSubjectReview."""

from __future__ import annotations

import asyncio
import base64
import json
import ssl
import stat
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from vmbmc.k8s import config
from vmbmc.k8s.client import NOT_SENT, ApiClient, ApiError
from vmbmc.redfish.tls import self_signed_certificate
from vmbmc_devcluster.emulator.harness import EmulatorThread

NAMESPACE = "default"
REVIEW = "/apis/authentication.k8s.io/v1/selfsubjectreviews"


def service_account(emu: EmulatorThread, name: str) -> str:
    """Create ServiceAccount default/NAME; → a token for it."""
    rt = emu.emulator.registry.get("", "v1", "serviceaccounts")
    body = {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name, "namespace": NAMESPACE}}
    emu.call(emu.emulator.store.create, rt, body, NAMESPACE)
    return emu.token_for(NAMESPACE, name)


def delete_service_account(emu: EmulatorThread, name: str) -> None:
    rt = emu.emulator.registry.get("", "v1", "serviceaccounts")
    emu.call(emu.emulator.store.delete, rt, NAMESPACE, name)


async def whoami(api: ApiClient) -> str:
    body = {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"}
    review = await api.request("POST", REVIEW, body=body, retry=False)
    return str(review["status"]["userInfo"]["username"])


def write_kubeconfig(path: Path, cluster: dict[str, Any], user: dict[str, Any]) -> Path:
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "c", "cluster": cluster}],
        "users": [{"name": "u", "user": user}],
        "contexts": [{"name": "ctx", "context": {"cluster": "c", "user": "u"}}],
        "current-context": "ctx",
    }
    path.write_text(yaml.safe_dump(doc))
    return path


def ca_data(emu: EmulatorThread) -> str:
    assert emu.ca_file is not None
    return base64.b64encode(Path(emu.ca_file).read_bytes()).decode()


@pytest.fixture
async def clients() -> AsyncIterator[list[ApiClient]]:
    """Clients made by a test, closed after it."""
    made: list[ApiClient] = []
    yield made
    for api in made:
        await api.close()


async def connect(clients: list[ApiClient], path: Path) -> ApiClient:
    api = ApiClient(config.load(str(path)))
    clients.append(api)
    return api


async def test_token_with_ca_file_and_ca_data(
    emulator: EmulatorThread, clients: list[ApiClient], tmp_path: Path
) -> None:
    token = service_account(emulator, "reader-a")
    by_data = write_kubeconfig(
        tmp_path / "data",
        {"server": emulator.url, "certificate-authority-data": ca_data(emulator)},
        {"token": token},
    )
    by_file = write_kubeconfig(
        tmp_path / "file",
        {"server": emulator.url, "certificate-authority": emulator.ca_file},
        {"token": token},
    )
    for path in (by_data, by_file):
        api = await connect(clients, path)
        assert await whoami(api) == "system:serviceaccount:default:reader-a"
        assert await whoami(api) == "system:serviceaccount:default:reader-a"  # a kept-alive connection


async def test_server_certificate_is_verified(
    emulator: EmulatorThread, clients: list[ApiClient], tmp_path: Path
) -> None:
    other_ca, _ = self_signed_certificate(directory=tmp_path)  # not the emulator's
    token = emulator.token
    wrong = write_kubeconfig(
        tmp_path / "wrong", {"server": emulator.url, "certificate-authority": str(other_ca)}, {"token": token}
    )
    with pytest.raises(ApiError) as err:
        await whoami(await connect(clients, wrong))
    assert err.value.code == 0 and "CERTIFICATE_VERIFY_FAILED" in err.value.message
    skip = write_kubeconfig(
        tmp_path / "skip", {"server": emulator.url, "insecure-skip-tls-verify": True}, {"token": token}
    )
    assert await whoami(await connect(clients, skip)) == "admin"


async def test_token_file_rotation(
    emulator: EmulatorThread, clients: list[ApiClient], tmp_path: Path
) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(service_account(emulator, "rotating-1"))
    path = write_kubeconfig(
        tmp_path / "config",
        {"server": emulator.url, "certificate-authority-data": ca_data(emulator)},
        {"tokenFile": "token"},  # beside the kubeconfig
    )
    api = await connect(clients, path)
    lane = api.lane()  # shares the credentials
    clients.append(lane)
    assert await whoami(api) == await whoami(lane) == "system:serviceaccount:default:rotating-1"
    # The token is rotated and the old one revoked (its ServiceAccount is gone): the 401 makes the
    # client read the file again and send the call once more with the new token.
    token_file.write_text(service_account(emulator, "rotating-2"))
    delete_service_account(emulator, "rotating-1")
    assert await whoami(api) == "system:serviceaccount:default:rotating-2"
    assert await whoami(lane) == "system:serviceaccount:default:rotating-2"


async def test_in_cluster_files(
    emulator: EmulatorThread, clients: list[ApiClient], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sa = tmp_path / "serviceaccount"
    sa.mkdir()
    (sa / "token").write_text(service_account(emulator, "in-cluster"))
    (sa / "ca.crt").write_bytes(Path(str(emulator.ca_file)).read_bytes())
    (sa / "namespace").write_text(NAMESPACE)
    monkeypatch.delenv("KUBECONFIG", raising=False)
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "127.0.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", str(emulator.port))
    monkeypatch.setattr(config, "SERVICE_ACCOUNT_DIR", str(sa))
    api = await ApiClient.connect()  # no kubeconfig anywhere: the pod's service account
    clients.append(api)
    assert await whoami(api) == "system:serviceaccount:default:in-cluster"
    (sa / "token").write_text(service_account(emulator, "in-cluster-2"))  # the kubelet rotates it
    delete_service_account(emulator, "in-cluster")  # and the old one expires
    assert await whoami(api) == "system:serviceaccount:default:in-cluster-2"


EXEC_PLUGIN = """#!{python}
import json, os
with open(os.environ["RUNS"], "a") as f:
    f.write("run\\n")
token = open(os.environ["TOKEN_FILE"]).read().strip()
print(json.dumps({{"apiVersion": "client.authentication.k8s.io/v1beta1", "kind": "ExecCredential",
                  "status": {{"token": token, "expirationTimestamp": "2999-01-01T00:00:00Z"}}}}))
"""


async def test_exec_plugin_token_refreshed_after_401(
    emulator: EmulatorThread, clients: list[ApiClient], tmp_path: Path
) -> None:
    plugin = tmp_path / "plugin"
    plugin.write_text(EXEC_PLUGIN.format(python=sys.executable))
    plugin.chmod(plugin.stat().st_mode | stat.S_IXUSR)
    token_file, runs = tmp_path / "token", tmp_path / "runs"
    token_file.write_text(service_account(emulator, "exec-1"))
    env = [{"name": "TOKEN_FILE", "value": str(token_file)}, {"name": "RUNS", "value": str(runs)}]
    path = write_kubeconfig(
        tmp_path / "config",
        {"server": emulator.url, "certificate-authority-data": ca_data(emulator)},
        {"exec": {"apiVersion": "client.authentication.k8s.io/v1beta1", "command": str(plugin), "env": env}},
    )
    api = await connect(clients, path)
    assert await whoami(api) == "system:serviceaccount:default:exec-1"
    assert await whoami(api) == "system:serviceaccount:default:exec-1"
    assert runs.read_text().count("run") == 1  # cached until 2999
    token_file.write_text(service_account(emulator, "exec-2"))
    delete_service_account(emulator, "exec-1")  # the cached token is now refused
    assert await whoami(api) == "system:serviceaccount:default:exec-2"
    assert runs.read_text().count("run") == 2


# --- client certificates: a TLS server that demands one ----------------------------------------------
class ClientCertServer:
    """HTTPS on 127.0.0.1 requiring a client certificate signed by `client_ca`; answers every request
    with JSON naming the certificate's subjectAltName DNS entries."""

    def __init__(self, cert: Path, key: Path, client_ca: Path) -> None:
        self.ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(client_ca))
        self.ctx.load_cert_chain(cert, key)
        self.ctx.verify_mode = ssl.CERT_REQUIRED
        self.server: asyncio.Server | None = None
        self.port = 0

    async def __aenter__(self) -> ClientCertServer:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=self.ctx)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(10):
                while (await reader.readline()).strip():
                    pass
            peer = writer.get_extra_info("peercert") or {}
            names = [v for k, v in peer.get("subjectAltName", ()) if k == "DNS"]
            body = json.dumps({"client": names}).encode()
            writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n"
                + f"Content-Length: {len(body)}\r\n\r\n".encode()
                + body
            )
            await writer.drain()
        except (OSError, TimeoutError):
            pass
        finally:
            writer.close()


def client_pki(directory: Path) -> tuple[Path, Path, Path]:
    """A client CA and a client certificate it signed (extendedKeyUsage clientAuth, DNS name
    kbmc.client.test); → (ca, cert, key) PEM files."""
    import datetime as dt

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = dt.datetime.now(dt.UTC)

    def build(subject: str, issuer: str, key: Any, signer: Any, ca: bool) -> x509.Certificate:
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
            .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        if not ca:
            builder = builder.add_extension(
                x509.SubjectAlternativeName([x509.DNSName("kbmc.client.test")]), critical=False
            ).add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        return builder.sign(signer, hashes.SHA256())

    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = build("client-ca", "client-ca", ca_key, ca_key, True)
    cert = build("kbmc", "client-ca", key, ca_key, False)
    paths = directory / "client-ca.pem", directory / "client.pem", directory / "client-key.pem"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return paths


@pytest.fixture
def pki(tmp_path: Path) -> dict[str, Path]:
    (tmp_path / "server").mkdir()
    server, server_key = self_signed_certificate(names=("localhost",), directory=tmp_path / "server")
    client_ca, client, client_key = client_pki(tmp_path)
    return {
        "server": server,
        "server_key": server_key,
        "client_ca": client_ca,
        "client": client,
        "client_key": client_key,
    }


async def test_client_certificate_files_and_data(
    pki: dict[str, Path], clients: list[ApiClient], tmp_path: Path
) -> None:
    async with ClientCertServer(pki["server"], pki["server_key"], client_ca=pki["client_ca"]) as srv:
        cluster = {"server": f"https://127.0.0.1:{srv.port}", "certificate-authority": str(pki["server"])}
        files = {"client-certificate": str(pki["client"]), "client-key": str(pki["client_key"])}
        data = {
            "client-certificate-data": base64.b64encode(pki["client"].read_bytes()).decode(),
            "client-key-data": base64.b64encode(pki["client_key"].read_bytes()).decode(),
        }
        for name, user in (("files", files), ("data", data)):
            api = await connect(clients, write_kubeconfig(tmp_path / name, cluster, user))
            answer = await api.request("GET", "/api", retry=False)
            assert "kbmc.client.test" in answer["client"], name
        # Without a certificate the server refuses the handshake.
        bare = await connect(clients, write_kubeconfig(tmp_path / "none", cluster, {}))
        with pytest.raises(ApiError) as err:
            await bare.request("GET", "/api", retry=False)
        assert err.value.code == 0


async def test_exec_plugin_lightkube_cannot_use_is_refused_unsent(
    emulator: EmulatorThread, clients: list[ApiClient], tmp_path: Path
) -> None:
    """lightkube runs exec plugins of `client.authentication.k8s.io/v1beta1` (and v1alpha1) that answer
    with a token; a `v1` plugin is refused before anything is sent (docs/k8s-client.md)."""
    plugin = tmp_path / "v1-plugin"
    plugin.write_text(f"#!{sys.executable}\nprint('{{}}')\n")
    plugin.chmod(plugin.stat().st_mode | stat.S_IXUSR)
    cluster = {"server": emulator.url, "certificate-authority-data": ca_data(emulator)}
    user = {"exec": {"apiVersion": "client.authentication.k8s.io/v1", "command": str(plugin)}}
    api = await connect(clients, write_kubeconfig(tmp_path / "config", cluster, user))
    with pytest.raises(ApiError) as err:
        await api.request("GET", "/api", retry=False)
    assert (err.value.code, err.value.reason) == (0, NOT_SENT) and "not implemented" in err.value.message

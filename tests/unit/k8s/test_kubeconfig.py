"""The kubeconfig / in-cluster loader without a server: every kubeconfig form, context selection,
KUBECONFIG merging, token files that rotate, and exec credential plugins run as real child processes."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import ssl
import stat
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from vmbmc.k8s import kubeconfig as kc
from vmbmc.k8s.kubeconfig import KubeConfigError, TokenFile, in_cluster, load, parse_exec_credential
from vmbmc.redfish.tls import self_signed_certificate


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A CA-like certificate (the server's) and a client certificate, as files and PEM text."""
    base = tmp_path_factory.mktemp("pki")
    (base / "ca").mkdir()
    (base / "client").mkdir()
    ca, ca_key = self_signed_certificate(names=("api.test",), directory=base / "ca")
    client, client_key = self_signed_certificate(names=("client.test",), directory=base / "client")
    return {
        "ca": ca,
        "ca_pem": ca.read_text(),
        "ca_key": ca_key,
        "cert": client,
        "key": client_key,
        "cert_pem": client.read_text(),
        "key_pem": client_key.read_text(),
    }


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def write(path: Path, doc: dict[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(doc))
    return path


def kubeconfig(
    clusters: dict[str, dict[str, Any]],
    users: dict[str, dict[str, Any]],
    contexts: dict[str, tuple[str, str]],
    current: str | None,
) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": n, "cluster": c} for n, c in clusters.items()],
        "users": [{"name": n, "user": u} for n, u in users.items()],
        "contexts": [{"name": n, "context": {"cluster": c, "user": u}} for n, (c, u) in contexts.items()],
    }
    if current is not None:
        doc["current-context"] = current
    return doc


def one(cluster: dict[str, Any], user: dict[str, Any]) -> dict[str, Any]:
    return kubeconfig({"c": cluster}, {"u": user}, {"ctx": ("c", "u")}, "ctx")


async def authorization(cfg: kc.ClusterConfig) -> str | None:
    return (await cfg.credentials())[0]


# --- kubeconfig forms --------------------------------------------------------------------------------
async def test_token_and_ca_data_from_current_context(tmp_path: Path, pki: dict[str, Any]) -> None:
    doc = kubeconfig(
        {
            "a": {"server": "https://a.test:6443/", "certificate-authority-data": b64(pki["ca_pem"])},
            "b": {"server": "https://b.test:6443"},
        },
        {"ua": {"token": "token-a"}, "ub": {"token": "token-b"}},
        {"ctx-a": ("a", "ua"), "ctx-b": ("b", "ub")},
        "ctx-a",
    )
    cfg = load(str(write(tmp_path / "config", doc)))
    assert cfg.server == "https://a.test:6443"
    assert cfg.ca_pem == pki["ca_pem"] and cfg.ca_file is None
    assert await authorization(cfg) == "Bearer token-a"
    ctx = cfg.ssl_context()
    assert ctx is not None and ctx.verify_mode == ssl.CERT_REQUIRED and ctx.check_hostname
    assert ctx.cert_store_stats()["x509"] == 1  # only the cluster's CA, not the system store


async def test_named_context_wins_over_current(tmp_path: Path) -> None:
    doc = kubeconfig(
        {"a": {"server": "http://a.test"}, "b": {"server": "http://b.test"}},
        {"ua": {"token": "token-a"}, "ub": {"token": "token-b"}},
        {"ctx-a": ("a", "ua"), "ctx-b": ("b", "ub")},
        "ctx-a",
    )
    cfg = load(str(write(tmp_path / "config", doc)), context="ctx-b")
    assert cfg.server == "http://b.test" and await authorization(cfg) == "Bearer token-b"
    assert cfg.ssl_context() is None  # plain http
    with pytest.raises(KubeConfigError, match="context 'nope' not found"):
        load(str(tmp_path / "config"), context="nope")


def test_no_current_context_is_an_error(tmp_path: Path) -> None:
    doc = kubeconfig({"a": {"server": "http://a"}}, {"u": {}}, {"ctx": ("a", "u")}, None)
    with pytest.raises(KubeConfigError, match="no current-context"):
        load(str(write(tmp_path / "config", doc)))


def test_files_relative_to_the_kubeconfig(tmp_path: Path, pki: dict[str, Any]) -> None:
    certs = tmp_path / "conf" / "certs"
    certs.mkdir(parents=True)
    for name in ("ca", "cert", "key"):
        (certs / f"{name}.pem").write_bytes(Path(pki[name]).read_bytes())
    doc = one(
        {"server": "https://api.test", "certificate-authority": "certs/ca.pem"},
        {"client-certificate": "certs/cert.pem", "client-key": "certs/key.pem"},
    )
    cfg = load(str(write(tmp_path / "conf" / "config", doc)))
    assert cfg.ca_file == str(certs / "ca.pem")
    assert (cfg.cert_file, cfg.key_file) == (str(certs / "cert.pem"), str(certs / "key.pem"))
    ctx = cfg.ssl_context()
    assert ctx is not None and ctx.cert_store_stats()["x509"] == 1


def test_client_certificate_data_leaves_no_file(
    tmp_path: Path, pki: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(kc.tempfile, "tempdir", str(scratch))
    doc = one(
        {"server": "https://api.test", "certificate-authority-data": b64(pki["ca_pem"])},
        {"client-certificate-data": b64(pki["cert_pem"]), "client-key-data": b64(pki["key_pem"])},
    )
    cfg = load(str(write(tmp_path / "config", doc)))
    assert cfg.cert_pem == pki["cert_pem"] and cfg.key_pem == pki["key_pem"]
    assert cfg.ssl_context() is not None  # the chain loads (a bad key would raise ssl.SSLError)
    assert list(scratch.iterdir()) == []  # the key was on disk only while ssl read it


def test_certificate_without_key_is_refused(tmp_path: Path, pki: dict[str, Any]) -> None:
    doc = one({"server": "https://api.test"}, {"client-certificate-data": b64(pki["cert_pem"])})
    with pytest.raises(KubeConfigError, match="go together"):
        load(str(write(tmp_path / "config", doc)))


def test_insecure_skip_tls_verify(tmp_path: Path, pki: dict[str, Any]) -> None:
    cfg = load(str(write(tmp_path / "a", one({"server": "https://x", "insecure-skip-tls-verify": True}, {}))))
    ctx = cfg.ssl_context()
    assert ctx is not None and ctx.verify_mode == ssl.CERT_NONE and not ctx.check_hostname
    both = one(
        {
            "server": "https://x",
            "insecure-skip-tls-verify": True,
            "certificate-authority-data": b64(pki["ca_pem"]),
        },
        {},
    )
    with pytest.raises(KubeConfigError, match="cannot both be set"):
        load(str(write(tmp_path / "b", both)))


async def test_basic_auth_and_tls_server_name(tmp_path: Path) -> None:
    doc = one(
        {"server": "https://10.0.0.1", "tls-server-name": "api.test"}, {"username": "u", "password": "p"}
    )
    cfg = load(str(write(tmp_path / "config", doc)))
    assert cfg.tls_server_name == "api.test"
    assert await authorization(cfg) == "Basic " + base64.b64encode(b"u:p").decode()


@pytest.mark.parametrize(
    ("user", "message"),
    [
        ({"auth-provider": {"name": "oidc", "config": {}}}, "use an exec credential plugin"),
        ({"as": "someone"}, "'as' is not supported"),
    ],
)
def test_unsupported_user_fields_are_refused(tmp_path: Path, user: dict[str, Any], message: str) -> None:
    with pytest.raises(KubeConfigError, match=message):
        load(str(write(tmp_path / "config", one({"server": "https://x"}, user))))


def test_missing_or_broken_files(tmp_path: Path) -> None:
    with pytest.raises(KubeConfigError, match="not found"):
        load(str(tmp_path / "absent"))
    (tmp_path / "bad").write_text("clusters: [\n")
    with pytest.raises(KubeConfigError, match="not YAML"):
        load(str(tmp_path / "bad"))


async def test_kubeconfig_list_merges_first_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = write(
        tmp_path / "one",
        kubeconfig({"c": {"server": "http://first"}}, {"u": {"token": "first"}}, {"ctx": ("c", "u")}, "ctx"),
    )
    second = write(
        tmp_path / "two",
        kubeconfig(
            {"c": {"server": "http://second"}, "d": {"server": "http://d"}},
            {"u": {"token": "second"}, "w": {"token": "w"}},
            {"ctx": ("d", "w"), "other": ("d", "w")},
            "other",
        ),
    )
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setenv("KUBECONFIG", os.pathsep.join([str(tmp_path / "absent"), str(first), str(second)]))
    cfg = load()
    # current-context and every name come from the first file that sets them
    assert cfg.server == "http://first" and await authorization(cfg) == "Bearer first"
    cfg = load(context="other")
    assert cfg.server == "http://d" and await authorization(cfg) == "Bearer w"
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "absent"))
    with pytest.raises(KubeConfigError, match="no kubeconfig"):
        load()


# --- tokens that rotate ------------------------------------------------------------------------------
async def test_token_file_wins_over_token_and_is_reread(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("one\n")
    doc = one({"server": "https://x"}, {"token": "inline", "tokenFile": "token"})
    cfg = kc.from_kubeconfig([write(tmp_path / "config", doc)], token_period=0)
    assert await authorization(cfg) == "Bearer one"
    token.write_text("two\n")
    assert await authorization(cfg) == "Bearer two"


async def test_token_file_cached_until_period_or_unauthorized(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text("one")
    tokens = TokenFile(path, period=3600)
    assert tokens.token() == "one"
    path.write_text("two")
    assert tokens.token() == "one"  # within the period
    assert tokens.invalidate()  # a 401
    assert tokens.token() == "two"
    path.unlink()
    tokens.invalidate()
    assert tokens.token() == "two"  # a failed re-read keeps the last good token


def service_account_dir(tmp_path: Path, pki: dict[str, Any], token: str) -> Path:
    sa = tmp_path / "serviceaccount"
    sa.mkdir()
    (sa / "token").write_text(token)
    (sa / "ca.crt").write_text(pki["ca_pem"])
    (sa / "namespace").write_text("vmbmc")
    return sa


async def test_in_cluster_rereads_the_projected_token(tmp_path: Path, pki: dict[str, Any]) -> None:
    sa = service_account_dir(tmp_path, pki, "first")
    env = {"KUBERNETES_SERVICE_HOST": "10.96.0.1", "KUBERNETES_SERVICE_PORT": "443"}
    cfg = in_cluster(env, sa, token_period=0)
    assert cfg.server == "https://10.96.0.1:443" and cfg.ca_file == str(sa / "ca.crt")
    assert await authorization(cfg) == "Bearer first"
    (sa / "token").write_text("rotated")  # the kubelet rewrites the projected token
    assert await authorization(cfg) == "Bearer rotated"
    ctx = cfg.ssl_context()
    assert ctx is not None and ctx.cert_store_stats()["x509"] == 1


def test_in_cluster_ipv6_and_errors(tmp_path: Path, pki: dict[str, Any]) -> None:
    sa = service_account_dir(tmp_path, pki, "t")
    cfg = in_cluster({"KUBERNETES_SERVICE_HOST": "fd00::1", "KUBERNETES_SERVICE_PORT": "443"}, sa)
    assert cfg.server == "https://[fd00::1]:443"
    with pytest.raises(KubeConfigError, match="not in a cluster"):
        in_cluster({}, sa)
    (sa / "ca.crt").unlink()
    with pytest.raises(KubeConfigError, match="CA"):
        in_cluster({"KUBERNETES_SERVICE_HOST": "h", "KUBERNETES_SERVICE_PORT": "1"}, sa)


# --- exec credential plugins -------------------------------------------------------------------------
PLUGIN = """#!{python}
# An exec credential plugin: prints an ExecCredential, records each run and what it was given.
import json, os, sys
runs = os.environ["RUNS_FILE"]
info = json.loads(os.environ["KUBERNETES_EXEC_INFO"])
with open(runs, "a") as f:
    f.write(json.dumps({{"info": info, "args": sys.argv[1:], "stdin_tty": sys.stdin.isatty()}}) + "\\n")
n = sum(1 for _ in open(runs))
mode = os.environ.get("PLUGIN_MODE", "token")
if mode == "fail":
    print("no credentials for you", file=sys.stderr)
    sys.exit(3)
status = {{}}
if mode == "token":
    status["token"] = f"exec-token-{{n}}"
else:
    status["clientCertificateData"] = open(os.environ["CERT"]).read()
    status["clientKeyData"] = open(os.environ["KEY"]).read()
if os.environ.get("EXPIRES"):
    status["expirationTimestamp"] = os.environ["EXPIRES"]
version = os.environ.get("ANSWER_VERSION") or info["apiVersion"]
print(json.dumps({{"apiVersion": version, "kind": "ExecCredential", "status": status}}))
"""


def plugin(tmp_path: Path) -> Path:
    path = tmp_path / "bin" / "plugin"
    path.parent.mkdir(exist_ok=True)
    path.write_text(PLUGIN.format(python=sys.executable))
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def exec_config(
    tmp_path: Path,
    version: str = "client.authentication.k8s.io/v1",
    env: dict[str, str] | None = None,
    cluster: dict[str, Any] | None = None,
    **extra: Any,
) -> kc.ClusterConfig:
    plugin(tmp_path)
    spec = {
        "apiVersion": version,
        "command": "./bin/plugin",  # relative to the kubeconfig's directory
        "args": ["--flag", "value"],
        "env": [{"name": "RUNS_FILE", "value": str(tmp_path / "runs")}]
        + [{"name": k, "value": v} for k, v in (env or {}).items()],
        "interactiveMode": "Never",
        **extra,
    }
    doc = one(cluster or {"server": "https://api.test:6443"}, {"exec": spec})
    return load(str(write(tmp_path / "config", doc)))


def runs(tmp_path: Path) -> list[dict[str, Any]]:
    path = tmp_path / "runs"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


@pytest.mark.parametrize("version", kc.EXEC_API_VERSIONS)
async def test_exec_plugin_token_is_cached(tmp_path: Path, version: str) -> None:
    cfg = exec_config(tmp_path, version)
    assert await authorization(cfg) == "Bearer exec-token-1"
    assert await authorization(cfg) == "Bearer exec-token-1"  # no expiry: the plugin ran once
    [run] = runs(tmp_path)
    assert run["info"] == {"apiVersion": version, "kind": "ExecCredential", "spec": {"interactive": False}}
    assert run["args"] == ["--flag", "value"] and run["stdin_tty"] is False
    assert cfg.unauthorized()  # a 401: the next request asks the plugin again
    assert await authorization(cfg) == "Bearer exec-token-2"


async def test_exec_plugin_runs_again_after_expiry(tmp_path: Path) -> None:
    past = (datetime.now(UTC) - timedelta(seconds=1)).isoformat().replace("+00:00", "Z")
    cfg = exec_config(tmp_path, env={"EXPIRES": past})
    assert await authorization(cfg) == "Bearer exec-token-1"
    assert await authorization(cfg) == "Bearer exec-token-2"  # expired at once: asked again
    future = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    assert cfg.exec_plugin is not None
    cfg.exec_plugin.env["EXPIRES"] = future
    assert await authorization(cfg) == "Bearer exec-token-3"
    _, cred = await cfg.credentials()
    assert cred is not None and cred.expires is not None and cred.expires > datetime.now(UTC)
    assert await authorization(cfg) == "Bearer exec-token-3"  # cached until then


async def test_exec_plugin_runs_once_for_concurrent_requests(tmp_path: Path) -> None:
    cfg = exec_config(tmp_path)
    answers = await asyncio.gather(*(authorization(cfg) for _ in range(8)))
    assert set(answers) == {"Bearer exec-token-1"} and len(runs(tmp_path)) == 1


async def test_exec_plugin_client_certificate(tmp_path: Path, pki: dict[str, Any]) -> None:
    cfg = exec_config(tmp_path, env={"PLUGIN_MODE": "cert", "CERT": str(pki["cert"]), "KEY": str(pki["key"])})
    header, cred = await cfg.credentials()
    assert header is None and cred is not None
    assert (cred.cert_pem, cred.key_pem) == (pki["cert_pem"], pki["key_pem"])
    assert cfg.ssl_context(cred) is not None  # the plugin's certificate loads as the client chain


async def test_exec_plugin_gets_cluster_info_when_asked(tmp_path: Path, pki: dict[str, Any]) -> None:
    cluster = {
        "server": "https://api.test:6443",
        "certificate-authority-data": b64(pki["ca_pem"]),
        "extensions": [{"name": "client.authentication.k8s.io/exec", "extension": {"audience": "x"}}],
    }
    cfg = exec_config(tmp_path, cluster=cluster, provideClusterInfo=True)
    await authorization(cfg)
    [run] = runs(tmp_path)
    assert run["info"]["spec"]["cluster"] == {
        "server": "https://api.test:6443",
        "insecure-skip-tls-verify": False,
        "certificate-authority-data": b64(pki["ca_pem"]),
        "config": {"audience": "x"},
    }


async def test_exec_plugin_failures_are_explained(tmp_path: Path) -> None:
    cfg = exec_config(tmp_path, env={"PLUGIN_MODE": "fail"})
    with pytest.raises(KubeConfigError, match="exited 3: no credentials for you"):
        await cfg.credentials()
    cfg = exec_config(tmp_path, env={"ANSWER_VERSION": "client.authentication.k8s.io/v1beta1"})
    with pytest.raises(KubeConfigError, match="apiVersion"):
        await cfg.credentials()
    with pytest.raises(KubeConfigError, match="interactive"):
        exec_config(tmp_path, interactiveMode="Always")
    with pytest.raises(KubeConfigError, match="not one of"):
        exec_config(tmp_path, version="client.authentication.k8s.io/v1alpha1")


@pytest.mark.parametrize(
    ("status", "message"),
    [
        (None, "without status"),
        ({}, "no token or certificate"),
        ({"clientCertificateData": "x"}, "go together"),
        ({"token": "t", "expirationTimestamp": "soon"}, "expirationTimestamp"),
    ],
)
def test_exec_credential_validation(status: dict[str, Any] | None, message: str) -> None:
    doc: dict[str, Any] = {"apiVersion": "client.authentication.k8s.io/v1", "kind": "ExecCredential"}
    if status is not None:
        doc["status"] = status
    with pytest.raises(KubeConfigError, match=message):
        parse_exec_credential(json.dumps(doc).encode(), "client.authentication.k8s.io/v1")

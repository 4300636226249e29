"""Where the configuration comes from (vmbmc.k8s.config on lightkube's loaders), without a server: the
order of sources, KUBECONFIG lists merged as kubectl (client-go) merges them, checked against kubectl
itself, contexts, in-cluster files, broken files, and inline keys that never stay on disk."""

from __future__ import annotations

import base64
import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from vmbmc.k8s import config
from vmbmc.k8s.client import ApiClient
from vmbmc.k8s.config import ConfigError, load
from vmbmc.redfish.tls import self_signed_certificate


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A server's certificate (used as the CA) and a client certificate, as files and PEM text."""
    base = tmp_path_factory.mktemp("pki")
    (base / "ca").mkdir()
    (base / "client").mkdir()
    ca, _ = self_signed_certificate(names=("api.test",), directory=base / "ca")
    client, client_key = self_signed_certificate(names=("client.test",), directory=base / "client")
    return {"ca": ca, "ca_pem": ca.read_text(), "cert": client, "key": client_key}


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


async def token_of(cfg: config.SingleConfig) -> str | None:
    return (await config.login(cfg)).token


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    """No KUBECONFIG, not in a cluster, an empty home."""
    for name in ("KUBECONFIG", "KUBERNETES_SERVICE_HOST", "KUBERNETES_SERVICE_PORT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    return monkeypatch


def service_account_dir(tmp_path: Path, pki: dict[str, Any], token: str) -> Path:
    sa = tmp_path / "serviceaccount"
    sa.mkdir(exist_ok=True)
    (sa / "token").write_text(token)
    (sa / "ca.crt").write_text(pki["ca_pem"])
    (sa / "namespace").write_text("vmbmc")
    return sa


# --- which source ------------------------------------------------------------------------------------
async def test_sources_in_client_go_order(
    tmp_path: Path, pki: dict[str, Any], clean_env: pytest.MonkeyPatch
) -> None:
    """--kubeconfig, then KUBECONFIG, then the pod's service account, then ~/.kube/config: a process in
    a pod that is given a kubeconfig uses it (controller-runtime's and kubectl's order)."""
    home = write(tmp_path / "home" / ".kube" / "config", one({"server": "http://home"}, {"token": "home"}))
    listed = write(tmp_path / "listed", one({"server": "http://listed"}, {"token": "listed"}))
    given = write(tmp_path / "given", one({"server": "http://given"}, {"token": "given"}))
    clean_env.setattr(config, "SERVICE_ACCOUNT_DIR", str(service_account_dir(tmp_path, pki, "pod")))

    assert load().cluster.server == "http://home"
    clean_env.setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1")
    clean_env.setenv("KUBERNETES_SERVICE_PORT", "443")
    pod = load()
    assert pod.cluster.server == "https://10.96.0.1:443" and await token_of(pod) == "pod"
    clean_env.setenv("KUBECONFIG", str(listed))
    assert load().cluster.server == "http://listed"  # KUBECONFIG before in-cluster
    assert load(str(given)).cluster.server == "http://given"
    assert home.is_file()


def kubectl_view(env: dict[str, str], context: str | None = None) -> dict[str, Any]:
    """What client-go's loader (kubectl) makes of the environment's kubeconfig: the selected context's
    cluster server and user token."""
    cmd = ["kubectl", "config", "view", "--minify", "--raw", "-o", "json"]
    if context:
        cmd += ["--context", context]
    out = subprocess.run(
        cmd, env={**os.environ, **env}, capture_output=True, text=True, timeout=30, check=True
    )
    view = json.loads(out.stdout)
    return {"server": view["clusters"][0]["cluster"]["server"], "token": view["users"][0]["user"]["token"]}


async def test_kubeconfig_list_merges_as_kubectl_does(tmp_path: Path, clean_env: pytest.MonkeyPatch) -> None:
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
    listing = os.pathsep.join([str(tmp_path / "absent"), str(first), str(second)])
    clean_env.setenv("KUBECONFIG", listing)
    for context in (None, "other"):
        cfg = load(context=context)
        ours = {"server": cfg.cluster.server, "token": await token_of(cfg)}
        assert ours == kubectl_view({"KUBECONFIG": listing}, context), context
    assert (await token_of(load())) == "first"  # current-context and every name: the first file's
    clean_env.setenv("KUBECONFIG", str(tmp_path / "absent"))
    with pytest.raises(ConfigError, match="no kubeconfig"):
        load()


# --- contexts and files ------------------------------------------------------------------------------
async def test_named_context_and_errors(tmp_path: Path) -> None:
    doc = kubeconfig(
        {"a": {"server": "http://a.test"}, "b": {"server": "http://b.test"}},
        {"ua": {"token": "token-a"}, "ub": {"token": "token-b"}},
        {"ctx-a": ("a", "ua"), "ctx-b": ("b", "ub"), "broken": ("a", "nobody")},
        "ctx-a",
    )
    path = str(write(tmp_path / "config", doc))
    assert load(path).cluster.server == "http://a.test"
    cfg = load(path, context="ctx-b")
    assert cfg.cluster.server == "http://b.test" and await token_of(cfg) == "token-b"
    with pytest.raises(ConfigError, match="'nope' not found"):
        load(path, context="nope")
    with pytest.raises(ConfigError, match="'broken' names 'nobody'"):
        load(path, context="broken")
    doc.pop("current-context")
    with pytest.raises(ConfigError, match="No current context"):
        load(str(write(tmp_path / "none", doc)))


def test_missing_or_broken_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load(str(tmp_path / "absent"))
    (tmp_path / "bad").write_text("clusters: [\n")
    with pytest.raises(ConfigError, match="cannot be read"):
        load(str(tmp_path / "bad"))
    (tmp_path / "shape").write_text("users: []\n")  # no clusters
    with pytest.raises(ConfigError, match="cannot be read"):
        load(str(tmp_path / "shape"))


async def test_files_relative_to_the_kubeconfig(tmp_path: Path, pki: dict[str, Any]) -> None:
    certs = tmp_path / "conf" / "certs"
    certs.mkdir(parents=True)
    for name in ("ca", "cert", "key"):
        (certs / f"{name}.pem").write_bytes(Path(pki[name]).read_bytes())
    doc = one(
        {"server": "https://api.test", "certificate-authority": "certs/ca.pem"},
        {"client-certificate": "certs/cert.pem", "client-key": "certs/key.pem"},
    )
    cfg = load(str(write(tmp_path / "conf" / "config", doc)))
    login = await config.login(cfg)
    assert login.ca_path == str(certs / "ca.pem")
    assert login.certificate_path == str(certs / "cert.pem")
    assert login.private_key_path == str(certs / "key.pem")
    await ApiClient(cfg).close()  # the TLS settings load (a bad path or key would raise)


async def test_inline_keys_leave_no_file(
    tmp_path: Path, pki: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Python's ssl loads a client certificate only from a file: lightkube writes inline data to a
    private temporary file (mode 0600) that is gone as soon as the TLS settings hold it."""
    import tempfile

    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    doc = one(
        {"server": "https://api.test", "certificate-authority-data": b64(pki["ca_pem"])},
        {
            "client-certificate-data": b64(Path(pki["cert"]).read_text()),
            "client-key-data": b64(Path(pki["key"]).read_text()),
        },
    )
    api = ApiClient(load(str(write(tmp_path / "config", doc))))
    try:
        assert list(scratch.iterdir()) == []
    finally:
        await api.close()


# --- in cluster and tokens ---------------------------------------------------------------------------
async def test_in_cluster_files_and_errors(
    tmp_path: Path, pki: dict[str, Any], clean_env: pytest.MonkeyPatch
) -> None:
    sa = service_account_dir(tmp_path, pki, "first")
    with pytest.raises(ConfigError, match="not in a cluster"):
        config.in_cluster(sa)
    clean_env.setenv("KUBERNETES_SERVICE_HOST", "fd00::1")
    clean_env.setenv("KUBERNETES_SERVICE_PORT", "443")
    cfg = config.in_cluster(sa)
    assert cfg.cluster.server == "https://[fd00::1]:443" and cfg.namespace == "vmbmc"
    login = await config.login(cfg)
    assert (login.token, login.ca_path) == ("first", str(sa / "ca.crt"))
    (sa / "token").write_text("rotated")  # the kubelet rewrites the projected token
    assert await token_of(cfg) == "rotated"  # each login reads it afresh
    (sa / "token").unlink()
    with pytest.raises(ConfigError):
        config.in_cluster(sa)


async def test_token_file_wins_over_token(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("from-file\n")
    cfg = load(
        str(
            write(
                tmp_path / "config",
                one({"server": "https://x"}, {"token": "inline", "tokenFile": str(token)}),
            )
        )
    )
    assert await token_of(cfg) == "from-file"
    basic = load(
        str(write(tmp_path / "basic", one({"server": "https://x"}, {"username": "u", "password": "p"})))
    )
    login = await config.login(basic)
    assert (login.token, login.username, login.password) == (None, "u", "p")

"""Where the API server is and how to authenticate to it: a kubeconfig or the in-cluster service account.

Our own loader rather than kubernetes_asyncio's: importing that package loads its whole generated client
(~35 MiB of RSS in every kbmc pod) to read a YAML file. What it keeps, as client-go does it:

- kubeconfig files: `--kubeconfig PATH`, else the `KUBECONFIG` list (merged, the first file to set a name
  or `current-context` wins), else ~/.kube/config; `current-context` or a named context; relative paths
  resolved against the file that names them;
- cluster: `server` (http or https), `certificate-authority` (file) or `certificate-authority-data`,
  `insecure-skip-tls-verify`, `tls-server-name`;
- user: `client-certificate`/`client-key` (files) or their `-data` forms, `token`, `tokenFile` (re-read,
  so a rotated token is picked up), `username`/`password`, and `exec` credential plugins
  (`client.authentication.k8s.io/v1` and `v1beta1`: token or client certificate, cached until
  `expirationTimestamp`, run again after it or after a 401);
- in cluster: the service account's token (re-read: projected tokens rotate), CA and API address.

Not supported: `auth-provider` (removed from kubectl; an `exec` plugin replaces it), `proxy-url`,
`impersonate*` fields. They are refused with a message rather than silently ignored.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import os
import ssl
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

SERVICE_ACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")
TOKEN_REREAD_SECONDS = 60.0  # client-go re-reads token files once a minute
EXEC_TIMEOUT_SECONDS = 60.0
EXEC_API_VERSIONS = ("client.authentication.k8s.io/v1", "client.authentication.k8s.io/v1beta1")
UNSUPPORTED_USER_FIELDS = ("auth-provider", "as", "as-uid", "as-groups", "as-user-extra")


class KubeConfigError(ValueError):
    """A kubeconfig (or in-cluster environment) that cannot be used, and why."""


# --- credentials that change over time -------------------------------------------------------------
class TokenFile:
    """A bearer token read from a file, re-read at most every `period` seconds (projected service-account
    tokens and `tokenFile` tokens are rotated in place). A failed re-read keeps the last good token."""

    def __init__(self, path: str | os.PathLike[str], period: float = TOKEN_REREAD_SECONDS) -> None:
        self.path = Path(path)
        self.period = period
        self._token: str | None = None
        self._read_at = float("-inf")

    def token(self) -> str | None:
        now = time.monotonic()
        if self._token is None or now - self._read_at >= self.period:
            # A few hundred bytes from a local file (tmpfs in a pod), once a minute: not worth a thread.
            try:
                self._token = self.path.read_text().strip() or self._token
            except OSError as err:
                if self._token is None:
                    raise KubeConfigError(f"cannot read token file {self.path}: {err}") from err
                log.warning("cannot re-read token file, keeping the last token", extra={"error": str(err)})
            self._read_at = now
        return self._token

    def invalidate(self) -> bool:
        """After a 401: read the file again on next use. True: a retry may succeed."""
        self._read_at = float("-inf")
        return True


@dataclass(frozen=True)
class ExecCredential:
    """The status of an ExecCredential: a token, or a client certificate and key (PEM text)."""

    token: str | None = None
    cert_pem: str | None = None
    key_pem: str | None = None
    expires: datetime | None = None

    def expired(self, now: datetime) -> bool:
        return self.expires is not None and now >= self.expires


@dataclass
class ExecPlugin:
    """A kubeconfig `user.exec` credential plugin (client-go's exec authenticator, non-interactive)."""

    command: str
    api_version: str
    args: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    cluster_info: dict[str, Any] | None = None  # spec.cluster, when provideClusterInfo is true
    timeout: float = EXEC_TIMEOUT_SECONDS
    _cached: ExecCredential | None = field(default=None, init=False, repr=False)
    _lock: asyncio.Lock | None = field(default=None, init=False, repr=False)

    async def credential(self) -> ExecCredential:
        """The cached credential while it has not expired; else the plugin's fresh answer."""
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:  # concurrent requests run the plugin once
            if self._cached is None or self._cached.expired(datetime.now(UTC)):
                self._cached = await self._run()
            return self._cached

    def invalidate(self) -> bool:
        """After a 401: run the plugin again on next use (client-go does the same)."""
        self._cached = None
        return True

    async def _run(self) -> ExecCredential:
        spec: dict[str, Any] = {"interactive": False}
        if self.cluster_info is not None:
            spec["cluster"] = self.cluster_info
        info = {"apiVersion": self.api_version, "kind": "ExecCredential", "spec": spec}
        env = {**os.environ, **self.env, "KUBERNETES_EXEC_INFO": json.dumps(info)}
        try:
            proc = await asyncio.create_subprocess_exec(
                self.command,
                *self.args,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env=env,
            )
        except OSError as err:
            raise KubeConfigError(f"exec plugin {self.command!r}: {err}") from err
        try:
            out, err_out = await asyncio.wait_for(proc.communicate(), self.timeout)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise KubeConfigError(
                f"exec plugin {self.command!r}: no answer within {self.timeout:g} s"
            ) from None
        except asyncio.CancelledError:
            proc.kill()  # the caller gave up: do not leave the plugin running
            raise
        if proc.returncode != 0:
            detail = err_out.decode(errors="replace").strip()[:500]
            raise KubeConfigError(f"exec plugin {self.command!r} exited {proc.returncode}: {detail}")
        return parse_exec_credential(out, self.api_version, self.command)


def parse_exec_credential(raw: bytes, api_version: str, command: str = "plugin") -> ExecCredential:
    """Validate an ExecCredential as client-go does: same apiVersion, a status with a token or with both
    a client certificate and key, an RFC 3339 expirationTimestamp if any."""
    try:
        doc = json.loads(raw)
    except ValueError as err:
        raise KubeConfigError(f"exec plugin {command!r}: output is not JSON: {err}") from err
    if not isinstance(doc, dict) or doc.get("kind") != "ExecCredential":
        raise KubeConfigError(f"exec plugin {command!r}: output is not an ExecCredential")
    if doc.get("apiVersion") != api_version:
        raise KubeConfigError(
            f"exec plugin {command!r}: apiVersion {doc.get('apiVersion')!r}, kubeconfig: {api_version!r}"
        )
    status = doc.get("status")
    if not isinstance(status, dict):
        raise KubeConfigError(f"exec plugin {command!r}: ExecCredential without status")
    token = status.get("token") or None
    cert, key = status.get("clientCertificateData") or None, status.get("clientKeyData") or None
    if bool(cert) != bool(key):
        raise KubeConfigError(f"exec plugin {command!r}: clientCertificateData and clientKeyData go together")
    if not token and not cert:
        raise KubeConfigError(f"exec plugin {command!r}: ExecCredential status holds no token or certificate")
    expires = None
    if status.get("expirationTimestamp"):
        try:
            expires = datetime.fromisoformat(str(status["expirationTimestamp"]))
        except ValueError as err:
            raise KubeConfigError(f"exec plugin {command!r}: bad expirationTimestamp: {err}") from err
        if expires.tzinfo is None:
            expires = expires.replace(tzinfo=UTC)
    return ExecCredential(token=token, cert_pem=cert, key_pem=key, expires=expires)


# --- the loaded configuration ----------------------------------------------------------------------
@dataclass
class ClusterConfig:
    """Everything a client needs to reach and authenticate to one API server."""

    server: str
    ca_file: str | None = None
    ca_pem: str | None = None
    insecure: bool = False
    tls_server_name: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    cert_pem: str | None = None
    key_pem: str | None = None
    token: str | None = None
    token_file: TokenFile | None = None
    username: str | None = None
    password: str | None = None
    exec_plugin: ExecPlugin | None = None

    @property
    def https(self) -> bool:
        return self.server.startswith("https://")

    async def credentials(self) -> tuple[str | None, ExecCredential | None]:
        """(Authorization header or None, the exec plugin's credential when there is a plugin)."""
        cred = await self.exec_plugin.credential() if self.exec_plugin is not None else None
        if cred is not None and cred.token:
            return f"Bearer {cred.token}", cred
        token = self.token_file.token() if self.token_file is not None else None
        if token or self.token:
            return f"Bearer {token or self.token}", cred
        if self.username and self.password:
            basic = base64.b64encode(f"{self.username}:{self.password}".encode()).decode()
            return f"Basic {basic}", cred
        return None, cred

    def unauthorized(self) -> bool:
        """The server answered 401: forget refreshable credentials. True when a retry may succeed."""
        refreshed = False
        for source in (self.exec_plugin, self.token_file):
            if source is not None:
                refreshed = source.invalidate() or refreshed
        return refreshed

    def ssl_context(self, exec_cred: ExecCredential | None = None) -> ssl.SSLContext | None:
        """TLS settings for an https server (None for http): the cluster's CA only when one is given
        (loading the system's CA store costs memory and trusts more than the cluster), the client
        certificate from the kubeconfig or the exec plugin."""
        if not self.https:
            return None
        if self.insecure:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        elif self.ca_file or self.ca_pem:
            ctx = ssl.create_default_context(cafile=self.ca_file, cadata=self.ca_pem)
        else:
            ctx = ssl.create_default_context()
        cert_pem, key_pem = self.cert_pem, self.key_pem
        if exec_cred is not None and exec_cred.cert_pem:
            cert_pem, key_pem = exec_cred.cert_pem, exec_cred.key_pem
        if cert_pem and key_pem:
            _load_cert_chain_pem(ctx, cert_pem, key_pem)
        elif self.cert_file and self.key_file:
            ctx.load_cert_chain(self.cert_file, self.key_file)
        return ctx


def _load_cert_chain_pem(ctx: ssl.SSLContext, cert_pem: str, key_pem: str) -> None:
    """ssl loads certificates only from files: write them to a private directory, load, delete."""
    with tempfile.TemporaryDirectory(prefix="vmbmc-kube-") as tmp:  # mode 0700
        cert, key = Path(tmp) / "cert.pem", Path(tmp) / "key.pem"
        cert.write_text(cert_pem)
        fd = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(key_pem)
        ctx.load_cert_chain(cert, key)


# --- loading ---------------------------------------------------------------------------------------
def load(kubeconfig: str | None = None, *, context: str | None = None) -> ClusterConfig:
    """A kubeconfig file if given; else the in-cluster service account; else KUBECONFIG / ~/.kube/config."""
    if kubeconfig:
        return from_kubeconfig([Path(kubeconfig)], context=context, required=True)
    if os.environ.get("KUBERNETES_SERVICE_HOST"):
        return in_cluster()
    paths = [Path(p) for p in os.environ.get("KUBECONFIG", "").split(os.pathsep) if p]
    return from_kubeconfig(paths or [Path.home() / ".kube" / "config"], context=context, required=False)


def in_cluster(
    environ: Mapping[str, str] | None = None,
    directory: str | os.PathLike[str] = SERVICE_ACCOUNT_DIR,
    token_period: float = TOKEN_REREAD_SECONDS,
) -> ClusterConfig:
    """The pod's service account: API address from the environment, token and CA from `directory`."""
    env = os.environ if environ is None else environ
    host, port = env.get("KUBERNETES_SERVICE_HOST", ""), env.get("KUBERNETES_SERVICE_PORT", "")
    if not host or not port:
        raise KubeConfigError("not in a cluster: KUBERNETES_SERVICE_HOST or KUBERNETES_SERVICE_PORT unset")
    if ":" in host:
        host = f"[{host}]"
    base = Path(directory)
    ca = base / "ca.crt"
    if not ca.is_file():
        raise KubeConfigError(f"in-cluster CA {ca} not found")
    tokens = TokenFile(base / "token", period=token_period)
    tokens.token()  # fail now, not on the first request, if the token is missing
    return ClusterConfig(server=f"https://{host}:{port}", ca_file=str(ca), token_file=tokens)


@dataclass
class _Named:
    value: dict[str, Any]
    base: Path  # directory of the file that defined it, for relative paths


def _read_kubeconfig(path: Path) -> dict[str, Any]:
    import yaml  # here: in a pod (in-cluster) no YAML is read, and PyYAML costs ~1.4 MiB

    try:
        doc = yaml.safe_load(path.read_text())
    except OSError as err:
        raise KubeConfigError(f"cannot read kubeconfig {path}: {err}") from err
    except yaml.YAMLError as err:
        raise KubeConfigError(f"kubeconfig {path} is not YAML: {err}") from err
    if doc is None:
        return {}
    if not isinstance(doc, dict):
        raise KubeConfigError(f"kubeconfig {path} is not a mapping")
    return doc


def from_kubeconfig(
    paths: list[Path],
    *,
    context: str | None = None,
    required: bool = True,
    token_period: float = TOKEN_REREAD_SECONDS,
) -> ClusterConfig:
    """Merge kubeconfig files as kubectl does (first definition of a name wins) and resolve one context."""
    sections: dict[str, dict[str, _Named]] = {"clusters": {}, "users": {}, "contexts": {}}
    current = ""
    found = False
    for path in paths:
        if not path.is_file():
            if required:
                raise KubeConfigError(f"kubeconfig {path} not found")
            continue  # KUBECONFIG may name files that do not exist yet (kubectl ignores them)
        found = True
        doc = _read_kubeconfig(path)
        base = path.resolve().parent
        current = current or str(doc.get("current-context") or "")
        for section, inner in (("clusters", "cluster"), ("users", "user"), ("contexts", "context")):
            for item in doc.get(section) or []:
                if isinstance(item, dict) and item.get("name"):
                    sections[section].setdefault(str(item["name"]), _Named(item.get(inner) or {}, base))
    if not found:
        raise KubeConfigError(
            f"no kubeconfig: none of {', '.join(map(str, paths))} exists, and not in a cluster"
        )
    name = context or current
    if not name:
        raise KubeConfigError("kubeconfig has no current-context; name a context")
    ctx = sections["contexts"].get(name)
    if ctx is None:
        raise KubeConfigError(f"context {name!r} not found in the kubeconfig")
    cluster = sections["clusters"].get(str(ctx.value.get("cluster") or ""))
    if cluster is None:
        raise KubeConfigError(f"context {name!r}: cluster {ctx.value.get('cluster')!r} not found")
    user_name = str(ctx.value.get("user") or "")
    user = sections["users"].get(user_name) if user_name else _Named({}, cluster.base)
    if user is None:
        raise KubeConfigError(f"context {name!r}: user {user_name!r} not found")
    return _build(cluster, user, token_period)


def _path(value: Any, base: Path) -> str | None:
    if not value:
        return None
    p = Path(os.path.expanduser(str(value)))
    return str(p if p.is_absolute() else base / p)


def _pem(value: Any, what: str) -> str | None:
    if not value:
        return None
    try:
        return base64.b64decode(str(value), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError) as err:
        raise KubeConfigError(f"{what} is not base64-encoded PEM: {err}") from err


def _build(cluster_entry: _Named, user_entry: _Named, token_period: float) -> ClusterConfig:
    c, u = cluster_entry.value, user_entry.value
    server = str(c.get("server") or "").rstrip("/")
    if not server.startswith(("https://", "http://")):
        raise KubeConfigError(f"cluster server {server!r} is not an http(s) URL")
    if c.get("proxy-url"):
        raise KubeConfigError("cluster proxy-url is not supported")
    for key in UNSUPPORTED_USER_FIELDS:
        if u.get(key):
            hint = "; use an exec credential plugin" if key == "auth-provider" else ""
            raise KubeConfigError(f"kubeconfig user field {key!r} is not supported{hint}")
    ca_file, ca_pem = (
        _path(c.get("certificate-authority"), cluster_entry.base),
        _pem(c.get("certificate-authority-data"), "certificate-authority-data"),
    )
    insecure = bool(c.get("insecure-skip-tls-verify"))
    if insecure and (ca_file or ca_pem):
        # client-go refuses the combination: which one was meant is unknown.
        raise KubeConfigError("certificate-authority and insecure-skip-tls-verify cannot both be set")
    cfg = ClusterConfig(
        server=server,
        ca_file=None if ca_pem else ca_file,  # the -data form wins, as in client-go
        ca_pem=ca_pem,
        insecure=insecure,
        tls_server_name=str(c.get("tls-server-name") or "") or None,
        cert_file=_path(u.get("client-certificate"), user_entry.base),
        key_file=_path(u.get("client-key"), user_entry.base),
        cert_pem=_pem(u.get("client-certificate-data"), "client-certificate-data"),
        key_pem=_pem(u.get("client-key-data"), "client-key-data"),
        token=str(u.get("token") or "") or None,
        username=str(u.get("username") or "") or None,
        password=str(u.get("password") or "") or None,
    )
    token_file = _path(u.get("tokenFile"), user_entry.base)
    if token_file:
        # client-go: the file's content, re-read periodically, wins over an inline token.
        cfg.token_file = TokenFile(token_file, period=token_period)
    if u.get("exec"):
        cfg.exec_plugin = _exec_plugin(u["exec"], user_entry.base, cfg, c)
    if bool(cfg.cert_pem or cfg.cert_file) != bool(cfg.key_pem or cfg.key_file):
        raise KubeConfigError("client-certificate and client-key go together")
    return cfg


def _exec_plugin(spec: Any, base: Path, cfg: ClusterConfig, cluster: dict[str, Any]) -> ExecPlugin:
    if not isinstance(spec, dict) or not spec.get("command"):
        raise KubeConfigError("exec plugin without a command")
    api_version = str(spec.get("apiVersion") or "")
    if api_version not in EXEC_API_VERSIONS:
        raise KubeConfigError(
            f"exec plugin apiVersion {api_version!r} is not one of {', '.join(EXEC_API_VERSIONS)}"
        )
    if spec.get("interactiveMode") == "Always":
        raise KubeConfigError("exec plugin needs an interactive terminal (interactiveMode: Always)")
    command = str(spec["command"])
    if os.sep in command and not os.path.isabs(command):
        command = str(base / command)  # a relative path names a file beside the kubeconfig; a bare name: PATH
    env = {}
    for item in spec.get("env") or []:
        if not isinstance(item, dict) or "name" not in item:
            raise KubeConfigError("exec plugin env entries need a name and a value")
        env[str(item["name"])] = str(item.get("value") or "")
    info = None
    if spec.get("provideClusterInfo"):
        info = {"server": cfg.server, "insecure-skip-tls-verify": cfg.insecure}
        if cfg.tls_server_name:
            info["tls-server-name"] = cfg.tls_server_name
        ca = cfg.ca_pem or (Path(cfg.ca_file).read_text() if cfg.ca_file else None)
        if ca:
            info["certificate-authority-data"] = base64.b64encode(ca.encode()).decode()
        extension = next(
            (
                e.get("extension")
                for e in cluster.get("extensions") or []
                if isinstance(e, dict) and e.get("name") == "client.authentication.k8s.io/exec"
            ),
            None,
        )
        if extension is not None:
            info["config"] = extension
    return ExecPlugin(
        command=command,
        api_version=api_version,
        args=[str(a) for a in spec.get("args") or []],
        env=env,
        cluster_info=info,
    )

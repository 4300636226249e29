"""Where the API server is and who we are: lightkube's kubeconfig and in-cluster loaders, chosen in
controller-runtime's order, and the login that kopf needs derived from the same configuration.

What the loading itself supports is lightkube's (docs/k8s-client.md, "Kubeconfig"); this module only
picks the source, merges a KUBECONFIG list and turns lightkube's failures into ConfigError.
"""

from __future__ import annotations

import base64
import os
from dataclasses import dataclass
from pathlib import Path

import httpx2
import msgspec
import yaml
from lightkube import ConfigError, KubeConfig, SingleConfig
from lightkube.config.client_adapter import user_auth
from lightkube.config.kubeconfig import DEFAULT_KUBECONFIG, SERVICE_ACCOUNT

__all__ = ["ConfigError", "Login", "SingleConfig", "in_cluster", "load", "login", "merged", "read", "select"]

SERVICE_ACCOUNT_DIR = SERVICE_ACCOUNT  # where a pod's token, CA and namespace are mounted


def load(kubeconfig: str | None = None, *, context: str | None = None) -> SingleConfig:
    """`kubeconfig` if given; else the `KUBECONFIG` list; else the pod's service account; else
    ~/.kube/config. KUBECONFIG before in-cluster, as client-go's callers (controller-runtime, kubectl)
    do: a process in a pod that is told of a kubeconfig uses it."""
    if kubeconfig:
        return select(read(kubeconfig), context)
    paths = [p for p in os.environ.get("KUBECONFIG", "").split(os.pathsep) if p]
    if paths:
        return select(merged(paths), context)
    if os.environ.get("KUBERNETES_SERVICE_HOST"):
        return in_cluster()
    return select(read(DEFAULT_KUBECONFIG), context)


def in_cluster(directory: str | os.PathLike[str] | None = None) -> SingleConfig:
    """The pod's service account (token re-read after a 401, so kubelet's rotation needs no restart)."""
    if not os.environ.get("KUBERNETES_SERVICE_HOST") or not os.environ.get("KUBERNETES_SERVICE_PORT"):
        raise ConfigError("not in a cluster: KUBERNETES_SERVICE_HOST or KUBERNETES_SERVICE_PORT unset")
    return select(KubeConfig.from_service_account(directory or SERVICE_ACCOUNT_DIR), None)


def read(path: str | os.PathLike[str]) -> KubeConfig:
    """One kubeconfig file, lightkube's parse; a file that is not a kubeconfig is a ConfigError too."""
    try:
        return KubeConfig.from_file(path)
    except (yaml.YAMLError, ValueError, KeyError, TypeError) as err:  # YAML, or not the expected shape
        raise ConfigError(f"kubeconfig {path} cannot be read: {type(err).__name__}: {err}") from err


def merged(paths: list[str]) -> KubeConfig:
    """Several kubeconfig files as one, as kubectl merges KUBECONFIG: the first file to name a cluster,
    user or context, or to set `current-context`, wins; files that do not exist are skipped. Relative
    paths resolve against the first file's directory (lightkube keeps one per configuration)."""
    found = [read(p) for p in paths if Path(p).expanduser().is_file()]
    if not found:
        raise ConfigError(f"no kubeconfig: none of {', '.join(paths)} exists")
    if len(found) == 1:
        return found[0]
    first_wins = list(reversed(found))
    return KubeConfig(
        clusters={k: v for cfg in first_wins for k, v in cfg.clusters.items()},
        contexts={k: v for cfg in first_wins for k, v in cfg.contexts.items()},
        users={k: v for cfg in first_wins for k, v in cfg.users.items()},
        current_context=next((cfg.current_context for cfg in found if cfg.current_context), None),
        fname=found[0].fname,
    )


def select(config: KubeConfig, context: str | None) -> SingleConfig:
    try:
        single = config.get(context)
    except KeyError as err:  # lightkube indexes the context's cluster and user directly
        raise ConfigError(
            f"context {context or config.current_context!r} names {err} that is not defined"
        ) from err
    assert single is not None  # get() without a default raises rather than return None
    user = single.user
    if user is not None and user.token_file and single.fname is not None:
        # lightkube resolves relative certificate paths against the kubeconfig, not tokenFile: as kubectl
        user = msgspec.structs.replace(
            user, token_file=str(single.abs_file(os.path.expanduser(user.token_file)))
        )
        single = single._replace(user=user)
    return single


@dataclass(frozen=True)
class Login:
    """Everything kopf's login takes (its ConnectionInfo's names), from the product's configuration."""

    server: str
    ca_path: str | None = None
    ca_data: bytes | None = None
    insecure: bool = False
    token: str | None = None
    username: str | None = None
    password: str | None = None
    certificate_path: str | None = None
    certificate_data: bytes | None = None
    private_key_path: str | None = None
    private_key_data: bytes | None = None


async def login(cfg: SingleConfig) -> Login:
    """The connection and a fresh credential: lightkube's auth is asked for an Authorization header
    now (a token file read again, an exec plugin run again), as kopf logs in again after a 401."""
    cluster, user = cfg.cluster, cfg.user
    token = None
    auth = user_auth(user)
    if auth is not None and not isinstance(auth, httpx2.BasicAuth):
        flow = auth.async_auth_flow(httpx2.Request("GET", cluster.server))
        try:
            authorization = (await anext(flow)).headers.get("Authorization", "")
        finally:
            await flow.aclose()
        scheme, _, token = authorization.partition(" ")
        token = token if scheme == "Bearer" else None
    basic = user is not None and isinstance(auth, httpx2.BasicAuth)
    return Login(
        server=cluster.server,
        ca_path=str(cfg.abs_file(cluster.certificate_auth)) if cluster.certificate_auth else None,
        ca_data=_decoded(cluster.certificate_auth_data),
        insecure=cluster.insecure,
        token=token or None,
        username=user.username if basic and user else None,
        password=user.password if basic and user else None,
        certificate_path=str(cfg.abs_file(user.client_cert)) if user and user.client_cert else None,
        certificate_data=_decoded(user.client_cert_data if user else None),
        private_key_path=str(cfg.abs_file(user.client_key)) if user and user.client_key else None,
        private_key_data=_decoded(user.client_key_data if user else None),
    )


def _decoded(data: str | None) -> bytes | None:
    return base64.b64decode(data) if data else None

"""A small async Kubernetes REST client on aiohttp, configured by kubernetes_asyncio.

Why not kubernetes_asyncio's generated API classes: the back end needs KubeVirt's subresource group
(`subresources.kubevirt.io`, not in the generated client), exact Content-Types for JSON Patch and merge
patch on custom resources, and a watch stream whose 410 Gone and bookmarks it handles itself. So
kubernetes_asyncio does what it is good at, reading a kubeconfig or the in-cluster service account
(including token refresh), and requests go through one aiohttp session.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import ssl
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
from kubernetes_asyncio import config as k8s_config
from kubernetes_asyncio.client import Configuration

log = logging.getLogger(__name__)

JSON = "application/json"
MERGE_PATCH = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"

WATCH_OPEN = "_OPEN"
RETRY_DELAYS = (0.1, 0.3, 0.9)  # backoff between attempts on a 5xx or a connection error


class ApiError(Exception):
    """An answer of the API server other than 2xx (code 0: no answer at all)."""

    def __init__(self, code: int, reason: str, message: str, status: dict[str, Any] | None = None) -> None:
        super().__init__(f"{code} {reason}: {message}")
        self.code = code
        self.reason = reason
        self.message = message
        self.status = status or {}

    @property
    def retryable(self) -> bool:
        return self.code == 0 or self.code >= 500 or self.code == 429


async def load_configuration(kubeconfig: str | None = None) -> Configuration:
    """A kubeconfig file if given; else the in-cluster service account; else KUBECONFIG / ~/.kube/config."""
    cfg = Configuration()
    if kubeconfig:
        await k8s_config.load_kube_config(config_file=kubeconfig, client_configuration=cfg)
    elif os.environ.get("KUBERNETES_SERVICE_HOST"):
        k8s_config.load_incluster_config(client_configuration=cfg)
    else:
        await k8s_config.load_kube_config(client_configuration=cfg)
    return cfg


def _ssl_context(cfg: Configuration) -> ssl.SSLContext | bool:
    if not str(cfg.host).startswith("https"):
        return False
    ctx = ssl.create_default_context(cafile=cfg.ssl_ca_cert or None)
    if cfg.cert_file:
        ctx.load_cert_chain(cfg.cert_file, cfg.key_file)
    if not cfg.verify_ssl:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


class ApiClient:
    def __init__(self, cfg: Configuration) -> None:
        self.cfg = cfg
        self.host = str(cfg.host).rstrip("/")
        self._ssl = _ssl_context(cfg)
        self._session: aiohttp.ClientSession | None = None

    @classmethod
    async def connect(cls, kubeconfig: str | None = None) -> ApiClient:
        return cls(await load_configuration(kubeconfig))

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(ssl=self._ssl, limit=64),
                timeout=aiohttp.ClientTimeout(total=None, connect=5, sock_read=None),
            )
        return self._session

    async def _headers(self, content_type: str | None) -> dict[str, str]:
        headers = {"Accept": JSON}
        if content_type:
            headers["Content-Type"] = content_type
        token = await self.cfg.get_api_key_with_prefix("BearerToken")
        if token:
            headers["Authorization"] = token
        elif self.cfg.username:
            headers["Authorization"] = self.cfg.get_basic_auth_token()
        return headers

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, str] | None = None,
        body: Any = None,
        content_type: str | None = None,
        retry: bool = True,
        timeout: float = 10.0,
    ) -> Any:
        """One API call; JSON answer (None for an empty body). Raises ApiError.

        Retries 5xx, 429 and connection errors (RETRY_DELAYS) when `retry`: every call the back end
        makes is idempotent or guarded (named creates, resourceVersion tests, KubeVirt's own checks).
        """
        data = None if body is None else json.dumps(body).encode()
        if data is not None and content_type is None:
            content_type = JSON
        attempts = len(RETRY_DELAYS) + 1 if retry else 1
        for attempt in range(attempts):
            try:
                return await self._once(method, path, params, data, content_type, timeout)
            except ApiError as err:
                if not err.retryable or attempt == attempts - 1:
                    raise
                log.info(
                    "API call failed, retrying",
                    extra={"method": method, "path": path, "code": err.code, "attempt": attempt + 1},
                )
                await asyncio.sleep(RETRY_DELAYS[attempt])
        raise AssertionError("unreachable")

    async def _once(
        self,
        method: str,
        path: str,
        params: dict[str, str] | None,
        data: bytes | None,
        content_type: str | None,
        timeout: float,
    ) -> Any:
        try:
            async with self._http().request(
                method,
                self.host + path,
                params=params,
                data=data,
                headers=await self._headers(content_type),
                timeout=aiohttp.ClientTimeout(total=timeout),
            ) as resp:
                raw = await resp.read()
                if resp.status >= 300:
                    raise _error(resp.status, raw)
                return json.loads(raw) if raw.strip() else None
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise ApiError(0, "ConnectionError", f"{type(exc).__name__}: {exc}".rstrip(": ")) from exc

    async def watch(self, path: str, params: dict[str, str]) -> AsyncIterator[dict[str, Any]]:
        """Stream watch events ({"type", "object"}) until the server ends the watch. Raises ApiError.

        The first item is {"type": WATCH_OPEN}, once the server has accepted the watch."""
        query = {**params, "watch": "true"}
        try:
            async with self._http().get(
                self.host + path,
                params=query,
                headers=await self._headers(None),
                timeout=aiohttp.ClientTimeout(total=None, connect=5, sock_read=None),
            ) as resp:
                if resp.status >= 300:
                    raise _error(resp.status, await resp.read())
                yield {"type": WATCH_OPEN}  # tells the caller the stream is established
                # Split lines ourselves: aiohttp's readline refuses lines over 128 KiB (big objects).
                buf = b""
                async for chunk in resp.content.iter_any():
                    buf += chunk
                    *lines, buf = buf.split(b"\n")
                    for line in lines:
                        if line.strip():
                            yield json.loads(line)
        except (TimeoutError, aiohttp.ClientError, OSError, json.JSONDecodeError) as exc:
            raise ApiError(0, "ConnectionError", f"{type(exc).__name__}: {exc}".rstrip(": ")) from exc

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()


def _error(code: int, raw: bytes) -> ApiError:
    try:
        status = json.loads(raw)
    except ValueError:
        status = {}
    if not isinstance(status, dict):
        status = {}
    message = str(status.get("message") or raw[:200].decode(errors="replace") or f"HTTP {code}")
    return ApiError(code, str(status.get("reason") or ""), message, status)

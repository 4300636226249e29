"""A small async Kubernetes REST client: our HTTP/1.1 client (vmbmc.k8s.http) configured by our
kubeconfig loader (vmbmc.k8s.kubeconfig).

Why not a generated Kubernetes client: the back end needs KubeVirt's subresource group
(`subresources.kubevirt.io`, not in generated clients), exact Content-Types for JSON Patch and merge
patch on custom resources, and a watch stream whose 410 Gone and bookmarks it handles itself; and the
kbmc runs once per VM, so what it imports is paid once per VM (docs/kbmc.md, "Memory").
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlencode

from vmbmc.k8s.http import ConnectError, HttpClient, HttpError
from vmbmc.k8s.kubeconfig import ClusterConfig, ExecCredential, KubeConfigError, load
from vmbmc.k8s.websocket import WebSocket, WebSocketError, check_handshake, handshake_headers

log = logging.getLogger(__name__)

JSON = "application/json"
MERGE_PATCH = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"

WATCH_OPEN = "_OPEN"
NOT_SENT = "NotConnected"  # ApiError.reason of a request that never left this process
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


async def load_configuration(kubeconfig: str | None = None, context: str | None = None) -> ClusterConfig:
    """A kubeconfig file if given; else the in-cluster service account; else KUBECONFIG / ~/.kube/config."""
    return load(kubeconfig, context=context)


class ApiClient:
    def __init__(self, cfg: ClusterConfig, *, wait_in_timeout: bool = True) -> None:
        """`wait_in_timeout`: a call's timeout counts its wait for a free request slot too (the kbmc:
        nothing may be sent after a power call's bound); a call that runs out waiting was never sent.
        The controller's reconciles set it False: in a burst hundreds of them wait their turn, and
        timing out there would only send them to the back of the queue again."""
        self.cfg = cfg
        self.wait_in_timeout = wait_in_timeout
        self.host = cfg.server
        self._http = HttpClient(cfg.server, cfg.ssl_context(), cfg.tls_server_name)
        self._exec_cert: str | None = None  # the exec plugin's client certificate the TLS settings hold

    @classmethod
    async def connect(
        cls, kubeconfig: str | None = None, context: str | None = None, *, wait_in_timeout: bool = True
    ) -> ApiClient:
        return cls(await load_configuration(kubeconfig, context), wait_in_timeout=wait_in_timeout)

    def lane(self) -> ApiClient:
        """A client of the same cluster and credentials with connections and an in-flight limit of its
        own. Calls wait for a free slot in the order they were made (vmbmc.k8s.http), so work that
        must not queue behind a burst of other calls gets a lane of its own. Close it separately."""
        return ApiClient(self.cfg, wait_in_timeout=self.wait_in_timeout)

    async def _headers(self, content_type: str | None) -> dict[str, str]:
        headers = {"Accept": JSON}
        if content_type:
            headers["Content-Type"] = content_type
        try:
            authorization, cred = await self.cfg.credentials()
        except KubeConfigError as err:
            raise ApiError(0, "Unauthorized", str(err)) from err
        if cred is not None:
            self._follow_exec_certificate(cred)
        if authorization:
            headers["Authorization"] = authorization
        return headers

    def _follow_exec_certificate(self, cred: ExecCredential) -> None:
        """An exec plugin that answers with a client certificate may renew it: new connections use it."""
        if cred.cert_pem and cred.cert_pem != self._exec_cert:
            self._http.set_ssl_context(self.cfg.ssl_context(cred))  # type: ignore[arg-type]
            self._exec_cert = cred.cert_pem

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
        target = path + ("?" + urlencode(params) if params else "")
        for attempt in (1, 2):
            headers = await self._headers(content_type)  # outside the timeout: an exec plugin has its own
            try:
                resp = await self._http.request(
                    method, target, headers, data, timeout=timeout, wait_in_timeout=self.wait_in_timeout
                )
            except HttpError as exc:
                # NOT_SENT: no connection, so the server never saw the request (a call may be sent again)
                reason = NOT_SENT if isinstance(exc, ConnectError) else "ConnectionError"
                raise ApiError(0, reason, f"{type(exc).__name__}: {exc}".rstrip(": ")) from exc
            # 401: a rotated token or an expired exec credential; fetch it again and retry once.
            if resp.status == 401 and attempt == 1 and self.cfg.unauthorized():
                continue
            if resp.status >= 300:
                raise _error(resp.status, resp.body)
            return json.loads(resp.body) if resp.body.strip() else None
        raise AssertionError("unreachable")

    async def watch(self, path: str, params: dict[str, str]) -> AsyncIterator[dict[str, Any]]:
        """Stream watch events ({"type", "object"}) until the server ends the watch. Raises ApiError.

        The first item is {"type": WATCH_OPEN}, once the server has accepted the watch."""
        target = path + "?" + urlencode({**params, "watch": "true"})
        try:
            async with self._http.stream(target, await self._headers(None)) as (resp, body):
                if resp.status >= 300:
                    if resp.status == 401:
                        self.cfg.unauthorized()  # the caller's next attempt fetches credentials again
                    raise _error(resp.status, b"".join([chunk async for chunk in body]))
                yield {"type": WATCH_OPEN}  # tells the caller the stream is established
                buf = b""
                async for chunk in body:
                    buf += chunk
                    *lines, buf = buf.split(b"\n")
                    for line in lines:
                        if line.strip():
                            yield json.loads(line)
        except (TimeoutError, HttpError, json.JSONDecodeError) as exc:
            raise ApiError(0, "ConnectionError", f"{type(exc).__name__}: {exc}".rstrip(": ")) from exc

    async def websocket(self, path: str, subprotocol: str, timeout: float = 10.0) -> WebSocket:
        """Open a WebSocket subresource (the VMI console). Raises ApiError (the refusal's code)."""
        ws_headers, accept = handshake_headers(subprotocol)
        headers = {**await self._headers(None), **ws_headers}
        try:
            async with asyncio.timeout(timeout):
                resp, reader, writer = await self._http.upgrade(path, headers)
        except (TimeoutError, HttpError) as exc:
            raise ApiError(0, "ConnectionError", f"{type(exc).__name__}: {exc}".rstrip(": ")) from exc
        if resp.status != 101 or reader is None or writer is None:
            if resp.status == 401:
                self.cfg.unauthorized()
            raise _error(resp.status, resp.body)
        try:
            check_handshake(resp.headers, accept, subprotocol)
        except WebSocketError as exc:
            writer.close()
            raise ApiError(0, "ConnectionError", str(exc)) from exc
        return WebSocket(reader, writer)

    async def close(self) -> None:
        await self._http.close()


def _error(code: int, raw: bytes) -> ApiError:
    try:
        status = json.loads(raw)
    except ValueError:
        status = {}
    if not isinstance(status, dict):
        status = {}
    message = str(status.get("message") or raw[:200].decode(errors="replace") or f"HTTP {code}")
    return ApiError(code, str(status.get("reason") or ""), message, status)

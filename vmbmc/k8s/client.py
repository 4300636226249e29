"""The product's Kubernetes API client: lightkube's configuration (vmbmc.k8s.config: kubeconfig and
in-cluster loading, credentials, the cluster's TLS context) on aiohttp's transport (its connection pool,
timeouts, proxies from the environment, streamed responses and WebSocket client).

Why aiohttp rather than lightkube's own httpx2 client: measured CPU per call (docs/k8s-client.md). kopf
and the Redfish event poster use aiohttp already. Why raw paths rather than lightkube's typed resources:
the back end needs KubeVirt's subresource group (`subresources.kubevirt.io`, not in generated models),
exact Content-Types for JSON Patch and merge patch on custom resources, and a watch stream whose 410 Gone
and bookmarks the informer handles itself.

Exactly once (docs/k8s-client.md): a request that may have reached the server is sent again only when
it is idempotent (`idempotent()`); one that never left this process is reported NOT_SENT and may be sent
again.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import ssl
import urllib.parse
import urllib.request
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import aiohttp
import httpx2
from lightkube import ConfigError, SingleConfig
from lightkube.config.client_adapter import user_auth, verify_cluster
from lightkube.config.models import User

from vmbmc.k8s import config

log = logging.getLogger(__name__)

JSON = "application/json"
MERGE_PATCH = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"

WATCH_OPEN = "_OPEN"
NOT_SENT = "NotConnected"  # ApiError.reason of a request that never left this process
RETRY_DELAYS = (0.1, 0.3, 0.9)  # backoff between attempts on a 5xx or a connection error

MAX_REQUESTS = 64  # requests in flight per client (lane); the rest wait their turn, in order
CONNECT_TIMEOUT = 5.0
KEEPALIVE_EXPIRY = 30.0  # idle pooled connections are closed after this (the API server keeps them longer)
WATCH_READ_SLACK = 30.0  # a watch silent this long past its timeoutSeconds is a dead connection
WEBSOCKET_MAX_MESSAGE = 1 << 20


@dataclass(frozen=True)
class _Call:
    method: str
    path: str
    params: dict[str, str] | None
    data: bytes | None
    content_type: str | None
    timeout: float
    idempotent: bool


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


def idempotent(method: str, body: Any) -> bool:
    """May this call be sent again after it may have reached the server? Reads, writes guarded by
    `resourceVersion` (a second one is refused with 409/422 rather than applied twice) and deletes with
    preconditions. Never KubeVirt's subresources (start, stop, restart, pause, unpause) nor a create."""
    if method in ("GET", "HEAD"):
        return True
    if method in ("PUT", "PATCH") and isinstance(body, dict):
        return bool((body.get("metadata") or {}).get("resourceVersion"))
    if method == "PATCH" and isinstance(body, list):
        return any(
            isinstance(op, dict) and op.get("op") == "test" and op.get("path") == "/metadata/resourceVersion"
            for op in body
        )
    if method == "DELETE" and isinstance(body, dict):
        return bool(body.get("preconditions"))
    return False


async def load_configuration(kubeconfig: str | None = None, context: str | None = None) -> SingleConfig:
    """--kubeconfig PATH; else KUBECONFIG; else the in-cluster service account; else ~/.kube/config."""
    return config.load(kubeconfig, context=context)


class ApiClient:
    def __init__(
        self,
        cfg: SingleConfig,
        *,
        wait_in_timeout: bool = True,
        auth: httpx2.Auth | None = None,
        verify: ssl.SSLContext | None = None,
    ) -> None:
        """`wait_in_timeout`: a call's timeout counts its wait for a free request slot too (the kbmc:
        nothing may be sent after a power call's bound); a call that runs out waiting was never sent.
        The controller's reconciles set it False: in a burst hundreds of them wait their turn, and
        timing out there would only send them to the back of the queue again.
        `auth` and `verify` are shared by a lane with the client it came from."""
        self.cfg = cfg
        self.wait_in_timeout = wait_in_timeout
        self.host = cfg.cluster.server
        self._auth = auth if auth is not None else user_auth(cfg.user)
        self._credentials = _Credentials(self._auth, self.host)
        if verify is None and self.host.startswith("https://"):
            verify = verify_cluster(cfg.cluster, cfg.user or User(), cfg.abs_file)
        self._verify = verify
        # MAX_REQUESTS in flight, waiting beyond that in a first-come-first-served semaphore, over
        # kept-alive connections; watches and WebSockets last and are many (a shared kbmc holds three
        # per BMC): a session of their own, one connection each. Sessions are made on the loop.
        self._slots = asyncio.Semaphore(MAX_REQUESTS)
        self._calls: aiohttp.ClientSession | None = None
        self._streams: aiohttp.ClientSession | None = None

    @classmethod
    async def connect(
        cls, kubeconfig: str | None = None, context: str | None = None, *, wait_in_timeout: bool = True
    ) -> ApiClient:
        try:
            cfg = await load_configuration(kubeconfig, context)
        except ConfigError as err:
            raise ApiError(0, NOT_SENT, f"kubeconfig: {err}") from err
        return cls(cfg, wait_in_timeout=wait_in_timeout)

    def lane(self) -> ApiClient:
        """A client of the same cluster and credentials with a connection pool and in-flight limit of
        its own. Calls wait for a free slot in the order they were made, so work that must not queue
        behind a burst of other calls gets a lane of its own. Close it separately."""
        return ApiClient(self.cfg, wait_in_timeout=self.wait_in_timeout, auth=self._auth, verify=self._verify)

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

        With `retry`, a call that was not sent, was refused with 429, or is idempotent is tried again
        (RETRY_DELAYS) after a 5xx, 429 or connection error; any other call is sent at most once.
        """
        data = None if body is None else json.dumps(body).encode()
        if data is not None and content_type is None:
            content_type = JSON
        call = _Call(method, path, params, data, content_type, timeout, idempotent(method, body))
        attempts = len(RETRY_DELAYS) + 1 if retry else 1
        for attempt in range(attempts):
            try:
                return await self._once(call)
            except ApiError as err:
                if not err.retryable or attempt == attempts - 1:
                    raise
                if not (call.idempotent or err.reason == NOT_SENT or err.code == 429):
                    raise
                log.info(
                    "API call failed, retrying",
                    extra={"method": method, "path": path, "code": err.code, "attempt": attempt + 1},
                )
                await asyncio.sleep(RETRY_DELAYS[attempt])
        raise AssertionError("unreachable")

    async def create(
        self, path: str, body: dict[str, Any], *, timeout: float = 10.0
    ) -> dict[str, Any] | None:
        """Create an object of a fixed name (`metadata.name`), trying again after an error that leaves
        open whether it was made: the API server refuses a second create of that name with 409, so
        nothing is made twice. The created object; None when one of that name was there (409: made by
        an earlier attempt of this call, or by someone else, which the caller tells apart if it must)."""
        if not (body.get("metadata") or {}).get("name"):
            raise ValueError("create() is for objects of a fixed name: a generateName create may not repeat")
        for delay in (*RETRY_DELAYS, None):
            try:
                return await self.request("POST", path, body=body, retry=False, timeout=timeout)
            except ApiError as err:
                if err.code == 409:
                    return None
                if not err.retryable or delay is None:
                    raise
                log.info("create failed, trying again", extra={"path": path, "code": err.code})
                await asyncio.sleep(delay)
        raise AssertionError("unreachable")

    async def _once(self, call: _Call) -> Any:
        timeout = call.timeout
        sent = SimpleNamespace(headers=False)  # set by the trace once the request's head is written
        try:
            async with asyncio.timeout(timeout if self.wait_in_timeout else None) as bound:
                async with self._slots:  # the queue: a call that times out here was never sent
                    if not self.wait_in_timeout:
                        bound.reschedule(asyncio.get_running_loop().time() + timeout)
                    status, content = await self._send(call, sent)
        except TimeoutError as exc:
            waited = "answer" if sent.headers else "free request slot"
            raise _no_answer(TimeoutError(f"no {waited} within {timeout:g} s"), sent.headers) from exc
        except (aiohttp.ClientError, _Dropped, ConfigError, OSError, ValueError, KeyError) as exc:
            raise _no_answer(exc.__cause__ if isinstance(exc, _Dropped) else exc, sent.headers) from exc
        if status >= 300:
            raise _error(status, content)
        return json.loads(content) if content.strip() else None

    async def _send(self, call: _Call, sent: SimpleNamespace) -> tuple[int, bytes]:
        """The exchange. A kept-alive connection the server dropped as we sent on it cannot be told from
        one whose request the server read: only an idempotent call is sent again (once, on another).
        A 401 is answered by the credentials' flow (a token file read again, an exec plugin run again)
        and the call sent once more: the server refused it, so nothing was carried out."""
        session = self._session()
        for attempt in (1, 2):
            try:
                for _ in (1, 2):
                    credentials = await self._credentials.headers()
                    headers = {**credentials, "Content-Type": call.content_type} if call.content_type \
                        else credentials
                    async with session.request(
                        call.method, call.path, params=call.params, data=call.data, headers=headers,
                        timeout=aiohttp.ClientTimeout(total=call.timeout, connect=CONNECT_TIMEOUT),
                        trace_request_ctx=sent,
                    ) as resp:
                        status, content = resp.status, await resp.read()
                    if status != 401 or not await self._credentials.refused(credentials):
                        return status, content
                return status, content
            except (aiohttp.ClientConnectionError, _Dropped):
                if not call.idempotent or attempt == 2:
                    raise
        raise AssertionError("unreachable")

    async def watch(self, path: str, params: dict[str, str]) -> AsyncGenerator[dict[str, Any], None]:
        """Stream watch events ({"type", "object"}) until the server ends the watch. Raises ApiError.

        The first item is {"type": WATCH_OPEN}, once the server has accepted the watch."""
        read = float(params["timeoutSeconds"]) + WATCH_READ_SLACK if "timeoutSeconds" in params else None
        try:
            credentials = await self._credentials.headers()
            async with self._session(streams=True).get(
                path, params={**params, "watch": "true"}, headers=credentials,
                timeout=aiohttp.ClientTimeout(total=None, connect=CONNECT_TIMEOUT, sock_read=read),
            ) as resp:
                if resp.status >= 300:
                    if resp.status == 401:
                        await self._credentials.refused(credentials)  # the next call has fresh ones
                    raise _error(resp.status, await resp.read())
                yield {"type": WATCH_OPEN}  # tells the caller the stream is established
                # One JSON event per line; split here, as aiohttp's own line reader caps a line at
                # 64 KiB and an object (a VM with its cloud-init) may be longer.
                pending = b""
                async for chunk in resp.content.iter_any():
                    *lines, pending = (pending + chunk).split(b"\n")
                    for line in lines:
                        if line.strip():
                            yield json.loads(line)
                if pending.strip():
                    yield json.loads(pending)
        except (aiohttp.ClientError, _Dropped, ConfigError, OSError, json.JSONDecodeError) as exc:
            raise ApiError(0, "ConnectionError", _describe(exc)) from exc

    @contextlib.asynccontextmanager
    async def websocket(
        self, path: str, subprotocol: str, timeout: float = 10.0
    ) -> AsyncIterator[aiohttp.ClientWebSocketResponse]:
        """A WebSocket subresource (the VMI console), as aiohttp's client WebSocket, closed on leaving
        the block. Raises ApiError (the refusal's code) if it cannot be opened."""
        credentials: dict[str, str] = {}
        try:
            async with asyncio.timeout(timeout):
                credentials = await self._credentials.headers()
                ws = await self._session(streams=True).ws_connect(
                    path, protocols=(subprotocol,), headers=credentials,
                    max_msg_size=WEBSOCKET_MAX_MESSAGE, autoping=True,
                )
        except aiohttp.WSServerHandshakeError as exc:
            if exc.status == 401:
                await self._credentials.refused(credentials)
            raise await self._refusal(path, exc.status) from exc
        except (aiohttp.ClientError, _Dropped, ConfigError, OSError, TimeoutError) as exc:
            raise ApiError(0, "ConnectionError", _describe(exc)) from exc
        try:
            yield ws
        finally:
            await ws.close()

    async def _refusal(self, path: str, code: int) -> ApiError:
        """Why an upgrade was refused: aiohttp does not read a refused upgrade's body, so the same path is
        read without one. The API server refuses it for the same reason (RBAC, the VMI not found or not
        running) before any upgrade would be looked at; another answer is not taken for the reason."""
        try:
            await self.request("GET", path, retry=False)
        except ApiError as err:
            if err.code == code:
                return err
        return ApiError(code, "", f"HTTP {code}: the WebSocket upgrade was refused")

    async def close(self) -> None:
        for session in (self._calls, self._streams):
            if session is not None:
                await session.close()
        self._calls = self._streams = None

    def _session(self, *, streams: bool = False) -> aiohttp.ClientSession:
        """The calls' session (kept-alive connections, MAX_REQUESTS of them) or the streams' (one
        connection per watch or WebSocket, closed with it); made on the running loop at first use."""
        session = self._streams if streams else self._calls
        if session is None:
            connector = aiohttp.TCPConnector(
                limit=0 if streams else MAX_REQUESTS,
                force_close=streams,
                keepalive_timeout=None if streams else KEEPALIVE_EXPIRY,
                ssl=self._verify if self._verify is not None else True,
            )
            trace = aiohttp.TraceConfig()
            trace.on_request_headers_sent.append(_headers_sent)
            session = aiohttp.ClientSession(
                self.host, connector=connector, headers={"Accept": JSON, "User-Agent": "vmbmc"},
                proxy=_proxy(self.host), trace_configs=[trace], middlewares=(_sent_once,),
            )
            if streams:
                self._streams = session
            else:
                self._calls = session
        return session


def _proxy(url: str) -> str | None:
    """The proxy the environment names for the API server (`HTTPS_PROXY`/`HTTP_PROXY`, `NO_PROXY`),
    decided once: aiohttp's `trust_env` looks it up again for every request, in a thread."""
    parts = urllib.parse.urlsplit(url)
    if urllib.request.proxy_bypass(parts.hostname or ""):
        return None
    return urllib.request.getproxies().get(parts.scheme)


class _Dropped(Exception):
    """The connection broke after the request may have been written (wraps aiohttp's error): raised
    instead of it so that aiohttp does not send the request again on its own; the policy is ours."""


async def _sent_once(request: aiohttp.ClientRequest, handler: Any) -> aiohttp.ClientResponse:
    """aiohttp sends a GET, PUT or DELETE again after a dropped connection; KubeVirt's `start`, `stop`
    and `restart` are PUTs. `ApiClient._send` decides what is sent again."""
    try:
        return await handler(request)  # type: ignore[no-any-return]
    except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError) as exc:
        if isinstance(exc, aiohttp.ClientConnectorError):  # no connection: nothing was sent
            raise
        raise _Dropped(_describe(exc)) from exc


async def _headers_sent(session: aiohttp.ClientSession, context: SimpleNamespace, params: Any) -> None:
    sent = context.trace_request_ctx
    if isinstance(sent, SimpleNamespace):
        sent.headers = True


class _Credentials:
    """lightkube's credentials (an httpx2 `Auth` flow: a token, a token file, an exec plugin, basic
    auth) as an Authorization header, kept until the API server answers 401; then the flow is asked
    again (a token file is read again, an exec plugin runs again), as it would be inside httpx2."""

    def __init__(self, auth: httpx2.Auth | None, url: str) -> None:
        self._auth, self._url = auth, url
        self._headers: dict[str, str] | None = None if auth is not None else {}
        self._lock = asyncio.Lock()  # one exec plugin run at a time, not one per waiting call

    async def headers(self) -> dict[str, str]:
        if self._headers is None:
            async with self._lock:
                if self._headers is None:
                    self._headers = await self._ask(refused=None)
        return self._headers

    async def refused(self, sent: dict[str, str]) -> bool:
        """The server answered 401 to a call sent with `sent`: True if there are other credentials
        to try (the flow's answer after a 401), now returned by `headers`."""
        if self._auth is None:
            return False
        async with self._lock:
            if self._headers != sent:  # another call has refreshed them meanwhile
                return True
            fresh = await self._ask(refused=sent)
            if fresh == sent or not fresh:
                return False
            self._headers = fresh
            return True

    async def _ask(self, refused: dict[str, str] | None) -> dict[str, str]:
        assert self._auth is not None
        flow = self._auth.async_auth_flow(httpx2.Request("GET", self._url))
        try:
            request = await anext(flow)
            if refused is not None:
                request = await flow.asend(httpx2.Response(401))
        except StopAsyncIteration:
            return {}
        finally:
            await flow.aclose()
        return _authorization(request)


def _authorization(request: httpx2.Request | None) -> dict[str, str]:
    value = None if request is None else request.headers.get("Authorization")
    if value and any(c in value for c in "\r\n\0"):  # a header written into the request's head
        raise ConfigError("the credentials hold a line break: not sent")
    return {"Authorization": value} if value else {}


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}".rstrip(": ")


def _no_answer(exc: BaseException, sent: bool) -> ApiError:
    """NOT_SENT: the request never left the pool (no connection, credentials not at hand, the bound
    ran out in the queue), so it may be sent again; else it may have reached the server."""
    if sent:
        return ApiError(0, "ConnectionError", _describe(exc))
    return ApiError(0, NOT_SENT, f"not sent: {_describe(exc)}")


def _error(code: int, raw: bytes) -> ApiError:
    try:
        status = json.loads(raw)
    except ValueError:
        status = {}
    if not isinstance(status, dict):
        status = {}
    message = str(status.get("message") or raw[:200].decode(errors="replace") or f"HTTP {code}")
    return ApiError(code, str(status.get("reason") or ""), message, status)

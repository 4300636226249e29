"""The product's Kubernetes API client: lightkube's configuration (vmbmc.k8s.config) on the httpx2 client
that lightkube itself uses (its connection pool, timeouts, TLS, credentials and WebSocket sessions).

Why raw paths rather than lightkube's typed resources: the back end needs KubeVirt's subresource group
(`subresources.kubevirt.io`, not in generated models), exact Content-Types for JSON Patch and merge patch
on custom resources, and a watch stream whose 410 Gone and bookmarks the informer handles itself.

Exactly once (docs/k8s-client.md): a request that may have reached the server is sent again only when
it is idempotent (`idempotent()`); one that never left the pool is reported NOT_SENT and may be sent again.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpcore2
import httpx2
from lightkube import ConfigError, SingleConfig
from lightkube.config.client_adapter import user_auth, verify_cluster
from lightkube.config.models import User

from vmbmc.k8s import config

if TYPE_CHECKING:  # httpx2.websockets (and wsproto) load when a console first opens, not at start-up
    from httpx2.websockets import AsyncWebSocketSession

log = logging.getLogger(__name__)
logging.getLogger("httpx2").setLevel(logging.WARNING)  # it logs every request at INFO: ours say what matters

JSON = "application/json"
MERGE_PATCH = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"

WATCH_OPEN = "_OPEN"
NOT_SENT = "NotConnected"  # ApiError.reason of a request that never left this process
RETRY_DELAYS = (0.1, 0.3, 0.9)  # backoff between attempts on a 5xx or a connection error

MAX_REQUESTS = 64  # requests in flight per client (lane); the rest wait their turn in the pool, in order
CONNECT_TIMEOUT = 5.0
KEEPALIVE_EXPIRY = 30.0  # idle pooled connections are closed after this (the API server keeps them longer)
CALLS_PER_POOL = 16  # kept-alive connections per httpx2 client of calls
STREAMS_PER_POOL = 32  # watches and WebSockets per httpx2 client
WATCH_READ_SLACK = 30.0  # a watch silent this long past its timeoutSeconds is a dead connection
SENT = ("http11.send_request_headers.started", "http2.send_request_headers.started")
HEADERS_REFUSED = ("http11.send_request_headers.failed", "http2.send_request_headers.failed")


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
        """`wait_in_timeout`: a call's timeout counts its wait for a free connection in the pool too
        (the kbmc: nothing may be sent after a power call's bound); a call that runs out waiting was
        never sent. The controller's reconciles set it False: in a burst hundreds of them wait their
        turn, and timing out there would only send them to the back of the queue again.
        `auth` and `verify` are shared by a lane with the client it came from."""
        self.cfg = cfg
        self.wait_in_timeout = wait_in_timeout
        self.host = cfg.cluster.server
        self._auth = auth if auth is not None else user_auth(cfg.user)
        https = self.host.startswith("https://")
        if verify is None and https:
            verify = verify_cluster(cfg.cluster, cfg.user or User(), cfg.abs_file)
        self._verify = verify
        self._common: dict[str, Any] = {
            "base_url": self.host,
            "auth": self._auth,
            "verify": verify if https else False,  # plain http: no TLS settings to build
            "headers": {"Accept": JSON, "User-Agent": "vmbmc"},
        }
        # httpcore scans every connection and every queued request of a pool at each event, so a pool
        # of hundreds is quadratic in a burst. Calls: MAX_REQUESTS in flight, waiting beyond that in
        # a first-come-first-served semaphore, over small pools of kept-alive connections. Watches and
        # WebSockets last and are many (a shared kbmc holds three per BMC): small pools of their own.
        self._slots = asyncio.Semaphore(MAX_REQUESTS)
        self._calls = _Pools(self._common, CALLS_PER_POOL, keep_alive=True, limit=MAX_REQUESTS)
        self._streams = _Pools(self._common, STREAMS_PER_POOL, keep_alive=False)

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
        its own. Calls wait for a free connection in the order they were made, so work that must not
        queue behind a burst of other calls gets a lane of its own. Close it separately."""
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
        sent = False

        async def trace(event: str, info: dict[str, Any]) -> None:
            nonlocal sent
            if event in HEADERS_REFUSED and isinstance(info.get("exception"), httpcore2.LocalProtocolError):
                sent = False  # h11 refused to write the head (say, CR/LF in a header): nothing went out
            else:
                sent = sent or event in SENT

        try:
            async with asyncio.timeout(timeout if self.wait_in_timeout else None) as bound:
                async with self._slots:  # the queue: a call that times out here was never sent
                    if not self.wait_in_timeout:
                        bound.reschedule(asyncio.get_running_loop().time() + timeout)
                    resp = await self._send(call, trace)
        except TimeoutError as exc:
            waited = "answer" if sent else "free connection"
            raise _no_answer(TimeoutError(f"no {waited} within {timeout:g} s"), sent) from exc
        except (httpx2.HTTPError, ConfigError, OSError, ValueError, KeyError) as exc:
            raise _no_answer(exc, sent) from exc
        if resp.status_code >= 300:
            raise _error(resp.status_code, resp.content)
        return json.loads(resp.content) if resp.content.strip() else None

    async def _send(self, call: _Call, trace: Any) -> httpx2.Response:
        """The exchange. A kept-alive connection the server dropped as we sent on it cannot be told from
        one whose request the server read: only an idempotent call is sent again (once, on another)."""
        for attempt in (1, 2):
            try:
                async with self._calls.client() as client:
                    return await client.request(
                        call.method,
                        call.path,
                        params=call.params,
                        content=call.data,
                        headers={"Content-Type": call.content_type} if call.content_type else None,
                        timeout=httpx2.Timeout(call.timeout, connect=CONNECT_TIMEOUT, pool=None),
                        extensions={"trace": trace},
                    )
            except httpx2.TransportError:
                if not call.idempotent or attempt == 2:
                    raise
        raise AssertionError("unreachable")

    async def watch(self, path: str, params: dict[str, str]) -> AsyncIterator[dict[str, Any]]:
        """Stream watch events ({"type", "object"}) until the server ends the watch. Raises ApiError.

        The first item is {"type": WATCH_OPEN}, once the server has accepted the watch."""
        read = float(params["timeoutSeconds"]) + WATCH_READ_SLACK if "timeoutSeconds" in params else None
        try:
            async with self._streams.client() as client, client.stream(
                "GET",
                path,
                params={**params, "watch": "true"},
                timeout=httpx2.Timeout(read, connect=CONNECT_TIMEOUT),
            ) as resp:
                if resp.status_code >= 300:
                    raise _error(resp.status_code, resp.content)
                yield {"type": WATCH_OPEN}  # tells the caller the stream is established
                async for line in resp.aiter_lines():
                    if line.strip():
                        yield json.loads(line)
        except (httpx2.HTTPError, ConfigError, OSError, json.JSONDecodeError) as exc:
            raise ApiError(0, "ConnectionError", _describe(exc)) from exc

    @contextlib.asynccontextmanager
    async def websocket(
        self, path: str, subprotocol: str, timeout: float = 10.0
    ) -> AsyncIterator[AsyncWebSocketSession]:
        """A WebSocket subresource (the VMI console), as httpx2's session (wsproto frames it), closed on
        leaving the block. Raises ApiError (the refusal's code) if it cannot be opened."""
        from httpx2.websockets import HTTPXWSException, WebSocketUpgradeError

        opened = False
        try:
            async with self._streams.client() as client, client.websocket(
                path, subprotocols=[subprotocol], timeout=httpx2.Timeout(timeout, connect=CONNECT_TIMEOUT)
            ) as ws:
                opened = True
                yield ws
        except WebSocketUpgradeError as exc:
            raise _error(exc.response.status_code, exc.response.content) from exc
        except (httpx2.HTTPError, HTTPXWSException, ConfigError, OSError) as exc:
            if opened:
                raise
            raise ApiError(0, "ConnectionError", _describe(exc)) from exc

    async def close(self) -> None:
        await self._calls.aclose()
        await self._streams.aclose()


class _Pools:
    """httpx2 clients of the same settings, each holding at most `per_pool` connections: a request goes
    to the least busy one, and another is opened when all are full (up to `limit` connections in all)."""

    def __init__(self, common: dict[str, Any], per_pool: int, *, keep_alive: bool, limit: int = 0) -> None:
        self._common, self._per_pool, self._keep_alive, self._limit = common, per_pool, keep_alive, limit
        self._pools: list[tuple[httpx2.AsyncClient, list[int]]] = []

    def _open(self) -> tuple[httpx2.AsyncClient, list[int]]:
        client = httpx2.AsyncClient(
            **self._common,
            limits=httpx2.Limits(
                max_connections=self._per_pool,
                max_keepalive_connections=self._per_pool if self._keep_alive else 0,
                keepalive_expiry=KEEPALIVE_EXPIRY,
            ),
            event_hooks={} if self._keep_alive else {"response": [_read_refusal]},
        )
        self._pools.append((client, [0]))
        return self._pools[-1]

    @contextlib.asynccontextmanager
    async def client(self) -> AsyncIterator[httpx2.AsyncClient]:
        pool = min(self._pools, key=lambda p: p[1][0], default=None)
        room = not self._limit or len(self._pools) * self._per_pool < self._limit
        if (pool is None or pool[1][0] >= self._per_pool) and room:
            pool = self._open()
        assert pool is not None
        pool[1][0] += 1
        try:
            yield pool[0]
        finally:
            pool[1][0] -= 1

    async def aclose(self) -> None:
        for client, _ in self._pools:
            await client.aclose()
        self._pools.clear()


async def _read_refusal(response: httpx2.Response) -> None:
    """A watch or WebSocket refused (4xx, 5xx): read its Status now, so the error can say why."""
    if response.status_code >= 300:
        await response.aread()


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

"""The HTTP face of the emulator: kube-apiserver's REST paths, verbs, watches and errors."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route, WebSocketRoute

from vmbmc_devcluster.emulator import apiwarnings, console
from vmbmc_devcluster.emulator.access import AccessMiddleware
from vmbmc_devcluster.emulator.emulator import Emulator
from vmbmc_devcluster.emulator.errors import ApiError, bad_request
from vmbmc_devcluster.emulator.registry import ResourceType
from vmbmc_devcluster.emulator.selectors import field_matcher, label_matcher, name_from_field_selector
from vmbmc_devcluster.emulator.store import WatchEvent, decode_body
from vmbmc_devcluster.emulator.table import to_table

log = logging.getLogger("vmbmc.emulator.server")

VERSION = {
    "major": "1",
    "minor": "32",
    "gitVersion": "v1.32.4-vmbmc-emulator",
    "gitCommit": "0000000000000000000000000000000000000000",
    "gitTreeState": "clean",
    "buildDate": "2026-01-01T00:00:00Z",
    "goVersion": "go1.23.8",
    "compiler": "gc",
    "platform": "linux/amd64",
}
MAX_BODY = 3 * 1024 * 1024  # kube-apiserver's request size limit
DEFAULT_WATCH_TIMEOUT = 1800


def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(
        json.dumps(body, separators=(",", ":")),
        status_code=status,
        media_type="application/json",
        headers=headers,
    )


def _error(exc: ApiError) -> Response:
    return _json(exc.status(), exc.code)


def _q(request: Request, name: str) -> str | None:
    return request.query_params.get(name)


def _bool_q(request: Request, name: str) -> bool:
    return (_q(request, name) or "").lower() in ("true", "1")


class Api:
    def __init__(self, emulator: Emulator) -> None:
        self.emu = emulator

    # --- discovery ----------------------------------------------------------------------------
    async def version(self, request: Request) -> Response:
        return _json(VERSION)

    async def core_versions(self, request: Request) -> Response:
        return _json(self.emu.registry.api_versions())

    async def groups(self, request: Request) -> Response:
        return _json(self.emu.registry.api_group_list())

    async def not_served(self, request: Request) -> Response:
        return _error(ApiError(404, "NotFound", "the server could not find the requested resource"))

    # --- resources ----------------------------------------------------------------------------
    def _resolve(
        self, group: str, version: str, parts: list[str]
    ) -> tuple[ResourceType | None, str | None, str | None, str | None, str | None]:
        """→ (type, namespace, name, subresource, plural-if-unknown)."""
        reg = self.emu.registry
        ns: str | None = None
        if len(parts) >= 3 and parts[0] == "namespaces":
            cand = reg.get(group, version, parts[2])
            if (cand is not None and cand.namespaced) or reg.subresource_handler(
                group, version, parts[2], parts[4] if len(parts) > 4 else ""
            ):
                ns, parts = parts[1], parts[2:]
        if not parts or len(parts) > 3:
            return None, None, None, None, None
        plural = parts[0]
        name = parts[1] if len(parts) > 1 else None
        sub = parts[2] if len(parts) > 2 else None
        return reg.get(group, version, plural), ns, name, sub, plural

    async def resource(self, request: Request) -> Response:
        with apiwarnings.recording() as warnings:  # admission warnings go out as `Warning` headers
            response = await self._answer(request)
        apiwarnings.add_headers(response, warnings)
        return response

    async def _answer(self, request: Request) -> Response:
        try:
            return await self._resource(request)
        except ApiError as exc:
            return _error(exc)
        except Exception as exc:  # the server never answers a bare 500 without a Status
            log.exception("emulator request failed", extra={"path": request.url.path})
            return _error(ApiError(500, "InternalError", f"Internal error occurred: {exc}"))

    async def _resource(self, request: Request) -> Response:
        path = request.url.path.rstrip("/")
        fault = self.emu.faults.take(request.method, path)
        if fault is not None:
            if fault.delay:
                if fault.hold:  # the request arrived whole and hangs inside (a stalled etcd): once
                    await request.body()  # released it is carried out even if its client gave up
                await fault.wait()
            if fault.status:
                raise ApiError(fault.status, "", fault.message)
        segs = [s for s in path.split("/") if s]
        if segs[0] == "api":
            if len(segs) == 1:
                return _json(self.emu.registry.api_versions())
            group, version, parts = "", segs[1], segs[2:]
        else:
            if len(segs) == 1:
                return _json(self.emu.registry.api_group_list())
            if len(segs) == 2:
                doc = self.emu.registry.api_group(segs[1])
                if doc is None:
                    raise ApiError(404, "NotFound", "the server could not find the requested resource")
                return _json(doc)
            group, version, parts = segs[1], segs[2], segs[3:]
        if not parts:
            doc = self.emu.registry.resource_list(group, version)
            if doc is None:
                raise ApiError(404, "NotFound", "the server could not find the requested resource")
            return _json(doc)
        rt, ns, name, sub, plural = self._resolve(group, version, parts)
        if sub is not None and name is not None:
            handler = self.emu.registry.subresource_handler(group, version, plural or "", sub)
            if handler is not None:
                return await self._custom_subresource(request, handler, ns or "", name)
        if rt is None:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        if sub is not None and sub not in rt.subresources:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        method = request.method
        if rt.key in self.emu.create_handlers and (method != "POST" or name is not None):
            raise ApiError(
                405, "MethodNotAllowed", "the server does not allow this method on the requested resource"
            )
        if name is None:
            if method == "GET":
                if _bool_q(request, "watch"):
                    return self._watch(request, rt, ns)
                return self._list(request, rt, ns)
            if method == "POST":
                body = _of_kind(rt, await self._body(request))
                answer = self.emu.create_handlers.get(rt.key)
                if answer is not None:  # the review APIs answer instead of storing
                    return _json(answer(self.emu, ns or "", body), 201)
                obj = self.emu.store.create(rt, body, ns)
                return _json(obj, 201)
            if method == "DELETE":
                return self._delete_collection(request, rt, ns)
            raise ApiError(
                405, "MethodNotAllowed", "the server does not allow this method on the requested resource"
            )
        if method == "GET":
            obj = self.emu.store.get(rt, ns, name, copy=False)  # serialised at once: no copy
            if self._wants_table(request):
                return _json(self._table(request, rt, [obj], obj["metadata"]["resourceVersion"]))
            return _json(obj)
        if method == "PUT":
            body = await self._body(request)
            if sub is None:
                body = _of_kind(rt, body)
            return _json(self.emu.store.replace(rt, ns, name, body, subresource=sub))
        if method == "PATCH":
            raw = await self._raw(request)
            ctype = request.headers.get("content-type", "")
            return _json(self.emu.store.patch(rt, ns, name, ctype, raw, subresource=sub))
        if method == "DELETE":
            opts = await self._delete_options(request)
            return _json(self.emu.store.delete(rt, ns, name, **opts))
        raise ApiError(
            405, "MethodNotAllowed", "the server does not allow this method on the requested resource"
        )

    async def _raw(self, request: Request) -> bytes:
        raw = await request.body()
        if len(raw) > MAX_BODY:
            raise ApiError(413, "RequestEntityTooLarge", "the request body is too large")
        return raw

    async def _body(self, request: Request) -> dict:
        body = decode_body(await self._raw(request), request.headers.get("content-type", "application/json"))
        if not isinstance(body, dict):
            raise bad_request("the body of the request must be a JSON object")
        return body

    async def _delete_options(self, request: Request) -> dict[str, Any]:
        opts: dict[str, Any] = {}
        raw = await self._raw(request)
        body: dict = {}
        if raw.strip():
            decoded = decode_body(raw, request.headers.get("content-type", "application/json"))
            if not isinstance(decoded, dict):
                raise bad_request("DeleteOptions must be a JSON object")
            body = decoded
        grace = body.get("gracePeriodSeconds", _q(request, "gracePeriodSeconds"))
        if grace is not None:
            try:
                opts["grace_period_seconds"] = int(grace)
            except ValueError:
                raise bad_request(f"invalid gracePeriodSeconds: {grace!r}") from None
        policy = body.get("propagationPolicy", _q(request, "propagationPolicy"))
        if policy is not None:
            opts["propagation_policy"] = policy
        if body.get("orphanDependents") is True:
            opts["propagation_policy"] = "Orphan"
        if body.get("preconditions"):
            opts["preconditions"] = body["preconditions"]
        return opts

    def _delete_collection(self, request: Request, rt: ResourceType, ns: str | None) -> Response:
        items, _rv = self.emu.store.list(
            rt, ns, label_selector=_q(request, "labelSelector"), field_selector=_q(request, "fieldSelector")
        )
        deleted = []
        for obj in items:
            try:
                deleted.append(
                    self.emu.store.delete(rt, obj["metadata"].get("namespace"), obj["metadata"]["name"])
                )
            except ApiError:
                continue
        return _json(
            {
                "apiVersion": rt.api_version,
                "kind": rt.list_kind,
                "metadata": {"resourceVersion": str(self.emu.store.resource_version)},
                "items": deleted,
            }
        )

    async def _custom_subresource(self, request: Request, spec: Any, ns: str, name: str) -> Response:
        verb = {"PUT": "update", "POST": "create", "GET": "get", "PATCH": "patch", "DELETE": "delete"}.get(
            request.method, ""
        )
        if verb not in spec.verbs:
            raise ApiError(
                405, "MethodNotAllowed", "the server does not allow this method on the requested resource"
            )
        raw = await self._raw(request)
        body = None
        ctype = request.headers.get("content-type", "application/json")
        if raw.strip():  # `kubectl create token` posts a protobuf TokenRequest: decode_body reads it
            body = decode_body(raw, ctype)
            if not isinstance(body, dict):
                raise bad_request("the request body must be a JSON object")
        code, answer = await spec.handler(self.emu, ns, name, request.method, body)
        if answer is None:
            return Response(status_code=code)
        return _json(answer, code)

    # --- lists, tables, watches ------------------------------------------------------------
    def _wants_table(self, request: Request) -> bool:
        return "as=Table" in request.headers.get("accept", "")

    def _table(self, request: Request, rt: ResourceType, objs: list[dict], rv: str) -> dict:
        include = _q(request, "includeObject") or "Metadata"
        return to_table(rt.kind, objs, rt.printer_columns, include_object=include, resource_version=rv)

    def _list(self, request: Request, rt: ResourceType, ns: str | None) -> Response:
        items, rv = self.emu.store.list(
            rt,
            ns,
            label_selector=_q(request, "labelSelector"),
            field_selector=_q(request, "fieldSelector"),
            copy=False,  # serialised at once
        )
        if self._wants_table(request):
            return _json(self._table(request, rt, items, rv))
        return _json(
            {
                "apiVersion": rt.api_version,
                "kind": rt.list_kind,
                "metadata": {"resourceVersion": rv},
                "items": items,
            }
        )

    def _watch(self, request: Request, rt: ResourceType, ns: str | None) -> Response:
        store = self.emu.store
        label_q, field_q = _q(request, "labelSelector"), _q(request, "fieldSelector")
        by_label = label_matcher(label_q)
        by_field = field_matcher(field_q)
        rv_q = _q(request, "resourceVersion")
        try:
            timeout = float(_q(request, "timeoutSeconds") or DEFAULT_WATCH_TIMEOUT)
        except ValueError:
            raise bad_request("invalid timeoutSeconds") from None
        bookmarks = _bool_q(request, "allowWatchBookmarks")
        # namespace, name and labels are checked by the store before queueing (a watch wakes only for its
        # own objects); other fields need the object as served, so they are checked here
        labels = by_label if label_q and label_q.strip() else None
        sub = store.subscribe(rt, namespace=ns, name=name_from_field_selector(field_q), labels=labels)
        initial: list[tuple[str, dict]] = []
        error: dict | None = None
        send_initial = _bool_q(request, "sendInitialEvents")
        resumed: list[WatchEvent] = []
        if rv_q in (None, "", "0") or send_initial:
            # copies: the stream sends them later
            items, _ = store.list(rt, ns, label_selector=label_q, field_selector=field_q)
            initial = [("ADDED", o) for o in items]
            last = store.resource_version
        else:
            try:
                last = int(rv_q)
            except ValueError:
                sub.close()
                raise bad_request(f"invalid resourceVersion: {rv_q!r}") from None
            try:
                resumed = store.events_since(rt, last, sub)
            except ApiError as exc:
                error = exc.status()
            if resumed:
                last = resumed[-1].rv

        def wanted(obj: dict) -> bool:
            if ns is not None and rt.namespaced and obj["metadata"].get("namespace") != ns:
                return False
            return by_label(obj) and by_field(obj)

        def lines(events: list[WatchEvent]) -> list[bytes]:
            """The events this watch sends, as lines; each event's line is made once for every watch
            (events are never changed: a stored object is replaced, not changed in place)."""
            out = []
            for ev in events:
                obj = store.view(rt, ev.object)
                if not wanted(obj):
                    continue
                line = ev.lines.get(rt.api_version)
                if line is None:
                    line = ev.lines[rt.api_version] = _line(ev.type, obj)
                out.append(line)
            return out

        async def stream() -> AsyncIterator[bytes]:
            deadline = time.monotonic() + timeout
            try:
                if error is not None:
                    yield _line("ERROR", error)
                    return
                first = [_line(type_, obj) for type_, obj in initial if wanted(obj)] + lines(resumed)
                if send_initial:
                    # WatchList (kubectl >= 1.35): the end of the initial state is a marked BOOKMARK.
                    first.append(
                        _line(
                            "BOOKMARK",
                            {
                                "kind": rt.kind,
                                "apiVersion": rt.api_version,
                                "metadata": {
                                    "resourceVersion": str(last),
                                    "annotations": {"k8s.io/initial-events-end": "true"},
                                },
                            },
                        )
                    )
                if first:
                    yield b"".join(first)
                while True:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        return
                    events = await sub.take(min(remaining, 5.0))
                    if events is None:  # closed
                        return
                    if not events:
                        if bookmarks:
                            yield _line(
                                "BOOKMARK",
                                {
                                    "kind": rt.kind,
                                    "apiVersion": rt.api_version,
                                    "metadata": {"resourceVersion": str(store.resource_version)},
                                },
                            )
                        continue
                    # everything queued goes out in one write: a burst costs one send, not one per event
                    out = lines([ev for ev in events if ev.rv > last])
                    if out:
                        yield b"".join(out)
            finally:
                sub.close()

        return StreamingResponse(stream(), media_type="application/json")


def _line(type_: str, obj: dict) -> bytes:
    return (json.dumps({"type": type_, "object": obj}, separators=(",", ":")) + "\n").encode()


def create_app(emulator: Emulator) -> Starlette:
    api = Api(emulator)
    methods = ["GET", "POST", "PUT", "PATCH", "DELETE"]
    consoles = console.Consoles(emulator)
    routes = [
        Route(console.PATH, consoles.plain, methods=["GET"]),  # before /apis/{rest}: virt-api's answer
        Route("/version", api.version, methods=["GET"]),
        Route("/version/", api.version, methods=["GET"]),
        Route("/openapi/v2", api.not_served, methods=["GET"]),
        Route("/openapi/v3", api.not_served, methods=["GET"]),
        Route("/api", api.resource, methods=methods),
        Route("/api/", api.resource, methods=methods),
        Route("/api/{rest:path}", api.resource, methods=methods),
        Route("/apis", api.resource, methods=methods),
        Route("/apis/", api.resource, methods=methods),
        Route("/apis/{rest:path}", api.resource, methods=methods),
        WebSocketRoute(console.PATH, consoles.endpoint),
    ]

    async def not_found(request: Request, exc: Exception) -> Response:
        code = getattr(exc, "status_code", 404)
        reason = {404: "NotFound", 405: "MethodNotAllowed"}.get(code, "BadRequest")
        return _json(
            ApiError(
                code,
                reason,
                "the server could not find the requested resource"
                if code == 404
                else "the server does not allow this method on the requested resource",
            ).status(),
            code,
        )

    # authentication and authorization wrap the router, as kube-apiserver's filters precede its mux
    return Starlette(
        routes=routes,
        exception_handlers={404: not_found, 405: not_found},
        middleware=[Middleware(AccessMiddleware, security=emulator.security)],
    )


__all__ = ["JSONResponse", "create_app"]


def _of_kind(rt: Any, body: dict) -> dict:
    """Refuse a body that names another kind or API version than the URL, as kube-apiserver's decoder
    does (it converts into the URL's type, and no conversion exists): never store it as the URL's kind."""
    kind, api_version = body.get("kind"), body.get("apiVersion")
    if kind and kind != rt.kind:
        version = str(api_version or "").rpartition("/")[2]
        raise bad_request(
            f'{kind} in version "{version}" cannot be handled as a {rt.kind}: '
            f"converting ({version}.{kind}) to ({rt.kind}): unknown conversion"
        )
    if api_version and api_version != rt.api_version:
        raise bad_request(
            f"the API version in the data ({api_version}) does not match the expected API version "
            f"({rt.api_version})"
        )
    return body

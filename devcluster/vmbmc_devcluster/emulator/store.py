"""The emulator's object store: etcd + the generic registry of kube-apiserver, in memory.

Synchronous; call it only on the emulator's event loop. Every change bumps one global
resourceVersion and is broadcast to subscribers (watches and the fake controllers).
"""

from __future__ import annotations

import asyncio
import copy
import datetime as dt
import json
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import jsonpatch
import yaml

from vmbmc_devcluster.emulator import schema as crd_schema
from vmbmc_devcluster.emulator.builtin import SHARED_STORAGE
from vmbmc_devcluster.emulator.errors import (
    ApiError,
    already_exists,
    bad_request,
    conflict,
    invalid,
    not_found,
)
from vmbmc_devcluster.emulator.registry import Registry, ResourceType
from vmbmc_devcluster.emulator.selectors import (
    Matcher,
    field_matcher,
    label_matcher,
    name_from_field_selector,
)
from vmbmc_devcluster.emulator.strategic import StrategicMergeError, strategic_merge

HISTORY = 20_000  # watch events kept for resume; older resourceVersions answer 410 Gone

JSON_PATCH = "application/json-patch+json"
MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_PATCH = "application/strategic-merge-patch+json"
APPLY_PATCH = "application/apply-patch+yaml"


def now_ts() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class WatchEvent:
    type: str  # ADDED | MODIFIED | DELETED
    rt: ResourceType
    object: dict
    rv: int
    # the event as a watch line, per apiVersion it is served as: made once for every watch that sends it
    lines: dict[str, bytes] = field(default_factory=dict)


class Subscription:
    """All changes (or those of one resource type) as an async iterator; never blocks the store.

    A subscription may be limited to one namespace, one name and a label predicate: the store then puts
    into it only the events it accepts (the check runs once per event, when the event is emitted, on
    the stored object), as kube-apiserver's watch of one name looks at that key alone. So a thousand
    name-limited watches of one resource cost one index look-up per change, not a thousand wake-ups."""

    def __init__(
        self,
        store: Store,
        rt: ResourceType | None,
        *,
        namespace: str | None = None,
        name: str | None = None,
        labels: Matcher | None = None,
    ) -> None:
        self._store = store
        self.key = None if rt is None else store.storage_key(rt)
        # a cluster-scoped type has no namespace to filter on (kube-apiserver ignores the URL's)
        self.namespace = namespace if rt is not None and rt.namespaced else None
        self.name = name if rt is not None else None
        self._labels = labels if rt is not None else None
        self._items: deque[WatchEvent] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self.closed = False

    @property
    def index_key(self) -> tuple[tuple[str, str] | None, str | None, str | None]:
        return (self.key, self.namespace, self.name)

    def accepts(self, ev: WatchEvent) -> bool:
        """Whether `ev` (the stored object) is one this subscription delivers."""
        meta = ev.object["metadata"]
        if self.name is not None and meta.get("name") != self.name:
            return False
        if self.namespace is not None and (meta.get("namespace") or "") != self.namespace:
            return False
        return self._labels is None or self._labels(ev.object)

    def pending(self) -> int:
        """Events queued and not yet taken."""
        return len(self._items)

    def put(self, ev: WatchEvent) -> None:
        if self.closed:
            return
        self._items.append(ev)
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def _wait(self, timeout: float | None) -> None:
        """Until an event is queued, the subscription is closed or `timeout` seconds have passed (None:
        no limit). One future per wait, no task; a subscription has one consumer."""
        if self._items or self.closed:
            return
        loop = asyncio.get_running_loop()
        waiter = self._waiter = loop.create_future()
        timer = None if timeout is None else loop.call_later(timeout, _expire, waiter)
        try:
            await waiter
        finally:
            self._waiter = None
            if timer is not None:
                timer.cancel()

    async def take(self, timeout: float | None = None) -> list[WatchEvent] | None:
        """Every event queued, waiting up to `timeout` seconds for one; [] when the time ran out, None
        once closed and drained."""
        await self._wait(timeout)
        if not self._items:
            return None if self.closed else []
        items = list(self._items)
        self._items.clear()
        return items

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> WatchEvent:
        while not self._items:
            if self.closed:
                raise StopAsyncIteration
            await self._wait(None)
        return self._items.popleft()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._store._unsubscribe(self)
            self._wake()


def _expire(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def decode_body(body: bytes | str | Any, content_type: str = "application/json") -> Any:
    if not isinstance(body, bytes | str):
        return body
    if "protobuf" in content_type and isinstance(body, bytes):
        from vmbmc_devcluster.emulator.protobuf import decode  # the built-in kinds kubectl sends as protobuf

        return decode(body)
    if "protobuf" in content_type or "cbor" in content_type:
        raise ApiError(
            415,
            "UnsupportedMediaType",
            "the body of the request was in an unknown format - "
            "accepted media types include: application/json, application/yaml",
        )
    text = body.decode(errors="replace") if isinstance(body, bytes) else body
    if not text.strip():
        raise bad_request("the request body is empty")
    try:
        if "yaml" in content_type:
            return yaml.safe_load(text)
        return json.loads(text)
    except (ValueError, yaml.YAMLError) as exc:
        raise bad_request(f"the body of the request was in an unknown format: {exc}") from None


def _spec_part(obj: dict) -> dict:
    return {k: v for k, v in obj.items() if k not in ("metadata", "status", "apiVersion", "kind")}


class Store:
    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self._objects: dict[tuple[str, str], dict[tuple[str, str], dict]] = {}
        self._uids: dict[str, tuple[tuple[str, str], str, str]] = {}
        self._rv = 0
        self._history: deque[WatchEvent] = deque(maxlen=HISTORY)
        # subscriptions by (storage key, namespace, name), None meaning any: an event looks up only the
        # subscriptions that could want it
        self._subs: dict[tuple[tuple[str, str] | None, str | None, str | None], set[Subscription]] = {}
        self.gc_dirty = False
        # hooks run after a create/delete of a CustomResourceDefinition (registration lives in crds.py)
        self.on_crd: Callable[[str, dict], None] | None = None
        # Set by vmbmc_devcluster.emulator.workloads: admission plug-ins per storage key (Service IP
        # allocation), and graceful pod deletion (the emulated kubelet finishes it with a grace period of 0).
        self.admission_hooks: dict[tuple[str, str], list[Callable[[dict, dict | None], dict]]] = {}
        self.graceful_pod_deletion = False

    # --- identity -----------------------------------------------------------------------------
    def storage_key(self, rt: ResourceType) -> tuple[str, str]:
        return SHARED_STORAGE.get(rt.key, rt.key)

    @property
    def resource_version(self) -> int:
        return self._rv

    def _bucket(self, rt: ResourceType) -> dict[tuple[str, str], dict]:
        return self._objects.setdefault(self.storage_key(rt), {})

    def _ns(self, rt: ResourceType, namespace: str | None) -> str:
        return (namespace or "") if rt.namespaced else ""

    def _next_rv(self) -> str:
        self._rv += 1
        return str(self._rv)

    def oldest_rv(self) -> int:
        return self._history[0].rv if len(self._history) == self._history.maxlen else 0

    # --- events -------------------------------------------------------------------------------
    def _emit(self, type_: str, rt: ResourceType, obj: dict) -> None:
        ev = WatchEvent(type_, rt, obj, int(obj["metadata"]["resourceVersion"]))
        self._history.append(ev)
        if not self._subs:
            return
        key = self.storage_key(rt)
        ns, name = obj["metadata"].get("namespace") or "", obj["metadata"].get("name")
        for index_key in (
            (None, None, None),
            (key, None, None),
            (key, ns, None),
            (key, None, name),
            (key, ns, name),
        ):
            for sub in self._subs.get(index_key, ()):
                if sub.accepts(ev):
                    sub.put(ev)

    def subscribe(
        self,
        rt: ResourceType | None = None,
        *,
        namespace: str | None = None,
        name: str | None = None,
        labels: Matcher | None = None,
    ) -> Subscription:
        """Changes of `rt` (None: of every type), limited to `namespace`, `name` and objects whose
        labels `labels` accepts when given."""
        sub = Subscription(self, rt, namespace=namespace, name=name, labels=labels)
        self._subs.setdefault(sub.index_key, set()).add(sub)
        return sub

    def _unsubscribe(self, sub: Subscription) -> None:
        subs = self._subs.get(sub.index_key)
        if subs is not None:
            subs.discard(sub)
            if not subs:
                del self._subs[sub.index_key]

    def events_since(self, rt: ResourceType, rv: int, sub: Subscription | None = None) -> list[WatchEvent]:
        """The kept events of `rt` after `rv` (those `sub` accepts, when given), oldest first; 410 Gone
        when `rv` is older than the history."""
        if rv < self.oldest_rv():
            raise ApiError(410, "Expired", f"too old resource version: {rv} ({self.oldest_rv()})")
        key = self.storage_key(rt)
        found = []
        for e in reversed(self._history):  # newest first: a recent rv reads only what came after it
            if e.rv <= rv:
                break
            if self.storage_key(e.rt) == key and (sub is None or sub.accepts(e)):
                found.append(e)
        found.reverse()
        return found

    def close_subscriptions(self) -> None:
        for subs in list(self._subs.values()):
            for sub in list(subs):
                sub.close()

    # --- conversion between the two Event APIs -----------------------------------------------
    def _to_storage(self, rt: ResourceType, obj: dict) -> dict:
        if rt.key == ("events.k8s.io", "events"):
            from vmbmc_devcluster.emulator.events import events_v1_to_core

            return events_v1_to_core(obj)
        return obj

    def _from_storage(self, rt: ResourceType, obj: dict) -> dict:
        out = copy.deepcopy(obj)
        if rt.key == ("events.k8s.io", "events"):
            from vmbmc_devcluster.emulator.events import core_to_events_v1

            return core_to_events_v1(out)
        out["apiVersion"] = rt.api_version
        return out

    def view(self, rt: ResourceType, obj: dict) -> dict:
        """A stored object as served under `rt`, for reading only (an answer about to be serialised): the
        stored dict itself unless a conversion is needed. Stored objects are replaced, never changed in
        place, so it stays as it is; whoever changes it must copy it (`_from_storage`)."""
        if rt.key == ("events.k8s.io", "events"):
            return self._from_storage(rt, obj)
        return obj if obj.get("apiVersion") == rt.api_version else {**obj, "apiVersion": rt.api_version}

    # --- reads --------------------------------------------------------------------------------
    def try_get(
        self, rt: ResourceType, namespace: str | None, name: str, *, copy: bool = True
    ) -> dict | None:
        """The object, a copy of it (`copy`), else a read-only `view`."""
        obj = self._bucket(rt).get((self._ns(rt, namespace), name))
        if obj is None:
            return None
        return self._from_storage(rt, obj) if copy else self.view(rt, obj)

    def get(self, rt: ResourceType, namespace: str | None, name: str, *, copy: bool = True) -> dict:
        obj = self.try_get(rt, namespace, name, copy=copy)
        if obj is None:
            raise not_found(rt, name)
        return obj

    def iter_raw(self, rt: ResourceType, namespace: str | None = None) -> Iterator[dict]:
        """Stored objects without copying: for read-only scans inside the emulator."""
        for (ns, _), obj in self._bucket(rt).items():
            if namespace is None or ns == namespace:
                yield obj

    def list(
        self,
        rt: ResourceType,
        namespace: str | None = None,
        *,
        label_selector: str | None = None,
        field_selector: str | None = None,
        copy: bool = True,
    ) -> tuple[list[dict], str]:
        """The objects selected, as copies (`copy`), else as read-only `view`s; and the resourceVersion."""
        by_label, by_field = label_matcher(label_selector), field_matcher(field_selector)
        name = name_from_field_selector(field_selector)
        bucket = self._bucket(rt)
        if name is not None and rt.namespaced and namespace:
            candidates = [o for o in [bucket.get((namespace, name))] if o is not None]
        else:
            candidates = [
                o
                for (ns, _), o in bucket.items()
                if namespace is None or not rt.namespaced or ns == namespace
            ]
        items = []
        for obj in candidates:
            # Labels first, on the stored object: a selective list must not copy every object
            # (the controller's label-selected lists were O(n) deep copies each).
            if not by_label(obj):
                continue
            view = self._from_storage(rt, obj) if copy else self.view(rt, obj)
            if by_field(view):
                items.append(view)
        items.sort(key=lambda o: (o["metadata"].get("namespace", ""), o["metadata"]["name"]))
        return items, str(self._rv)

    # --- writes -------------------------------------------------------------------------------
    def _check_namespace(self, rt: ResourceType, namespace: str) -> None:
        if not rt.namespaced:
            return
        if not namespace:
            raise bad_request("the server could not find the requested resource: a namespace is required")
        ns_rt = self.registry.get("", "v1", "namespaces")
        assert ns_rt is not None
        ns = self._bucket(ns_rt).get(("", namespace))
        if ns is None:
            raise ApiError(
                404,
                "NotFound",
                f'namespaces "{namespace}" not found',
                details={"name": namespace, "kind": "namespaces"},
            )
        if ns["metadata"].get("deletionTimestamp"):
            raise ApiError(
                403,
                "Forbidden",
                f"unable to create new content in namespace {namespace} because it is being terminated",
            )

    def _admit(self, rt: ResourceType, obj: dict, old: dict | None) -> dict:
        name = obj["metadata"].get("name", "")
        for hook in self.admission_hooks.get(rt.key, ()):
            obj = hook(obj, old)
        if rt.schema is not None:
            obj, causes = crd_schema.apply_schema(obj, rt.schema, old=old)
            blocking = [c for c in causes if c]
            if blocking:
                raise invalid(rt, name, blocking)
        if rt.key == ("apiextensions.k8s.io", "customresourcedefinitions"):
            causes = crd_schema.validate_crd(obj)
            if causes:
                raise invalid(rt, name, causes)
        return obj

    def create(self, rt: ResourceType, obj: dict, namespace: str | None = None) -> dict:
        if not isinstance(obj, dict):
            raise bad_request("the body of the request must be a JSON object")
        obj = self._to_storage(rt, copy.deepcopy(obj))
        meta = obj.get("metadata")
        if not isinstance(meta, dict):
            meta = obj["metadata"] = {}
        ns = self._ns(rt, namespace or meta.get("namespace"))
        if rt.namespaced and meta.get("namespace") and namespace and meta["namespace"] != namespace:
            raise bad_request(
                "the namespace of the provided object does not match the namespace sent on the request"
            )
        self._check_namespace(rt, ns)
        if not meta.get("name"):
            prefix = meta.get("generateName")
            if not prefix:
                raise invalid(
                    rt,
                    "",
                    [
                        {
                            "reason": "FieldValueRequired",
                            "message": "Required value: name or generateName is required",
                            "field": "metadata.name",
                        }
                    ],
                )
            meta["name"] = prefix + uuid.uuid4().hex[:5]
        if (ns, meta["name"]) in self._bucket(rt):
            raise already_exists(rt, meta["name"])
        if rt.namespaced:
            meta["namespace"] = ns
        else:
            meta.pop("namespace", None)
        for key in ("deletionTimestamp", "deletionGracePeriodSeconds"):
            meta.pop(key, None)
        meta.update(uid=str(uuid.uuid4()), creationTimestamp=now_ts(), generation=1)
        obj["apiVersion"], obj["kind"] = rt.api_version, rt.kind
        if "status" in rt.subresources and rt.custom:
            obj.pop("status", None)  # a CR's status is set only through /status
        obj = self._admit(rt, obj, None)
        obj["metadata"]["resourceVersion"] = self._next_rv()
        self._bucket(rt)[(ns, meta["name"])] = obj
        self._uids[obj["metadata"]["uid"]] = (self.storage_key(rt), ns, meta["name"])
        if obj["metadata"].get("ownerReferences"):
            self.gc_dirty = True
        self._emit("ADDED", rt, obj)
        if self.on_crd and rt.key == ("apiextensions.k8s.io", "customresourcedefinitions"):
            self.on_crd("ADDED", obj)
        return self._from_storage(rt, obj)

    def _store_update(self, rt: ResourceType, old: dict, new: dict) -> dict:
        """Persist `new` in place of `old` if anything changed; finish a deletion when due."""
        meta = new["metadata"]
        for key in (
            "uid",
            "creationTimestamp",
            "namespace",
            "name",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
        ):
            if key in old["metadata"]:
                meta[key] = old["metadata"][key]
            else:
                meta.pop(key, None)
        meta["resourceVersion"] = old["metadata"]["resourceVersion"]
        meta["generation"] = old["metadata"].get("generation", 1)
        if _spec_part(new) != _spec_part(old):
            meta["generation"] = meta["generation"] + 1
        if new == old:
            return self._from_storage(rt, old)
        new = self._admit(rt, new, old)
        new["metadata"]["resourceVersion"] = self._next_rv()
        ns, name = self._ns(rt, meta.get("namespace")), meta["name"]
        self._bucket(rt)[(ns, name)] = new
        if new["metadata"].get("ownerReferences") != old["metadata"].get("ownerReferences"):
            self.gc_dirty = True
        if new["metadata"].get("deletionTimestamp") and not new["metadata"].get("finalizers"):
            return self._remove(rt, new)
        self._emit("MODIFIED", rt, new)
        if self.on_crd and rt.key == ("apiextensions.k8s.io", "customresourcedefinitions"):
            self.on_crd("MODIFIED", new)
        return self._from_storage(rt, new)

    def _current(self, rt: ResourceType, namespace: str | None, name: str) -> dict:
        obj = self._bucket(rt).get((self._ns(rt, namespace), name))
        if obj is None:
            raise not_found(rt, name)
        return obj

    def _merge_for_subresource(self, rt: ResourceType, old: dict, new: dict, subresource: str | None) -> dict:
        if subresource == "status":
            merged = copy.deepcopy(old)
            if "status" in new:
                merged["status"] = new["status"]
            else:
                merged.pop("status", None)
            # Metadata except labels/annotations/finalizers/ownerRefs stays; kube-apiserver ignores
            # everything but status here.
            merged["metadata"]["resourceVersion"] = new.get("metadata", {}).get("resourceVersion")
            return merged
        if "status" in rt.subresources:
            if "status" in old:
                new["status"] = copy.deepcopy(old["status"])
            else:
                new.pop("status", None)
        return new

    def replace(
        self, rt: ResourceType, namespace: str | None, name: str, obj: dict, *, subresource: str | None = None
    ) -> dict:
        if not isinstance(obj, dict):
            raise bad_request("the body of the request must be a JSON object")
        old = self._current(rt, namespace, name)
        new = self._to_storage(rt, copy.deepcopy(obj))
        meta = new.setdefault("metadata", {})
        if meta.get("name") not in (None, name):
            raise bad_request(
                f"the name of the object ({meta.get('name')}) does not match the name on the URL ({name})"
            )
        rv = meta.get("resourceVersion")
        if not rv and rt.custom:
            raise invalid(
                rt,
                name,
                [
                    {
                        "reason": "FieldValueInvalid",
                        "field": "metadata.resourceVersion",
                        "message": "Invalid value: 0x0: must be specified for an update",
                    }
                ],
            )
        if rv and rv != old["metadata"]["resourceVersion"]:
            raise conflict(
                rt,
                name,
                "the object has been modified; please apply your changes to the latest version and try again",
            )
        new["apiVersion"], new["kind"] = rt.api_version, rt.kind
        new = self._merge_for_subresource(rt, old, new, subresource)
        return self._store_update(rt, old, new)

    def patch(
        self,
        rt: ResourceType,
        namespace: str | None,
        name: str,
        content_type: str,
        body: bytes | str | Any,
        *,
        subresource: str | None = None,
    ) -> dict:
        ctype = (content_type or "").split(";")[0].strip().lower()
        if ctype == APPLY_PATCH:
            raise ApiError(415, "UnsupportedMediaType", "server-side apply is not supported by this emulator")
        if ctype not in (JSON_PATCH, MERGE_PATCH, STRATEGIC_PATCH):
            raise ApiError(
                415,
                "UnsupportedMediaType",
                f"the body of the request was in an unknown format - "
                f"accepted media types include: {JSON_PATCH}, {MERGE_PATCH}, "
                f"{APPLY_PATCH}" + ("" if rt.custom else f", {STRATEGIC_PATCH}"),
            )
        if ctype == STRATEGIC_PATCH and rt.custom:
            raise ApiError(
                415,
                "UnsupportedMediaType",
                "the body of the request was in an unknown format - "
                f"accepted media types include: {JSON_PATCH}, {MERGE_PATCH}, "
                f"{APPLY_PATCH}",
            )
        patch = decode_body(body)
        old = self._current(rt, namespace, name)
        current = self._from_storage(rt, old)
        try:
            if ctype == JSON_PATCH:
                if not isinstance(patch, list):
                    raise bad_request("json: cannot unmarshal object into Go value of type jsonpatch.Patch")
                patched = jsonpatch.JsonPatch(patch).apply(current)
            elif ctype == MERGE_PATCH:
                if not isinstance(patch, dict):
                    raise bad_request("the patch must be a JSON object")
                patched = merge_patch(current, patch)
            else:
                patched = strategic_merge(current, patch, rt.kind)
        except jsonpatch.JsonPatchTestFailed as exc:
            raise ApiError(
                422, "Invalid", f"the server rejected our request due to an error in our request: {exc}"
            ) from None
        except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException) as exc:
            raise ApiError(
                422, "Invalid", f"the server rejected our request due to an error in our request: {exc}"
            ) from None
        except StrategicMergeError as exc:
            raise bad_request(str(exc)) from None
        if not isinstance(patched, dict):
            raise bad_request("the patched object is not a JSON object")
        rv = (patched.get("metadata") or {}).get("resourceVersion")
        if rv and rv != old["metadata"]["resourceVersion"]:
            raise conflict(
                rt,
                name,
                "the object has been modified; please apply your changes to the latest version and try again",
            )
        patched.setdefault("metadata", {})
        new = self._to_storage(rt, patched)
        new = self._merge_for_subresource(rt, old, new, subresource)
        return self._store_update(rt, old, new)

    def mutate(
        self, rt: ResourceType, namespace: str | None, name: str, fn: Callable[[dict], Any]
    ) -> dict | None:
        old = self._bucket(rt).get((self._ns(rt, namespace), name))
        if old is None:
            return None
        new = copy.deepcopy(old)
        fn(new)
        if new == old:
            return self._from_storage(rt, old)
        if rt.schema is not None:
            new = crd_schema.prune(new, rt.schema)
        meta = new["metadata"]
        if _spec_part(new) != _spec_part(old):
            meta["generation"] = old["metadata"].get("generation", 1) + 1
        meta["resourceVersion"] = self._next_rv()
        self._bucket(rt)[(self._ns(rt, namespace), name)] = new
        if meta.get("ownerReferences") != old["metadata"].get("ownerReferences"):
            self.gc_dirty = True
        if meta.get("deletionTimestamp") and not meta.get("finalizers"):
            return self._remove(rt, new)
        self._emit("MODIFIED", rt, new)
        return self._from_storage(rt, new)

    def delete(
        self,
        rt: ResourceType,
        namespace: str | None,
        name: str,
        *,
        grace_period_seconds: int | None = None,
        preconditions: dict | None = None,
        propagation_policy: str | None = None,
    ) -> dict:
        obj = self._current(rt, namespace, name)
        meta = obj["metadata"]
        if preconditions:
            if preconditions.get("uid") and preconditions["uid"] != meta["uid"]:
                raise conflict(
                    rt,
                    name,
                    f"Precondition failed: UID in precondition: {preconditions['uid']}, "
                    f"UID in object meta: {meta['uid']}",
                )
            rv = preconditions.get("resourceVersion")
            if rv and rv != meta["resourceVersion"]:
                raise conflict(
                    rt,
                    name,
                    f"Precondition failed: ResourceVersion in precondition: {rv}, "
                    f"ResourceVersion in object meta: {meta['resourceVersion']}",
                )
        if propagation_policy not in (None, "Background", "Foreground", "Orphan"):
            raise bad_request(f"Unsupported propagation policy: {propagation_policy!r}")
        finalizers = list(meta.get("finalizers") or [])
        if propagation_policy == "Orphan" and "orphan" not in finalizers:
            self._orphan_dependents(meta["uid"])
        if self.graceful_pod_deletion and rt.key == ("", "pods"):
            # kube-apiserver's pod strategy: a scheduled, unfinished pod is only marked; its kubelet ends it.
            spec, phase = obj.get("spec") or {}, (obj.get("status") or {}).get("phase")
            grace = grace_period_seconds
            if grace is None:
                grace = spec.get("terminationGracePeriodSeconds", 30)
            if spec.get("nodeName") and phase not in ("Succeeded", "Failed") and grace and grace > 0:
                if meta.get("deletionTimestamp") and grace >= (meta.get("deletionGracePeriodSeconds") or 0):
                    return self._from_storage(rt, obj)
                new = copy.deepcopy(obj)
                new["metadata"]["deletionTimestamp"] = meta.get("deletionTimestamp") or now_ts()
                new["metadata"]["deletionGracePeriodSeconds"] = int(grace)
                new["metadata"]["resourceVersion"] = self._next_rv()
                self._bucket(rt)[(self._ns(rt, namespace), name)] = new
                self._emit("MODIFIED", rt, new)
                return self._from_storage(rt, new)
        if finalizers:
            if meta.get("deletionTimestamp"):
                return self._from_storage(rt, obj)
            new = copy.deepcopy(obj)
            new["metadata"]["deletionTimestamp"] = now_ts()
            new["metadata"]["deletionGracePeriodSeconds"] = grace_period_seconds or 0
            new["metadata"]["resourceVersion"] = self._next_rv()
            self._bucket(rt)[(self._ns(rt, namespace), name)] = new
            self._emit("MODIFIED", rt, new)
            return self._from_storage(rt, new)
        if rt.key == ("", "namespaces"):
            self._delete_namespace_contents(name)
        return self._remove(rt, obj)

    def _remove(self, rt: ResourceType, obj: dict) -> dict:
        meta = obj["metadata"]
        self._bucket(rt).pop((self._ns(rt, meta.get("namespace")), meta["name"]), None)
        self._uids.pop(meta["uid"], None)
        final = copy.deepcopy(obj)
        final["metadata"]["resourceVersion"] = self._next_rv()
        self._emit("DELETED", rt, final)
        self.gc_dirty = True
        if self.on_crd and rt.key == ("apiextensions.k8s.io", "customresourcedefinitions"):
            self.on_crd("DELETED", obj)
        return self._from_storage(rt, final)

    def remove_all(self, rt: ResourceType) -> None:
        for obj in list(self._bucket(rt).values()):
            self._remove(rt, obj)

    # --- namespaces and garbage collection ----------------------------------------------------
    def _type_for_key(self, key: tuple[str, str]) -> ResourceType | None:
        group, plural = key
        versions = self.registry.versions_of(group, plural)
        return versions[0] if versions else None

    def _delete_namespace_contents(self, namespace: str) -> None:
        for key, bucket in list(self._objects.items()):
            rt = self._type_for_key(key)
            if rt is None or not rt.namespaced:
                continue
            for ns, name in [k for k in bucket if k[0] == namespace]:
                obj = bucket.get((ns, name))
                if obj is None:
                    continue
                # Finalizers of namespaced objects are dropped: nothing would ever remove them here.
                obj["metadata"].pop("finalizers", None)
                self._remove(rt, obj)

    def _orphan_dependents(self, owner_uid: str) -> None:
        for key, bucket in list(self._objects.items()):
            rt = self._type_for_key(key)
            if rt is None:
                continue
            for (ns, name), obj in list(bucket.items()):
                refs = obj["metadata"].get("ownerReferences") or []
                if any(r.get("uid") == owner_uid for r in refs):
                    self.mutate(
                        rt,
                        ns,
                        name,
                        lambda o, u=owner_uid: o["metadata"].__setitem__(
                            "ownerReferences",
                            [r for r in o["metadata"]["ownerReferences"] if r.get("uid") != u],
                        ),
                    )

    def _owner_exists(self, dependent_ns: str, ref: dict) -> bool:
        where = self._uids.get(ref.get("uid", ""))
        if where is None:
            return False
        key, ns, _ = where
        rt = self._type_for_key(key)
        if rt is not None and rt.namespaced:
            # An owner in another namespace does not count: Kubernetes GC ignores it and collects.
            return ns == dependent_ns
        return True

    def collect_garbage(self) -> int:
        """Delete objects none of whose owners exist (background propagation). Returns the count."""
        self.gc_dirty = False
        doomed: list[tuple[ResourceType, str, str]] = []
        for key, bucket in self._objects.items():
            rt = self._type_for_key(key)
            if rt is None:
                continue
            for (ns, name), obj in bucket.items():
                refs = obj["metadata"].get("ownerReferences")
                if refs and not any(self._owner_exists(ns, r) for r in refs):
                    doomed.append((rt, ns, name))
        count = 0
        for rt, ns, name in doomed:
            if self._bucket(rt).get((ns, name)) is not None:
                try:
                    self.delete(rt, ns or None, name)
                    count += 1
                except ApiError:
                    pass
        return count

"""A tiny in-memory stand-in for the emulator's Store, enough to run the fake KubeVirt / workload controllers
in unit tests without HTTP: create (uid, generateName, resourceVersion), try_get, list with equality label
selectors, mutate, delete with finalizers (deletionTimestamp) and uid preconditions, and subscriptions.
The contract tests run the same controllers against the real emulator."""

from __future__ import annotations

import asyncio
import copy
import datetime as dt
import itertools
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from vmbmc_devcluster.emulator.errors import ApiError


@dataclass
class Event:
    type: str
    rt: Any
    object: dict
    rv: int


class Subscription:
    def __init__(self, store: FakeStore, rt: Any) -> None:
        self.store, self.rt, self.queue = store, rt, asyncio.Queue()

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Event:
        return await self.queue.get()

    def close(self) -> None:
        self.store.subs.discard(self)


def _key(rt: Any) -> tuple[str, str]:
    return (rt.group, rt.plural)


class FakeStore:
    def __init__(self) -> None:
        self.objects: dict[tuple, dict] = {}
        self.subs: set[Subscription] = set()
        self.rv = itertools.count(1)
        self.admission_hooks: dict[tuple[str, str], list[Callable[[dict, dict | None], dict]]] = {}
        self.graceful_pod_deletion = False

    def _emit(self, kind: str, rt: Any, obj: dict) -> None:
        for sub in list(self.subs):
            if sub.rt is None or _key(sub.rt) == _key(rt):
                sub.queue.put_nowait(
                    Event(kind, rt, copy.deepcopy(obj), int(obj["metadata"]["resourceVersion"]))
                )

    def subscribe(self, rt: Any = None) -> Subscription:
        sub = Subscription(self, rt)
        self.subs.add(sub)
        return sub

    def create(self, rt: Any, obj: dict, namespace: str | None = None) -> dict:
        obj = copy.deepcopy(obj)
        meta = obj.setdefault("metadata", {})
        if not meta.get("name"):
            meta["name"] = meta.pop("generateName", "x-") + uuid.uuid4().hex[:5]
        meta["namespace"] = namespace or meta.get("namespace")
        key = (*_key(rt), meta["namespace"], meta["name"])
        if key in self.objects:
            raise ApiError(409, "AlreadyExists", f'{rt.plural} "{meta["name"]}" already exists')
        meta.update(
            uid=str(uuid.uuid4()),
            resourceVersion=str(next(self.rv)),
            generation=1,
            creationTimestamp=dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        )
        obj.setdefault("apiVersion", rt.api_version)
        obj.setdefault("kind", rt.kind)
        self.objects[key] = obj
        self._emit("ADDED", rt, obj)
        return copy.deepcopy(obj)

    def try_get(self, rt: Any, namespace: str, name: str) -> dict | None:
        obj = self.objects.get((*_key(rt), namespace, name))
        return copy.deepcopy(obj) if obj is not None else None

    def get(self, rt: Any, namespace: str, name: str) -> dict:
        obj = self.try_get(rt, namespace, name)
        if obj is None:
            raise ApiError(404, "NotFound", f'{rt.plural} "{name}" not found')
        return obj

    def list(self, rt: Any, namespace: str | None = None, *, label_selector: str | None = None, **_: Any):
        want = dict(p.split("=", 1) for p in label_selector.split(",")) if label_selector else {}
        out = []
        for (g, p, ns, _n), obj in sorted(self.objects.items()):
            if (g, p) != _key(rt) or (namespace and ns != namespace):
                continue
            labels = obj["metadata"].get("labels") or {}
            if all(labels.get(k) == v for k, v in want.items()):
                out.append(copy.deepcopy(obj))
        return out, str(next(self.rv))

    def mutate(self, rt: Any, namespace: str, name: str, fn: Callable[[dict], None]) -> dict | None:
        key = (*_key(rt), namespace, name)
        old = self.objects.get(key)
        if old is None:
            return None
        new = copy.deepcopy(old)
        fn(new)
        if new == old:
            return copy.deepcopy(old)
        if new.get("spec") != old.get("spec"):
            new["metadata"]["generation"] = old["metadata"].get("generation", 1) + 1
        new["metadata"]["resourceVersion"] = str(next(self.rv))
        if new["metadata"].get("deletionTimestamp") and not new["metadata"].get("finalizers"):
            del self.objects[key]
            self._emit("DELETED", rt, new)
            return None
        self.objects[key] = new
        self._emit("MODIFIED", rt, new)
        return copy.deepcopy(new)

    def delete(
        self,
        rt: Any,
        namespace: str,
        name: str,
        *,
        grace_period_seconds: int | None = None,
        preconditions: dict | None = None,
        propagation_policy: str | None = None,
    ) -> dict:
        key = (*_key(rt), namespace, name)
        obj = self.objects.get(key)
        if obj is None:
            raise ApiError(404, "NotFound", f'{rt.plural} "{name}" not found')
        if preconditions and preconditions.get("uid") and preconditions["uid"] != obj["metadata"]["uid"]:
            raise ApiError(409, "Conflict", "Precondition failed: UID in precondition")
        if obj["metadata"].get("finalizers"):
            if not obj["metadata"].get("deletionTimestamp"):

                def mark(o: dict) -> None:
                    o["metadata"]["deletionTimestamp"] = dt.datetime.now(dt.UTC).strftime(
                        "%Y-%m-%dT%H:%M:%SZ"
                    )
                    o["metadata"]["deletionGracePeriodSeconds"] = 0

                self.mutate(rt, namespace, name, mark)
            return self.get(rt, namespace, name)
        del self.objects[key]
        obj["metadata"]["resourceVersion"] = str(next(self.rv))
        self._emit("DELETED", rt, obj)
        # Background garbage collection of dependents (enough for these tests).
        for dep_key, dep in list(self.objects.items()):
            refs = dep["metadata"].get("ownerReferences") or []
            if dep_key[2] == namespace and any(r.get("uid") == obj["metadata"]["uid"] for r in refs):
                dep_rt = next(r for r in self.types if _key(r) == dep_key[:2])
                self.delete(dep_rt, dep_key[2], dep_key[3])
        return obj

    types: list[Any] = []


class FakeRegistry:
    def __init__(self) -> None:
        self.types: dict[tuple[str, str, str], Any] = {}
        self.handlers: dict[tuple[str, str, str, str], Any] = {}
        self.groups: set[tuple[str, str]] = set()

    def register(self, rt: Any) -> None:
        self.types[(rt.group, rt.version, rt.plural)] = rt

    def get(self, group: str, version: str, plural: str) -> Any:
        return self.types.get((group, version, plural))

    def add_api_group(self, group: str, version: str) -> None:
        self.groups.add((group, version))

    def add_subresource_handler(
        self, group: str, version: str, plural: str, sub: str, handler: Any, verbs=("update",)
    ):
        self.handlers[(group, version, plural, sub)] = handler


class FakeEmulator:
    def __init__(self) -> None:
        self.registry = FakeRegistry()
        self.store = FakeStore()
        self.controllers: list[Any] = []

    def add_controller(self, c: Any) -> None:
        self.controllers.append(c)

    def sync_types(self) -> None:
        self.store.types = list(self.registry.types.values())

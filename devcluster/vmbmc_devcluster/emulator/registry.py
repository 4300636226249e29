"""Resource types the emulator serves, and the discovery documents kubectl and clients read."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

ALL_VERBS = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")

# handler(emulator, namespace, name, method, body) -> (status code, body or None)
SubresourceHandler = Callable[[Any, str, str, str, "dict | None"], Awaitable[tuple[int, "dict | None"]]]


@dataclass(frozen=True)
class ResourceType:
    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool
    singular: str = ""
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    subresources: frozenset[str] = frozenset()
    schema: dict | None = field(default=None, compare=False, hash=False)
    printer_columns: tuple[dict, ...] = field(default=(), compare=False, hash=False)
    served_verbs: tuple[str, ...] = ALL_VERBS
    custom: bool = False  # a CRD-defined resource (strategic merge patch → 415)

    @property
    def api_version(self) -> str:
        return self.version if not self.group else f"{self.group}/{self.version}"

    @property
    def list_kind(self) -> str:
        return self.kind + "List"

    @property
    def key(self) -> tuple[str, str]:
        """Storage identity: one store per group+plural, whatever the version."""
        return (self.group, self.plural)


@dataclass
class _Subresource:
    handler: SubresourceHandler
    verbs: tuple[str, ...]


class Registry:
    def __init__(self) -> None:
        self._types: dict[tuple[str, str, str], ResourceType] = {}
        self._subresources: dict[tuple[str, str, str, str], _Subresource] = {}
        self._groups: dict[str, list[str]] = {}  # group -> versions, in registration order
        self.changed: list[Callable[[], None]] = []  # callbacks (discovery caches)

    # --- types -----------------------------------------------------------------------------
    def register(self, rt: ResourceType) -> None:
        self._types[(rt.group, rt.version, rt.plural)] = rt
        self._add_version(rt.group, rt.version)

    def unregister(self, group: str, version: str, plural: str) -> None:
        self._types.pop((group, version, plural), None)
        if not any(g == group and v == version for g, v, _ in self._types) and not any(
            g == group and v == version for g, v, _, _ in self._subresources
        ):
            versions = self._groups.get(group, [])
            if version in versions:
                versions.remove(version)
            if not versions:
                self._groups.pop(group, None)

    def get(self, group: str, version: str, plural: str) -> ResourceType | None:
        return self._types.get((group, version, plural))

    def by_kind(self, api_version: str, kind: str) -> ResourceType | None:
        group, _, version = api_version.rpartition("/")
        for rt in self._types.values():
            if rt.group == group and rt.version == version and rt.kind == kind:
                return rt
        return None

    def versions_of(self, group: str, plural: str) -> list[ResourceType]:
        return [rt for rt in self._types.values() if rt.group == group and rt.plural == plural]

    def types(self) -> list[ResourceType]:
        return list(self._types.values())

    def _add_version(self, group: str, version: str) -> None:
        versions = self._groups.setdefault(group, [])
        if version not in versions:
            versions.append(version)

    # --- subresources served by code (KubeVirt's aggregated API) ----------------------------
    def add_api_group(self, group: str, version: str) -> None:
        self._add_version(group, version)

    def add_subresource_handler(
        self,
        group: str,
        version: str,
        plural: str,
        subresource: str,
        handler: SubresourceHandler,
        verbs: tuple[str, ...] = ("update",),
    ) -> None:
        self._add_version(group, version)
        self._subresources[(group, version, plural, subresource)] = _Subresource(handler, verbs)

    def subresource_handler(self, group: str, version: str, plural: str, sub: str) -> _Subresource | None:
        return self._subresources.get((group, version, plural, sub))

    def has_group_version(self, group: str, version: str) -> bool:
        return version in self._groups.get(group, [])

    # --- discovery --------------------------------------------------------------------------
    def api_versions(self) -> dict[str, Any]:
        return {
            "kind": "APIVersions",
            "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1"}],
        }

    def _group_doc(self, group: str) -> dict[str, Any]:
        versions = [{"groupVersion": f"{group}/{v}", "version": v} for v in self._groups[group]]
        return {
            "kind": "APIGroup",
            "apiVersion": "v1",
            "name": group,
            "versions": versions,
            "preferredVersion": versions[0],
        }

    def api_group_list(self) -> dict[str, Any]:
        groups = [self._group_doc(g) for g in self._groups if g]
        return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}

    def api_group(self, group: str) -> dict[str, Any] | None:
        if not group or group not in self._groups:
            return None
        return self._group_doc(group)

    def resource_list(self, group: str, version: str) -> dict[str, Any] | None:
        if not self.has_group_version(group, version):
            return None
        resources: list[dict[str, Any]] = []
        for (g, v, _), rt in sorted(self._types.items()):
            if g != group or v != version:
                continue
            entry: dict[str, Any] = {
                "name": rt.plural,
                "singularName": rt.singular or rt.kind.lower(),
                "namespaced": rt.namespaced,
                "kind": rt.kind,
                "verbs": list(rt.served_verbs),
            }
            if rt.short_names:
                entry["shortNames"] = list(rt.short_names)
            if rt.categories:
                entry["categories"] = list(rt.categories)
            resources.append(entry)
            for sub in sorted(rt.subresources):
                verbs = ["get", "patch", "update"] if sub == "status" else ["update"]
                resources.append(
                    {
                        "name": f"{rt.plural}/{sub}",
                        "singularName": "",
                        "namespaced": rt.namespaced,
                        "kind": rt.kind,
                        "verbs": verbs,
                    }
                )
        for (g, v, plural, sub), spec in sorted(self._subresources.items()):
            if g == group and v == version:
                kind = next((t.kind for t in self._types.values() if t.plural == plural), plural)
                resources.append(
                    {
                        "name": f"{plural}/{sub}",
                        "singularName": "",
                        "namespaced": True,
                        "kind": kind,
                        "verbs": list(spec.verbs),
                    }
                )
        gv = version if not group else f"{group}/{version}"
        return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources}

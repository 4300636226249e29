"""CustomResourceDefinitions: posting one registers its resource, deleting one unregisters it."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from vmbmc_devcluster.emulator.registry import ResourceType
from vmbmc_devcluster.emulator.store import now_ts

if TYPE_CHECKING:
    from vmbmc_devcluster.emulator.emulator import Emulator

log = logging.getLogger("vmbmc.emulator.crds")
CRD_KEY = ("apiextensions.k8s.io", "customresourcedefinitions")


def resource_types(crd: dict) -> list[ResourceType]:
    spec = crd.get("spec") or {}
    names = spec.get("names") or {}
    out = []
    for version in spec.get("versions") or []:
        if not version.get("served", True):
            continue
        subresources = frozenset((version.get("subresources") or {}).keys())
        out.append(
            ResourceType(
                group=spec["group"],
                version=version["name"],
                plural=names["plural"],
                kind=names["kind"],
                namespaced=spec.get("scope", "Namespaced") == "Namespaced",
                singular=names.get("singular", names["kind"].lower()),
                short_names=tuple(names.get("shortNames") or ()),
                categories=tuple(names.get("categories") or ()),
                subresources=subresources,
                schema=(version.get("schema") or {}).get("openAPIV3Schema"),
                printer_columns=tuple(version.get("additionalPrinterColumns") or ()),
                custom=True,
            )
        )
    return out


def install_crd_support(emulator: Emulator) -> None:
    store, registry = emulator.store, emulator.registry
    crd_rt = registry.get(*CRD_KEY[:1], "v1", CRD_KEY[1])
    assert crd_rt is not None

    def on_crd(event: str, crd: dict) -> None:
        types = resource_types(crd)
        if event == "DELETED":
            for rt in types:
                store.remove_all(rt)
                registry.unregister(rt.group, rt.version, rt.plural)
            return
        for rt in types:
            registry.register(rt)
        if event == "MODIFIED":
            return
        names = crd["spec"]["names"]
        status = {
            "conditions": [
                {
                    "type": "NamesAccepted",
                    "status": "True",
                    "reason": "NoConflicts",
                    "message": "no conflicts found",
                    "lastTransitionTime": now_ts(),
                },
                {
                    "type": "Established",
                    "status": "True",
                    "reason": "InitialNamesAccepted",
                    "message": "the initial names have been accepted",
                    "lastTransitionTime": now_ts(),
                },
            ],
            "acceptedNames": {k: v for k, v in names.items()},
            "storedVersions": [v["name"] for v in crd["spec"]["versions"] if v.get("storage")],
        }
        # Established as soon as it is posted, like a real server a moment later.
        emulator.loop.call_soon(
            lambda: store.mutate(
                crd_rt, None, crd["metadata"]["name"], lambda o: o.__setitem__("status", status)
            )
        )
        log.info("CRD registered", extra={"crd": crd["metadata"]["name"]})

    store.on_crd = on_crd

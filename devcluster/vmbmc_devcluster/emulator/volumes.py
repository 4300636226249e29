"""A default StorageClass's provisioner and Kubernetes' PV binder, as far as PVC sizes go.

    install_volume_binder(emulator)

Every PersistentVolumeClaim that asks for storage is bound at once (Immediate binding): `status.phase:
Bound`, `status.accessModes` and `status.capacity.storage` (the size Kubernetes reports for the claim,
here exactly the request, as local-path and hostpath provisioners give), and `spec.volumeName` naming its
(unserved) PersistentVolume `pvc-<uid>`, as a dynamic provisioner's volume is named. A claim without a
request stays Pending, as kube-apiserver would have refused it.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from vmbmc_devcluster.emulator.errors import ApiError

if TYPE_CHECKING:
    from vmbmc_devcluster.emulator.emulator import Emulator

log = logging.getLogger("vmbmc.emulator.volumes")


def _bound(pvc: dict[str, Any]) -> bool:
    status = pvc.get("status") or {}
    return status.get("phase") == "Bound" and bool((status.get("capacity") or {}).get("storage"))


class VolumeBinder:
    async def run(self, emulator: Emulator) -> None:
        store = emulator.store
        rt = emulator.registry.get("", "v1", "persistentvolumeclaims")
        assert rt is not None
        sub = store.subscribe(rt)
        try:
            existing, _ = store.list(rt)
            for pvc in existing:
                self._bind(emulator, pvc)
            async for event in sub:
                if event.type != "DELETED":
                    self._bind(emulator, event.object)
        finally:
            sub.close()

    @staticmethod
    def _bind(emulator: Emulator, pvc: dict[str, Any]) -> None:
        meta, spec = pvc["metadata"], pvc.get("spec") or {}
        request = ((spec.get("resources") or {}).get("requests") or {}).get("storage")
        if _bound(pvc) or not request or meta.get("deletionTimestamp"):
            return
        rt = emulator.registry.get("", "v1", "persistentvolumeclaims")

        def bind(o: dict[str, Any]) -> None:
            if o["metadata"].get("uid") != meta.get("uid"):
                return
            o.setdefault("spec", {}).setdefault("volumeName", f"pvc-{meta.get('uid')}")
            o["status"] = {
                "phase": "Bound",
                "accessModes": list(spec.get("accessModes") or ["ReadWriteOnce"]),
                "capacity": {"storage": str(request)},
            }

        try:
            emulator.store.mutate(rt, meta["namespace"], meta["name"], bind)
        except ApiError as err:
            if err.code != 404:
                raise
        log.info("pvc bound", extra={"namespace": meta["namespace"], "pvc": meta["name"], "size": request})


def install_volume_binder(emulator: Emulator) -> VolumeBinder:
    binder = VolumeBinder()
    emulator.add_controller(binder)
    return binder

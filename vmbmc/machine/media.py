"""Virtual media as KubeVirt and CDI carry it. Pure: no I/O, no clock.

One CD-ROM per BMC. Inserting an image makes a CDI DataVolume `vmbmc-<bmc>-media` (in the VM's namespace)
import the URL, and puts one CD-ROM disk named `vmbmc-media` backed by it into the VM's template; KubeVirt
gives the VMI that disk at its next start. Ejecting takes the disk and its volume out and deletes the
DataVolume. What the BMC shows is `status.virtualMedia` (written by the kbmc), one entry
{device, image, inserted, dataVolume, phase, message}; `inserted` is true only once CDI says the import
Succeeded.
"""

from __future__ import annotations

import re
import urllib.parse
from dataclasses import dataclass
from typing import Any

from vmbmc.machine.errors import Invalid

MEDIA_NAME = "vmbmc-media"  # the disk and the volume the kbmc may add to its VM (and nothing else)
DEVICE = "Cd"
CDI_GROUP, CDI_VERSION = "cdi.kubevirt.io", "v1beta1"
VOLUMES_PATH = "/spec/template/spec/volumes"
DISKS_PATH = "/spec/template/spec/domain/devices/disks"
DEFAULT_SIZE = "2Gi"  # the PVC an ISO is imported into; CDI needs a size, an ISO's is not known beforehand

INSERT_ACTION = "insert_media"
EJECT_ACTION = "eject_media"
REASONS = {INSERT_ACTION: "InsertMediaRequested", EJECT_ACTION: "EjectMediaRequested"}
INSERTED_REASON = "MediaInserted"
EJECTED_REASON = "MediaEjected"
FAILED_REASON = "MediaInsertFailed"

# Phases of the entry; the first three are CDI's DataVolume phases as they come.
SCHEDULED, IN_PROGRESS, SUCCEEDED, FAILED = "ImportScheduled", "ImportInProgress", "Succeeded", "Failed"


@dataclass(frozen=True, slots=True)
class MediaStatus:
    """What a client sees of the one CD-ROM: empty, importing, inserted or failed."""

    image: str = ""
    inserted: bool = False
    data_volume: str = ""
    phase: str = ""  # "" = empty
    message: str = ""

    @property
    def importing(self) -> bool:
        return bool(self.image) and not self.inserted and self.phase not in (FAILED, "")

    @property
    def failed(self) -> bool:
        return self.phase == FAILED

    @property
    def image_name(self) -> str:
        path = urllib.parse.urlsplit(self.image).path
        return path.rstrip("/").rsplit("/", 1)[-1] if path else ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "device": DEVICE,
            "image": self.image,
            "inserted": self.inserted,
            "dataVolume": self.data_volume,
            "phase": self.phase,
            "message": self.message,
        }

    @classmethod
    def from_entries(cls, entries: list[dict[str, Any]] | None) -> MediaStatus:
        for entry in entries or []:
            if isinstance(entry, dict) and entry.get("device") == DEVICE:
                return cls(
                    image=str(entry.get("image") or ""),
                    inserted=bool(entry.get("inserted")),
                    data_volume=str(entry.get("dataVolume") or ""),
                    phase=str(entry.get("phase") or ""),
                    message=str(entry.get("message") or ""),
                )
        return cls()


def data_volume_name(owner: str) -> str:
    """`vmbmc-<bmc>-media`: fixed per BMC, so the kbmc's rights can name it (resourceNames)."""
    return f"vmbmc-{owner}-media"


_HOST = re.compile(r"^[A-Za-z0-9._~%!$&'()*+,;=:\[\]-]+$")


def check_image(url: str) -> None:
    """Any http(s) URL the cluster can reach (loopback included); no image format is checked."""
    try:
        parts = urllib.parse.urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError as err:
        raise Invalid(f"{url!r} is not a valid URL: {err}") from err
    if parts.scheme not in ("http", "https"):
        raise Invalid(f"{url!r} is not an http:// or https:// URL (CDI imports over HTTP)")
    if not parts.hostname or not _HOST.match(parts.netloc.rpartition("@")[2]) or " " in url:
        raise Invalid(f"{url!r} has no valid host")
    if parts.username or parts.password:
        raise Invalid("credentials in the image URL are not supported")


def data_volume(name: str, namespace: str, url: str, labels: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": f"{CDI_GROUP}/{CDI_VERSION}",
        "kind": "DataVolume",
        "metadata": {"name": name, "namespace": namespace, "labels": dict(labels)},
        "spec": {
            "source": {"http": {"url": url}},
            "storage": {
                "accessModes": ["ReadWriteOnce"],
                "resources": {"requests": {"storage": DEFAULT_SIZE}},
            },
        },
    }


def import_state(dv: dict[str, Any] | None) -> tuple[str, str]:
    """(phase, message) of a DataVolume as CDI reports it: Succeeded, Failed, or still going.

    CDI ≥ 1.3x keeps a failing import `ImportInProgress` and restarts its importer pod (restartCount
    grows, condition Running False with reason Error): that counts as Failed here, with CDI's message."""
    if dv is None:
        return FAILED, "the DataVolume is gone"
    status = dv.get("status") or {}
    phase = str(status.get("phase") or SCHEDULED)
    running = next((c for c in status.get("conditions") or [] if c.get("type") == "Running"), {})
    if phase == SUCCEEDED:
        return SUCCEEDED, ""
    if phase == FAILED or (
        running.get("status") == "False"
        and running.get("reason") in ("Error", "ImportFailed")
        and int(status.get("restartCount") or 0) > 0
    ):
        return FAILED, str(running.get("message") or "the import failed")
    progress = status.get("progress")
    return phase, f"progress {progress}" if progress and progress != "N/A" else ""


def _template(vm: dict[str, Any]) -> dict[str, Any]:
    return ((vm.get("spec") or {}).get("template") or {}).get("spec") or {}


def _index(items: list[dict[str, Any]], name: str) -> int:
    return next((i for i, item in enumerate(items) if item.get("name") == name), -1)


def attach_ops(vm: dict[str, Any], dv: str) -> list[dict[str, Any]]:
    """JSON Patch ops putting the CD-ROM `vmbmc-media` backed by DataVolume `dv` into the VM."""
    spec = _template(vm)
    disks = list(((spec.get("domain") or {}).get("devices") or {}).get("disks") or [])
    volumes = list(spec.get("volumes") or [])
    disk = {"name": MEDIA_NAME, "cdrom": {"bus": "sata", "readonly": True}}
    volume = {"name": MEDIA_NAME, "dataVolume": {"name": dv}}
    ops: list[dict[str, Any]] = []
    i = _index(disks, MEDIA_NAME)
    if i < 0:
        ops.append({"op": "add", "path": f"{DISKS_PATH}/-", "value": disk} if disks else
                   {"op": "add", "path": DISKS_PATH, "value": [disk]})
    j = _index(volumes, MEDIA_NAME)
    if j >= 0:
        ops.append({"op": "replace", "path": f"{VOLUMES_PATH}/{j}", "value": volume})
    else:
        ops.append({"op": "add", "path": f"{VOLUMES_PATH}/-", "value": volume} if volumes else
                   {"op": "add", "path": VOLUMES_PATH, "value": [volume]})
    return ops


def detach_ops(vm: dict[str, Any]) -> list[dict[str, Any]]:
    """JSON Patch ops taking the disk and volume `vmbmc-media` out (nothing else)."""
    spec = _template(vm)
    disks = list(((spec.get("domain") or {}).get("devices") or {}).get("disks") or [])
    volumes = list(spec.get("volumes") or [])
    ops: list[dict[str, Any]] = []
    i = _index(disks, MEDIA_NAME)
    if i >= 0:
        ops.append({"op": "remove", "path": f"{DISKS_PATH}/{i}"})
    j = _index(volumes, MEDIA_NAME)
    if j >= 0:
        ops.append({"op": "remove", "path": f"{VOLUMES_PATH}/{j}"})
    return ops


def attached(vm: dict[str, Any] | None) -> bool:
    return vm is not None and _index(list(_template(vm).get("volumes") or []), MEDIA_NAME) >= 0

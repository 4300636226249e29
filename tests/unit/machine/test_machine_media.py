"""The pure part of virtual media: URLs, the VM patch, CDI's states."""

from __future__ import annotations

import copy

import jsonpatch
import pytest

from vmbmc.machine import media as md
from vmbmc.machine.errors import Invalid


@pytest.mark.parametrize(
    "url",
    ["http://127.0.0.1/x.iso", "https://images.example.com:8443/a/b.iso?x=1", "http://[::1]:8080/boot.iso"],
)
def test_valid_images(url: str) -> None:
    md.check_image(url)


@pytest.mark.parametrize(
    "url",
    ["not a url", "ftp://127.0.0.1/x.iso", "http:///x.iso", "http://u:p@host/x.iso", "http://host:99999/x",
     "nfs://host/x.iso", ""],
)
def test_invalid_images(url: str) -> None:
    with pytest.raises(Invalid):
        md.check_image(url)


def _vm(disks: list | None, volumes: list | None) -> dict:
    spec: dict = {"domain": {"devices": {}}}
    if disks is not None:
        spec["domain"]["devices"]["disks"] = disks
    if volumes is not None:
        spec["volumes"] = volumes
    return {"spec": {"template": {"spec": spec}}}


ROOT_DISK, ROOT_VOLUME = {"name": "root", "disk": {}}, {"name": "root"}


@pytest.mark.parametrize("disks,volumes", [(None, None), ([ROOT_DISK], [ROOT_VOLUME])])
def test_attach_then_detach_gives_the_vm_back(disks: list | None, volumes: list | None) -> None:
    vm = _vm(copy.deepcopy(disks), copy.deepcopy(volumes))
    attached = jsonpatch.apply_patch(vm, md.attach_ops(vm, "vmbmc-b-media"))
    spec = attached["spec"]["template"]["spec"]
    cdrom = {"name": "vmbmc-media", "cdrom": {"bus": "sata", "readonly": True}}
    assert spec["domain"]["devices"]["disks"][-1] == cdrom
    assert spec["volumes"][-1] == {"name": "vmbmc-media", "dataVolume": {"name": "vmbmc-b-media"}}
    assert md.attached(attached) and not md.attached(vm)
    assert md.attach_ops(attached, "vmbmc-b-media")[0]["op"] == "replace"  # idempotent: no second disk
    detached = jsonpatch.apply_patch(attached, md.detach_ops(attached))
    spec = detached["spec"]["template"]["spec"]
    assert spec["domain"]["devices"]["disks"] == (disks or [])
    assert spec["volumes"] == (volumes or [])
    assert md.detach_ops(detached) == []


def _dv(phase: str, running: dict | None = None, restarts: int = 0, progress: str = "") -> dict:
    status: dict = {"phase": phase, "restartCount": restarts}
    if running is not None:
        status["conditions"] = [{"type": "Running", **running}]
    if progress:
        status["progress"] = progress
    return {"status": status}


def test_import_states() -> None:
    assert md.import_state(_dv("Succeeded")) == (md.SUCCEEDED, "")
    assert md.import_state(_dv("ImportInProgress", progress="42.00%")) == (md.IN_PROGRESS, "progress 42.00%")
    assert md.import_state(_dv("ImportScheduled", progress="N/A")) == (md.SCHEDULED, "")
    assert md.import_state({}) == (md.SCHEDULED, "")
    failed = {"status": "False", "reason": "Error", "message": "got 404"}
    assert md.import_state(_dv("Failed", failed)) == (md.FAILED, "got 404")
    # recent CDI: the importer pod restarts, the phase stays ImportInProgress
    assert md.import_state(_dv("ImportInProgress", failed, restarts=2)) == (md.FAILED, "got 404")
    assert md.import_state(_dv("ImportInProgress", failed, restarts=0))[0] == md.IN_PROGRESS
    assert md.import_state(None)[0] == md.FAILED


def test_status_entry_round_trip() -> None:
    s = md.MediaStatus("http://h/dir/boot.iso", True, "dv", md.SUCCEEDED, "")
    assert md.MediaStatus.from_entries([s.to_dict()]) == s
    assert s.image_name == "boot.iso" and not s.importing and not s.failed
    assert md.MediaStatus.from_entries([]) == md.MediaStatus()
    assert md.MediaStatus("http://h/x", False, "dv", md.IN_PROGRESS).importing


def test_cd_boots_the_virtual_cd_before_the_vms_own_cdrom() -> None:
    from vmbmc.machine import boot
    from vmbmc.machine.types import BootTarget

    vm = _vm([{"name": "root", "disk": {}}, {"name": "installer", "cdrom": {}}], [])
    vm = jsonpatch.apply_patch(vm, md.attach_ops(vm, "dv"))
    orders = boot.boot_orders_for(vm, BootTarget.CD)
    assert orders == {"cdrom:vmbmc-media": 1, "cdrom:installer": 2, "disk:root": 3}
    assert boot.boot_orders_for(vm, BootTarget.HDD)["disk:root"] == 1

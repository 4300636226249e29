"""Metal3's `redfish-virtualmedia://` flow against `vmbmc demo` as a user runs it: the controller makes the
BMC and its kbmc pod (run as a real `vmbmc kbmc` under the Roles the controller wrote), sushy inserts an
ISO served from 127.0.0.1, boots it once in UEFI and ejects it; kubectl shows the DataVolume, the VMI's
CD-ROM and the Events as an operator reads them."""

from __future__ import annotations

import json
import subprocess
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sushy
import urllib3
from sushy import BootSourceOverrideEnabled, BootSourceOverrideMode, PowerState, ResetType

from tests.image_server import serve_images
from tests.kubectl_events import assert_cause_first, described_reasons
from vmbmc_devcluster.testing.demo_process import start_demo
from vmbmc_devcluster.testing.plugin import KUBECTL
from vmbmc_devcluster.testing.waiting import wait_until

WAIT = 60.0  # seconds: every wait below is bounded by this


def until(pred: Any, what: str) -> Any:
    return wait_until(pred, WAIT, what)


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[dict[str, Any]]:
    demo = start_demo(tmp_path, "--vms", "1", "--redfish", "--workdir", str(tmp_path / "work"))
    try:
        yield demo.endpoints
    finally:
        demo.stop()


def test_ironic_virtual_media_boot_in_the_demo(demo: dict[str, Any], tmp_path: Path) -> None:
    bmc = demo["bmcs"][0]
    namespace, vm = bmc["vm"].split("/")
    bmc_ns, bmc_name = bmc["bmc"].split("/")

    def kubectl(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([KUBECTL, "--kubeconfig", demo["kubeconfig"], *args],
                              capture_output=True, text=True, timeout=30)

    def get(*args: str) -> dict[str, Any] | None:
        out = kubectl("get", *args, "-o", "json")
        return json.loads(out.stdout) if out.returncode == 0 else None

    warnings.simplefilter("ignore", urllib3.exceptions.InsecureRequestWarning)
    auth = sushy.auth.SessionOrBasicAuth(bmc["username"], bmc["password"])
    with serve_images(tmp_path) as images:
        image = f"{images}/small.iso"
        try:
            conn = sushy.Sushy(bmc["redfish"], verify=False, auth=auth)
            system = conn.get_system(f"/redfish/v1/Systems/{vm}")
            cd = system.virtual_media.get_members()[0]
            cd.insert_media(image)
            cd.refresh()
            assert cd.inserted and cd.image == image
            dv = get("dv", "-n", namespace, f"vmbmc-{bmc_name}-media")  # kubectl's short name for DataVolumes
            assert dv is not None and dv["status"]["phase"] == "Succeeded", dv
            system.set_system_boot_options(
                sushy.BootSource.CD, enabled=BootSourceOverrideEnabled.ONCE, mode=BootSourceOverrideMode.UEFI
            )
            system.reset_system(ResetType.ON)
            until(lambda: system.refresh() or system.power_state == PowerState.ON, "On")
            vmi = until(lambda: get("vmi", "-n", namespace, vm), "the VMI")
            disk = next(d for d in vmi["spec"]["domain"]["devices"]["disks"] if d["name"] == "vmbmc-media")
            assert disk["bootOrder"] == 1  # booted from the CD-ROM
            cd.eject_media()
            cd.refresh()
            assert not cd.inserted
            until(lambda: get("dv", "-n", namespace, f"vmbmc-{bmc_name}-media") is None, "DataVolume deleted")
            system.reset_system(ResetType.FORCE_OFF)
            until(lambda: system.refresh() or system.power_state == PowerState.OFF, "Off")
        finally:
            auth.close()
    events = get("events", "-n", bmc_ns, "--field-selector", f"involvedObject.name={bmc_name}")
    assert events is not None
    seen = {e["reason"] for e in events["items"]}
    assert {"InsertMediaRequested", "MediaInserted", "EjectMediaRequested", "MediaEjected"} <= seen, seen
    # kubectl describe lists each of the kbmc's Events after its cause, within one second too
    reasons = described_reasons(kubectl("describe", "vmbmc", "-n", bmc_ns, bmc_name).stdout)
    assert_cause_first(reasons, events["items"], [
        ("InsertMediaRequested", "MediaInserted"), ("EjectMediaRequested", "MediaEjected"),
        ("BootOverrideSet", "BootOverrideRestored"), ("PowerOnRequested", "PoweredOn"),
    ])  # fmt: skip
    restore = len(reasons) - 1 - reasons[::-1].index("BootDeviceChanged")  # the restore's boot change
    assert reasons.index("BootOverrideRestored") < restore, reasons
    status = get("vmbmc", "-n", bmc_ns, bmc_name)
    assert status is not None and not status["status"].get("virtualMedia")

"""What Ironic meets on a fresh `vmbmc demo --redfish`, before and after it inserts virtual media: DMTF's
Interop Validator with OpenStack Ironic's profile at zero failures in both states, on both VirtualMedia
paths, and an inventory its inspection can use (sushy's `simple_storage`: the 10Gi DataVolume disk, so
`local_gb` is at least 9 rather than 0)."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sushy
import urllib3

from tests.image_server import serve_images
from tests.redfish_validators import interop_failures
from vmbmc_devcluster.testing.demo_process import start_demo

GIB = 1 << 30
MANAGER = "/redfish/v1/Managers/BMC"


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("ironic-demo")
    demo = start_demo(tmp, "--vms", "1", "--redfish", "--workdir", str(tmp / "work"))
    try:
        yield demo.endpoints["bmcs"][0]
    finally:
        demo.stop()


def _validate(bmc: dict[str, Any], logdir: Path) -> None:
    base = bmc["redfish"].removesuffix("/redfish/v1")
    fails, text = interop_failures(base, bmc["username"], bmc["password"], logdir)
    assert not fails, "\n".join(fails) + text[-3000:]
    system = f"/redfish/v1/Systems/{bmc['vm'].split('/')[1]}"
    for path in (f"{system}/VirtualMedia/Cd", f"{MANAGER}/VirtualMedia/Cd", f"{system}/SimpleStorage/1"):
        assert f"Validating {path}..." in text, f"the crawl did not reach {path}"


def test_ironic_profile_before_and_after_insert_media(demo: dict[str, Any], tmp_path: Path) -> None:
    _validate(demo, tmp_path / "fresh")  # the state a client meets first: nothing inserted
    warnings.simplefilter("ignore", urllib3.exceptions.InsecureRequestWarning)
    auth = sushy.auth.BasicAuth(demo["username"], demo["password"])
    conn = sushy.Sushy(demo["redfish"], verify=False, auth=auth)
    system = conn.get_system(f"/redfish/v1/Systems/{demo['vm'].split('/')[1]}")
    with serve_images(tmp_path) as images:
        cd = system.virtual_media.get_members()[0]
        assert not cd.inserted and cd.image is None
        cd.insert_media(f"{images}/small.iso")
        cd.refresh()
        assert cd.inserted
        _validate(demo, tmp_path / "inserted")
        cd.eject_media()


def test_inspection_finds_the_10gi_disk(demo: dict[str, Any]) -> None:
    """sushy as Ironic's redfish inspect interface reads it: an Enabled device with CapacityBytes (Ironic
    ignores devices under 4 GiB, without a size or not Enabled), from the VM's DataVolume's PVC."""
    warnings.simplefilter("ignore", urllib3.exceptions.InsecureRequestWarning)
    auth = sushy.auth.BasicAuth(demo["username"], demo["password"])
    conn = sushy.Sushy(demo["redfish"], verify=False, auth=auth)
    system = conn.get_system(f"/redfish/v1/Systems/{demo['vm'].split('/')[1]}")
    sizes = system.simple_storage.disks_sizes_bytes
    assert sizes and max(sizes) >= 9 * GIB, sizes
    assert system.simple_storage.max_size_bytes == 10 * GIB
    (storage,) = system.simple_storage.get_members()
    (root,) = [d for d in storage.devices if d.name == "rootdisk"]
    assert root.status.state.value == "Enabled" and root.capacity_bytes == 10 * GIB

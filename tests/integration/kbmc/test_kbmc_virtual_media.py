"""Redfish VirtualMedia end to end: a real `vmbmc kbmc --bmc` process holding only the Roles the controller
writes, the emulator's CDI importing the image over HTTP from a server on 127.0.0.1, and sushy driving it
as Ironic's redfish-virtual-media boot interface does (insert, boot Cd once in UEFI, ForceRestart, eject);
then gofish's PATCH insert and the error answers, read with httpx.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import sushy
import urllib3
from kbmc_process import PASSWORD, USER, KbmcProcess, serve_bmc
from machine_cluster import Cluster, vm_body
from sushy import BootSource, BootSourceOverrideEnabled, BootSourceOverrideMode, PowerState, ResetType

from tests.image_server import serve_images
from tests.redfish_validators import interop_failures, run_validator, service_failures
from vmbmc_devcluster.emulator.cdi import DV_RT
from vmbmc_devcluster.emulator.harness import EmulatorThread
from vmbmc_devcluster.testing.waiting import wait_until

VM, BMC = "media-vm", "media-bmc"
DV = f"vmbmc-{BMC}-media"
DATA_DV = f"{VM}-data"
SYSTEM = f"/redfish/v1/Systems/{VM}"
MANAGER = "/redfish/v1/Managers/BMC"
WAIT = 30.0  # seconds: every poll below is bounded by this


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """An HTTP server on 127.0.0.1 serving `small.iso` (and a 404 for anything else)."""
    with serve_images(tmp_path_factory.mktemp("images")) as url:
        yield url


@pytest.fixture(scope="module")
def served(
    emu: EmulatorThread, cluster: Cluster, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, KbmcProcess]]:
    """The kbmc of a VM without a CD-ROM of its own, Redfish over HTTPS (its self-signed certificate)."""
    vm = vm_body(VM, cdrom=False)
    # a fixed MAC, as Metal3 hosts declare one (bootMACAddress): Ironic's profile wants MACAddress while Off
    vm["spec"]["template"]["spec"]["domain"]["devices"]["interfaces"][0]["macAddress"] = "52:54:00:00:21:21"
    # a disk Ironic can use: a 10Gi DataVolume (KubeVirt creates it, CDI its PVC), read by the kbmc by name
    vm["spec"]["dataVolumeTemplates"] = [{"metadata": {"name": DATA_DV}, "spec": {
        "source": {"blank": {}}, "storage": {"resources": {"requests": {"storage": "10Gi"}}}}}]
    vm["spec"]["template"]["spec"]["domain"]["devices"]["disks"].append({"name": "data", "disk": {}})
    vm["spec"]["template"]["spec"]["volumes"].append({"name": "data", "dataVolume": {"name": DATA_DV}})
    emu.call(emu.emulator.store.create, cluster.vms, vm, "default")
    served = serve_bmc(emu, cluster, tmp_path_factory.mktemp("kbmc-media"), BMC, VM, redfish="https")
    yield served.redfish, served.kbmc
    served.kbmc.stop()


@pytest.fixture(scope="module")
def redfish(served: tuple[str, KbmcProcess]) -> str:
    return served[0]


@pytest.fixture
def client(redfish: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=redfish, auth=(USER, PASSWORD), timeout=60, verify=False) as c:
        c.post(f"{SYSTEM}/VirtualMedia/Cd/Actions/VirtualMedia.EjectMedia")  # every test starts empty
        yield c


def until(pred: Any, what: str) -> Any:
    return wait_until(pred, WAIT, what)


def template(cluster: Cluster) -> dict[str, Any]:
    vm = cluster.vm(VM)
    assert vm is not None
    return vm["spec"]["template"]["spec"]


def media_disk(spec: dict[str, Any]) -> dict[str, Any] | None:
    return next((d for d in spec["domain"]["devices"].get("disks") or [] if d["name"] == "vmbmc-media"), None)


def media_volume(spec: dict[str, Any]) -> dict[str, Any] | None:
    return next((v for v in spec.get("volumes") or [] if v["name"] == "vmbmc-media"), None)


def data_volume(emu: EmulatorThread) -> dict[str, Any] | None:
    return emu.call(emu.emulator.store.try_get, DV_RT, "default", DV)


def reasons(cluster: Cluster) -> list[str]:
    return [e["reason"] for e in sorted(cluster.events_for(BMC), key=lambda e: e.get("eventTime") or "")]


def error_id(response: httpx.Response) -> str:
    return response.json()["error"]["@Message.ExtendedInfo"][0]["MessageId"].rsplit(".", 1)[-1]


def test_sushy_inserts_boots_cd_once_and_ejects(
    emu: EmulatorThread, cluster: Cluster, redfish: str, images: str, client: httpx.Client
) -> None:
    image = f"{images}/small.iso"
    urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)
    auth = sushy.auth.BasicAuth(USER, PASSWORD)
    conn = sushy.Sushy(redfish + "/redfish/v1", auth=auth, verify=False)
    system = conn.get_system(SYSTEM)
    # Ironic: the System's collection when the System links one
    members = system.virtual_media.get_members()
    assert [m.identity for m in members] == ["Cd"]
    cd = members[0]
    assert {t.value for t in cd.media_types} >= {"CD", "DVD"}
    assert not cd.inserted
    assert "Cd" not in system.boot.allowed_values  # the VM has no CD-ROM yet

    cd.insert_media(image)  # answers once CDI's import has finished (a small image: well within the bound)
    cd.refresh()
    assert cd.inserted and cd.image == image and cd.write_protected
    dv = data_volume(emu)
    assert dv is not None and dv["status"]["phase"] == "Succeeded"
    assert dv["metadata"]["labels"]["virtualmachinebmc.kubevirt.io/bmc"] == BMC
    assert dv["spec"]["source"]["http"]["url"] == image
    spec = template(cluster)
    assert media_disk(spec) == {"name": "vmbmc-media", "cdrom": {"bus": "sata", "readonly": True}}
    assert media_volume(spec) == {"name": "vmbmc-media", "dataVolume": {"name": DV}}
    status = cluster.bmc(BMC)["status"]["virtualMedia"]
    assert status == [{"device": "Cd", "image": image, "inserted": True, "dataVolume": DV,
                       "phase": "Succeeded", "message": ""}]
    # the same device through the Manager (bmclib looks there first)
    manager_cd = conn.get_manager(MANAGER).virtual_media.get_members()[0]
    assert manager_cd.inserted and manager_cd.image == image

    # Ironic's deploy: power on, boot Cd once in UEFI, ForceRestart
    system.reset_system(ResetType.ON)
    until(lambda: system.refresh() or system.power_state == PowerState.ON, "On")
    first_vmi = cluster.vmi(VM)["metadata"]["uid"]
    system.refresh()
    assert "Cd" in system.boot.allowed_values
    system.set_system_boot_options(
        BootSource.CD, enabled=BootSourceOverrideEnabled.ONCE, mode=BootSourceOverrideMode.UEFI
    )
    system.reset_system(ResetType.FORCE_RESTART)
    vmi = until(
        lambda: (v := cluster.vmi(VM)) and v["metadata"]["uid"] != first_vmi and v.get("status", {}).get(
            "phase") == "Running" and v, "a new VMI")
    booted = media_disk(vmi["spec"])
    assert booted is not None and booted["bootOrder"] == 1  # the VMI boots from the CD-ROM
    assert media_volume(vmi["spec"]) == {"name": "vmbmc-media", "dataVolume": {"name": DV}}
    assert "efi" in vmi["spec"]["domain"]["firmware"]["bootloader"]
    # the Once override is consumed: the boot order is put back, as after a Pxe once
    until(lambda: "bootOrder" not in (media_disk(template(cluster)) or {"bootOrder": 1}), "order restored")
    until(lambda: not cluster.bmc(BMC)["status"].get("bootOverride"), "override record cleared")

    # insert while inserted: 409
    again = client.post(f"{SYSTEM}/VirtualMedia/Cd/Actions/VirtualMedia.InsertMedia", json={"Image": image})
    assert again.status_code == 409, again.text

    cd.eject_media()  # sushy: no body, no Content-Type
    cd.refresh()
    assert not cd.inserted and cd.image is None
    until(lambda: data_volume(emu) is None, "DataVolume deleted")
    spec = template(cluster)
    assert media_disk(spec) is None and media_volume(spec) is None
    assert cluster.bmc(BMC)["status"].get("virtualMedia") in ([], None)
    seen = reasons(cluster)
    for reason in ("InsertMediaRequested", "MediaInserted", "EjectMediaRequested", "MediaEjected"):
        assert reason in seen, seen
    system.reset_system(ResetType.FORCE_OFF)
    until(lambda: system.refresh() or system.power_state == PowerState.OFF, "Off")
    auth.close()


def test_gofish_patch_insert_through_the_manager(
    emu: EmulatorThread, cluster: Cluster, images: str, client: httpx.Client
) -> None:
    image = f"{images}/small.iso"
    path = f"{MANAGER}/VirtualMedia/Cd"
    got = client.get(path)
    assert got.status_code == 200 and got.json()["Inserted"] is False
    # gofish: PATCH the properties with If-Match of the ETag it read
    patch = {"Image": image, "Inserted": True, "WriteProtected": True,
             "TransferMethod": "Stream", "TransferProtocolType": "HTTP"}
    done = client.patch(path, json=patch, headers={"If-Match": got.headers["ETag"]})
    assert done.status_code == 204, done.text
    body = client.get(path).json()
    assert body["Inserted"] is True and body["Image"] == image and body["ImageName"] == "small.iso"
    assert body["ConnectedVia"] == "URI"
    assert client.get(f"{SYSTEM}/VirtualMedia/Cd").json()["Inserted"] is True  # one device, two paths
    stale = client.patch(path, json={"Inserted": False}, headers={"If-Match": got.headers["ETag"]})
    assert stale.status_code == 412
    out = client.patch(path, json={"Image": None, "Inserted": False})
    assert out.status_code == 204, out.text
    assert client.get(path).json()["Inserted"] is False
    until(lambda: data_volume(emu) is None, "DataVolume deleted")


def test_errors(emu: EmulatorThread, cluster: Cluster, images: str, client: httpx.Client) -> None:
    action = f"{SYSTEM}/VirtualMedia/Cd/Actions/VirtualMedia.InsertMedia"
    bad = client.post(action, json={"Image": "not a url"})
    assert bad.status_code == 400 and error_id(bad) == "ActionParameterValueFormatError", bad.text
    ftp = client.post(action, json={"Image": "ftp://127.0.0.1/x.iso"})
    assert ftp.status_code == 400 and error_id(ftp) == "ActionParameterValueFormatError", ftp.text
    creds = client.post(action, json={"Image": f"{images}/small.iso", "UserName": "u", "Password": "p"})
    assert creds.status_code == 400 and error_id(creds) == "ActionParameterNotSupported", creds.text
    assert data_volume(emu) is None  # nothing was created for a refused request

    empty = client.post(f"{SYSTEM}/VirtualMedia/Cd/Actions/VirtualMedia.EjectMedia", json={})
    assert empty.status_code == 204  # ejecting an empty drive: success, nothing to do

    missing = f"{images}/missing.iso"
    failed = client.post(action, json={"Image": missing})
    assert failed.status_code == 400 and error_id(failed) == "ActionParameterValueError", failed.text
    assert "404" in failed.json()["error"]["@Message.ExtendedInfo"][0]["Resolution"]
    body = client.get(f"{SYSTEM}/VirtualMedia/Cd").json()
    assert body["Inserted"] is False and body["Image"] == missing
    assert body["Status"]["Health"] == "Warning"
    assert "404" in body["Status"]["Conditions"][0]["Message"]
    entry = cluster.bmc(BMC)["status"]["virtualMedia"][0]
    assert entry["phase"] == "Failed" and not entry["inserted"] and "404" in entry["message"]
    warning = [e for e in cluster.events_for(BMC) if e["reason"] == "MediaInsertFailed"]
    assert warning and warning[0]["type"] == "Warning" and missing in warning[0]["message"]
    until(lambda: data_volume(emu) is None, "failed DataVolume deleted")
    assert media_disk(template(cluster)) is None  # the VM still starts: no disk left on a failed import

    # a failed import does not block the next insert
    good = client.post(action, json={"Image": f"{images}/small.iso"})
    assert good.status_code == 204, good.text
    assert client.get(f"{SYSTEM}/VirtualMedia/Cd").json()["Status"]["Health"] == "OK"
    out = client.post(f"{SYSTEM}/VirtualMedia/Cd/Actions/VirtualMedia.EjectMedia")
    assert out.status_code == 204


def test_ipmi_bootdev_cdrom_boots_the_inserted_image(
    served: tuple[str, KbmcProcess], cluster: Cluster, images: str, client: httpx.Client
) -> None:
    """Ironic's ipmi driver with a virtual-media boot: `bootdev cdrom` once, power on."""
    _, kbmc = served
    inserted = client.post(f"{SYSTEM}/VirtualMedia/Cd/Actions/VirtualMedia.InsertMedia",
                           json={"Image": f"{images}/small.iso"})
    assert inserted.status_code == 204, inserted.text
    out = kbmc.ipmitool("chassis", "bootdev", "cdrom")
    assert out.returncode == 0 and "Set Boot Device to cdrom" in out.stdout, out.stdout + out.stderr
    out = kbmc.ipmitool("chassis", "power", "on")
    assert out.returncode == 0 and "Up/On" in out.stdout, out.stdout + out.stderr
    vmi = until(lambda: (v := cluster.vmi(VM)) and v.get("status", {}).get("phase") == "Running" and v, "VMI")
    assert (media_disk(vmi["spec"]) or {}).get("bootOrder") == 1
    until(lambda: "bootOrder" not in (media_disk(template(cluster)) or {"bootOrder": 1}), "order restored")
    out = kbmc.ipmitool("chassis", "power", "off")
    assert out.returncode == 0, out.stdout + out.stderr
    until(lambda: cluster.vmi(VM) is None, "VMI gone")


def test_sushy_reads_the_disk_sizes_ironic_inspects(emu: EmulatorThread, redfish: str) -> None:
    """Ironic's inspection (sushy's `simple_storage`) finds the 10Gi disk: the PVC's size, read by the
    kbmc by name under its Role; the containerDisk has no size to report and so no CapacityBytes."""
    pvc_rt = emu.emulator.registry.get("", "v1", "persistentvolumeclaims")
    pvc = until(lambda: emu.call(emu.emulator.store.try_get, pvc_rt, "default", DATA_DV), "the PVC")
    until(lambda: (emu.call(emu.emulator.store.try_get, pvc_rt, "default", DATA_DV) or {}).get("status", {})
          .get("capacity"), "the PVC bound")
    assert pvc["metadata"]["ownerReferences"][0]["kind"] == "DataVolume"
    urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)
    conn = sushy.Sushy(redfish + "/redfish/v1", auth=sushy.auth.BasicAuth(USER, PASSWORD), verify=False)
    system = conn.get_system(SYSTEM)
    assert system.simple_storage.disks_sizes_bytes == [10 << 30]
    assert system.simple_storage.max_size_bytes >= 9 << 30
    (storage,) = system.simple_storage.get_members()
    devices = {d.name: d for d in storage.devices}
    assert devices["data"].capacity_bytes == 10 << 30 and devices["data"].status.state.value == "Enabled"
    assert devices["rootdisk"].capacity_bytes is None


def test_unknown_device_and_paths(client: httpx.Client) -> None:
    assert client.get(f"{SYSTEM}/VirtualMedia/Floppy").status_code == 404
    system = client.get(SYSTEM).json()
    manager = client.get(MANAGER).json()
    assert system["VirtualMedia"] == {"@odata.id": f"{SYSTEM}/VirtualMedia"}
    assert manager["VirtualMedia"] == {"@odata.id": f"{MANAGER}/VirtualMedia"}
    processor = client.get(f"{SYSTEM}/Processors/1").json()
    assert processor["ProcessorArchitecture"] == "x86" and processor["InstructionSet"] == "x86-64"




def _insert(client: httpx.Client, image: str | None) -> None:
    """The state a validator meets: nothing inserted (None), an image inserted, or a failed import."""
    if image is None:
        return
    answer = client.post(f"{SYSTEM}/VirtualMedia/Cd/Actions/VirtualMedia.InsertMedia", json={"Image": image})
    assert answer.status_code == (400 if image.endswith("missing.iso") else 204), answer.text


MEDIA_STATES = {"empty": None, "inserted": "small.iso", "failed": "missing.iso"}


@pytest.mark.parametrize("media", list(MEDIA_STATES))
def test_service_validator_with_virtual_media(
    redfish: str, images: str, client: httpx.Client, tmp_path: Path, media: str
) -> None:
    """DMTF's Service Validator crawls the VirtualMedia resources on both paths, in the state a client
    meets first (empty) and after an insert or a failed one: zero failures."""
    _insert(client, MEDIA_STATES[media] and f"{images}/{MEDIA_STATES[media]}")
    fails, text = service_failures(redfish, USER, PASSWORD, tmp_path)
    assert not fails, "\n".join(fails) + text[-3000:]
    for path in (f"{SYSTEM}/VirtualMedia/Cd", f"{MANAGER}/VirtualMedia/Cd"):
        assert f"Validating {path}..." in text, f"the crawl did not reach {path}"


def test_protocol_validator_with_virtual_media(
    redfish: str, images: str, client: httpx.Client, tmp_path: Path
) -> None:
    """DMTF's Protocol Validator against the real kbmc with an image inserted: no FAIL, no WARN (its
    one-token randomness check aside, judged on a sample in tests/integration/redfish)."""
    answer = client.post(f"{SYSTEM}/VirtualMedia/Cd/Actions/VirtualMedia.InsertMedia",
                         json={"Image": f"{images}/small.iso"})
    assert answer.status_code == 204, answer.text
    text = run_validator(
        "rf_protocol_validator", "-r", redfish, "-u", USER, "-p", PASSWORD, "--report-dir", str(tmp_path),
        "--report-type", "tsv", "--no-cert-check",
    )
    reports = list(tmp_path.glob("*.tsv"))
    assert reports, text[-3000:]
    with reports[0].open(newline="") as f:
        rows = list(csv.reader(f, delimiter="\t"))
    failed = [r for r in rows if ("FAIL" in r or "WARN" in r) and r[0] != "RESP_HEADERS_X_AUTH_TOKEN"]
    assert not failed, "\n".join("\t".join(r)[:300] for r in failed)
    assert len([r for r in rows if "PASS" in r]) > 200


def test_interop_validator_ironic_profile(
    redfish: str, images: str, client: httpx.Client, tmp_path: Path
) -> None:
    """DMTF's Interop Validator with OpenStack Ironic's profile after an insert: no FAIL (Recommended
    items may warn), on both VirtualMedia paths. Before the insert this VM has no CD-ROM at all, so `Cd`
    is no boot target yet, which the profile requires (docs/redfish.md); the demo's VMs have one, and
    tests/integration/demo/test_ironic_demo.py validates them empty as well."""
    _insert(client, f"{images}/small.iso")
    fails, text = interop_failures(redfish, USER, PASSWORD, tmp_path)
    assert not fails, "\n".join(fails) + text[-3000:]
    for path in (f"{SYSTEM}/VirtualMedia/Cd", f"{MANAGER}/VirtualMedia/Cd", f"{SYSTEM}/Processors/1"):
        assert f"Validating {path}..." in text, f"the crawl did not reach {path}"

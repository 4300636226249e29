"""Firmware settings end to end: a real `vmbmc kbmc --bmc` process holding only the Roles the controller
writes, against the emulator's KubeVirt (which refuses Secure Boot without SMM, as KubeVirt's webhook
does), driven by sushy as Ironic drives it: `system.secure_boot` (enabled, current_boot, set_enabled) and
`system.bios` (attributes, pending_attributes, set_attributes with apply time OnReset, the attribute
registry). A setting is the VM's spec at once and the VMI's after a reset through Redfish.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import sushy
import urllib3
from kbmc_process import PASSWORD, USER, serve_bmc
from machine_cluster import Cluster, vm_body
from sushy import BootSourceOverrideMode, PowerState, ResetType

from tests.redfish_validators import interop_failures, service_failures
from vmbmc_devcluster.emulator.harness import EmulatorThread
from vmbmc_devcluster.testing.waiting import wait_until

VM, BMC = "fw-vm", "fw-bmc"
SYSTEM = f"/redfish/v1/Systems/{VM}"
REGISTRY = "KubeVirtBiosAttributeRegistry.1.0.0"
REGISTRY_DOCUMENT = f"/redfish/v1/Registries/{REGISTRY}/{REGISTRY}"
WAIT = 30.0  # seconds: every poll below is bounded by this


@pytest.fixture(scope="module")
def redfish(emu: EmulatorThread, cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The Redfish URL of the kbmc of a VM that boots with BIOS (no bootloader) and has no SMM, over HTTPS."""
    vm = vm_body(VM)
    vm["spec"]["template"]["spec"]["domain"]["devices"]["interfaces"][0]["macAddress"] = "52:54:00:00:29:29"
    emu.call(emu.emulator.store.create, cluster.vms, vm, "default")
    served = serve_bmc(emu, cluster, tmp_path_factory.mktemp("kbmc-fw"), BMC, VM, redfish="https")
    yield served.redfish
    served.kbmc.stop()


@pytest.fixture
def system(redfish: str) -> Iterator[Any]:
    urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)
    auth = sushy.auth.SessionOrBasicAuth(USER, PASSWORD)
    conn = sushy.Sushy(redfish + "/redfish/v1", auth=auth, verify=False)
    yield conn.get_system(SYSTEM)
    auth.close()


@pytest.fixture
def client(redfish: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=redfish, auth=(USER, PASSWORD), timeout=60, verify=False) as c:
        yield c


def until(pred: Any, what: str) -> Any:
    return wait_until(pred, WAIT, what)


def domain(obj: dict[str, Any] | None) -> dict[str, Any]:
    """The domain of a VM's template or of a VMI's spec."""
    assert obj is not None
    spec = obj["spec"].get("template", {}).get("spec") if obj["kind"] == "VirtualMachine" else obj["spec"]
    return spec["domain"]


def bootloader(obj: dict[str, Any] | None) -> dict[str, Any] | None:
    return (domain(obj).get("firmware") or {}).get("bootloader")


def smm(obj: dict[str, Any] | None) -> dict[str, Any] | None:
    return (domain(obj).get("features") or {}).get("smm")


def error_id(err: sushy.exceptions.HTTPError | httpx.Response) -> str:
    """The Base message of an error answer (sushy keeps the `error` object as `body`)."""
    error = err.json()["error"] if isinstance(err, httpx.Response) else err.body
    return str(error["@Message.ExtendedInfo"][0]["MessageId"]).rsplit(".", 1)[-1]


def power(system: Any, reset: ResetType, state: PowerState) -> None:
    system.reset_system(reset)
    until(lambda: system.refresh() or system.power_state == state, str(state))


def new_vmi(cluster: Cluster, old_uid: str) -> dict[str, Any]:
    return until(
        lambda: (v := cluster.vmi(VM)) and v["metadata"]["uid"] != old_uid
        and v.get("status", {}).get("phase") == "Running" and v,
        "a new running VMI",
    )


def reasons(cluster: Cluster) -> list[str]:
    return [e["reason"] for e in cluster.events_for(BMC)]


def test_secure_boot_through_sushy_and_a_reset(cluster: Cluster, system: Any) -> None:
    sb = system.secure_boot
    assert sb.enabled is False and sb.current_boot is None  # BIOS boot, powered off
    with pytest.raises(sushy.exceptions.HTTPError) as refused:  # no Secure Boot with BIOS
        sb.set_enabled(True)
    assert refused.value.status_code == 400 and error_id(refused.value) == "PropertyValueConflict"
    assert bootloader(cluster.vm(VM)) is None  # nothing was written

    system.set_system_boot_options(mode=BootSourceOverrideMode.UEFI)  # as Ironic does before Secure Boot
    assert bootloader(cluster.vm(VM)) == {"efi": {"secureBoot": False}}  # the VM has no SMM: off
    sb.set_enabled(True)
    sb.refresh()
    assert sb.enabled is True  # Ironic re-reads right after its PATCH: the VM's spec, at once
    vm = cluster.vm(VM)
    assert bootloader(vm) == {"efi": {"secureBoot": True}} and smm(vm) == {"enabled": True}

    power(system, ResetType.ON, PowerState.ON)
    vmi = until(lambda: (v := cluster.vmi(VM)) and v.get("status", {}).get("phase") == "Running" and v, "VMI")
    assert bootloader(vmi) == {"efi": {"secureBoot": True}} and smm(vmi) == {"enabled": True}
    sb.refresh()
    assert sb.current_boot == sushy.SecureBootCurrentBoot.ENABLED

    sb.set_enabled(False)  # pending: the VM's spec now, the running VMI keeps its boot
    sb.refresh()
    assert sb.enabled is False and sb.current_boot == sushy.SecureBootCurrentBoot.ENABLED
    assert bootloader(cluster.vm(VM)) == {"efi": {"secureBoot": False}}
    system.reset_system(ResetType.FORCE_RESTART)  # OnReset: KubeVirt builds the new VMI from the spec
    vmi = new_vmi(cluster, vmi["metadata"]["uid"])
    assert bootloader(vmi) == {"efi": {"secureBoot": False}}
    sb.refresh()
    assert sb.current_boot == sushy.SecureBootCurrentBoot.DISABLED
    assert "FirmwareSettingsSet" in reasons(cluster)
    records = cluster.bmc(BMC)["status"]["requests"]
    assert any(r["action"] == "firmware_settings" and r["effect"] == "called" for r in records), records
    power(system, ResetType.FORCE_OFF, PowerState.OFF)
    sb.refresh()
    assert sb.current_boot is None


def test_bios_settings_through_sushy_applied_at_reset(cluster: Cluster, system: Any) -> None:
    """Ironic's `redfish` bios interface: read the settings and the registry, set_attributes with apply
    time OnReset, reboot, then compare `attributes` with what it asked for."""
    system.set_system_boot_options(mode=BootSourceOverrideMode.LEGACY)
    bios = system.bios
    assert bios.attributes == {"BootMode": "Bios", "SecureBoot": "Disabled"}
    assert sushy.APPLY_TIME_ON_RESET in bios.supported_apply_times
    registry = bios.get_attribute_registry()
    assert registry is not None and registry.language == "en"
    entries = {a.name: a for a in registry.registry_entries.attributes}
    assert set(entries) == set(bios.attributes)
    assert {v["ValueName"] for v in entries["BootMode"].allowable_values} == {"Uefi", "Bios"}
    assert all(a.reset_required and not a.read_only for a in entries.values())

    power(system, ResetType.ON, PowerState.ON)
    first = cluster.vmi(VM)
    wanted = {"BootMode": "Uefi", "SecureBoot": "Enabled"}
    bios.set_attributes(wanted, apply_time=sushy.APPLY_TIME_ON_RESET)
    bios.refresh()
    assert bios.pending_attributes == wanted  # the settings object: what the VM's spec changes
    assert bios.attributes == {"BootMode": "Bios", "SecureBoot": "Disabled"}  # the running VMI
    vm = cluster.vm(VM)
    assert bootloader(vm) == {"efi": {"secureBoot": True}} and smm(vm) == {"enabled": True}

    system.reset_system(ResetType.FORCE_RESTART)
    vmi = new_vmi(cluster, first["metadata"]["uid"])
    assert bootloader(vmi) == {"efi": {"secureBoot": True}} and smm(vmi) == {"enabled": True}
    bios.refresh()
    assert bios.attributes == wanted  # what Ironic's verification step compares
    assert bios.pending_attributes == {}  # applied: nothing pending any more
    system.refresh()
    assert system.secure_boot.current_boot == sushy.SecureBootCurrentBoot.ENABLED
    assert system.boot.mode == BootSourceOverrideMode.UEFI

    # Legacy with Secure Boot: a combination KubeVirt cannot boot
    with pytest.raises(sushy.exceptions.HTTPError) as refused:
        bios.set_attributes({"BootMode": "Bios"})
    assert refused.value.status_code == 400 and error_id(refused.value) == "PropertyValueConflict"
    bios.set_attributes({"BootMode": "Bios", "SecureBoot": "Disabled"})
    assert bootloader(cluster.vm(VM)) == {"bios": {}}
    bios.refresh()
    assert bios.pending_attributes == {"BootMode": "Bios", "SecureBoot": "Disabled"}
    power(system, ResetType.FORCE_OFF, PowerState.OFF)
    bios.refresh()
    assert bios.pending_attributes == {}  # off: the next start boots with the VM's spec
    assert bios.attributes == {"BootMode": "Bios", "SecureBoot": "Disabled"}  # off: the VM's spec


def test_a_setting_outlives_a_pending_once_override(cluster: Cluster, system: Any) -> None:
    """A Once override saves the bootloader its restore puts back; a setting made while it is pending is
    made there too, so the restore after the boot does not undo it."""
    bios = system.bios
    bios.set_attributes({"BootMode": "Bios", "SecureBoot": "Disabled"})  # powered off, BIOS
    system.set_system_boot_options(sushy.BootSource.PXE, enabled=sushy.BootSourceOverrideEnabled.ONCE,
                                   mode=BootSourceOverrideMode.UEFI)
    assert cluster.bmc(BMC)["status"]["bootOverride"]["savedFirmware"] == {"bios": {}}
    bios.set_attributes({"BootMode": "Uefi", "SecureBoot": "Enabled"}, apply_time=sushy.APPLY_TIME_ON_RESET)
    assert cluster.bmc(BMC)["status"]["bootOverride"]["savedFirmware"] == {"efi": {"secureBoot": True}}
    power(system, ResetType.ON, PowerState.ON)
    until(lambda: not cluster.bmc(BMC)["status"].get("bootOverride"), "the Once override consumed")
    vm = cluster.vm(VM)
    assert bootloader(vm) == {"efi": {"secureBoot": True}} and smm(vm) == {"enabled": True}
    interfaces = domain(vm)["devices"]["interfaces"]
    assert all("bootOrder" not in i for i in interfaces)  # the boot order is back as it was
    power(system, ResetType.FORCE_OFF, PowerState.OFF)


def test_settings_errors(client: httpx.Client) -> None:
    settings = f"{SYSTEM}/Bios/Settings"
    cases = [
        ({"Attributes": {"BootMode": "Floppy"}}, "PropertyValueNotInList"),
        ({"Attributes": {"BootMode": 1}}, "PropertyValueTypeError"),
        ({"Attributes": {"NumLock": "On"}}, "PropertyUnknown"),
        ({"Attributes": {"BootMode": "Uefi"}, "@Redfish.SettingsApplyTime": {"ApplyTime": "Immediate"}},
         "PropertyValueNotInList"),
        ({"AttributeRegistry": "x"}, "PropertyNotWritable"),
    ]
    before = client.get(settings).json()["Attributes"]
    for body, message in cases:
        answer = client.patch(settings, json=body)
        assert answer.status_code == 400 and error_id(answer) == message, (body, answer.text)
    assert client.get(settings).json()["Attributes"] == before
    assert client.patch(f"{SYSTEM}/Bios", json={"Attributes": {}}).status_code == 405  # the settings object
    wrong = client.patch(f"{SYSTEM}/SecureBoot", json={"SecureBootEnable": "yes"})
    assert wrong.status_code == 400 and error_id(wrong) == "PropertyValueTypeError"
    sb = client.get(f"{SYSTEM}/SecureBoot").json()
    assert "Actions" not in sb and "SecureBootDatabases" not in sb  # KubeVirt has no key store


def test_registry_as_sushy_finds_it(client: httpx.Client) -> None:
    bios = client.get(f"{SYSTEM}/Bios").json()
    files = [m["@odata.id"] for m in client.get("/redfish/v1/Registries").json()["Members"]]
    file = next(client.get(f).json() for f in files if f.endswith("/" + bios["AttributeRegistry"]))
    assert file["Id"] == bios["AttributeRegistry"] and file["Languages"] == ["en"]
    [location] = file["Location"]
    assert location["Language"] == "en"
    document = client.get(location["Uri"]).json()
    assert document["@odata.type"].startswith("#AttributeRegistry.v1_")
    assert document["Language"] == "en" and document["Id"] == bios["AttributeRegistry"]
    settings = bios["@Redfish.Settings"]
    assert settings["SupportedApplyTimes"] == ["OnReset"]
    assert settings["SettingsObject"] == {"@odata.id": f"{SYSTEM}/Bios/Settings"}


def test_validators_with_firmware(redfish: str, tmp_path: Path) -> None:
    """DMTF's Service Validator and Interop Validator (OpenStack Ironic's profile) crawl SecureBoot, Bios,
    its settings object and the attribute registry: zero failures, with the drive empty (what a client
    meets first)."""
    firmware = (f"{SYSTEM}/SecureBoot", f"{SYSTEM}/Bios", f"{SYSTEM}/Bios/Settings")
    runs = ((service_failures, (*firmware, REGISTRY_DOCUMENT)), (interop_failures, firmware[:2]))
    for check, crawled in runs:
        fails, text = check(redfish, USER, PASSWORD, tmp_path / check.__name__)
        assert not fails, "\n".join(fails) + text[-3000:]
        for path in crawled:
            assert f"Validating {path}..." in text, f"the crawl did not reach {path}"

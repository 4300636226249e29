"""OpenStack Ironic 39.0.0, standalone, drives `vmbmc demo --redfish` through a whole node lifecycle, as a
user of Ironic (or of Metal3, which runs the same Ironic) does: one node over Redfish (redfish-virtual-media
boot, redfish inspection, ramdisk deploy of a boot ISO, twice), one over IPMI (ipmitool power and
management, pxe boot, ramdisk deploy, the serial console through ipmitool-socat).

After every step the test reads Ironic (provision_state, power_state, last_error), the VM's state through
the BMC (Redfish or ipmitool) and the BMC's Kubernetes Events in causal order. What would need a real
network (the VM fetching its ISO from CDI, DHCP and TFTP for PXE, an agent) is named where it applies;
there only the BMC's side is checked. docs/ironic.md describes the set-up.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.ironic.bmc_view import BmcView
from tests.ironic.conftest import Images
from tests.ironic.ironic_service import Ironic, session_pids
from vmbmc_devcluster.testing.demo_process import DemoProcess
from vmbmc_devcluster.testing.waiting import wait_until

# Bounds: the first test also starts the demo and Ironic, and builds the Ironic venv when it is missing.
pytestmark = pytest.mark.ironic

POWER_ON = [("PowerOnRequested", ["PoweredOn"])]
POWER_OFF = [("PowerOffRequested", ["PoweredOff"])]
REBOOT = POWER_OFF + POWER_ON  # Ironic reboots a node that is on as power off, then power on
BOOT_CHANGED = [("BootOverrideSet", ["BootDeviceChanged"])]
FIRMWARE_CHANGED = [("FirmwareSettingsSet", ["BootDeviceChanged"])]
CONSOLE_WAIT = 30.0  # seconds for the console's login prompt and echo


def _view(demo: DemoProcess, index: int) -> BmcView:
    view = BmcView(demo.endpoints["bmcs"][index], demo.endpoints["kubeconfig"])
    view.mark()
    return view


def _enroll(ironic: Ironic, view: BmcView, body: dict[str, object]) -> None:
    node = ironic.call("POST", "/nodes", 201, json=body).json()
    assert (node["provision_state"], node["power_state"]) == ("enroll", None), node
    # manage: Ironic validates the driver info and reads the power state
    node = ironic.provision(body["name"], "manage", "manageable")  # type: ignore[arg-type]
    assert node["power_state"] == "power off"
    view.expect_events([], "manage (Ironic only reads)")


def _power_on_reboot_off(
    ironic: Ironic, view: BmcView, name: str, reading: Callable[[], str], on: str, off: str
) -> None:
    """Power on, reboot, power off through Ironic; after each, the BMC's `reading` and its Events."""
    steps = (("power on", on, POWER_ON), ("rebooting", on, REBOOT), ("power off", off, POWER_OFF))
    for target, read, events in steps:
        ironic.power(name, target, "power off" if target == "power off" else "power on")
        assert reading() == read, target
        view.expect_events(events, target)


def _delete(ironic: Ironic, view: BmcView, name: str, mac: str) -> None:
    """Delete the node (from manageable, as an operator retires a machine); its port goes with it."""
    if ironic.node(name)["provision_state"] != "manageable":
        ironic.provision(name, "manage", "manageable")
    ironic.call("DELETE", f"/nodes/{name}", 204)
    assert ironic.http.get(f"/nodes/{name}").status_code == 404
    assert ironic.call("GET", f"/ports?address={mac}", 200).json()["ports"] == []
    view.expect_events([], "delete")


@pytest.mark.timeout(540)
def test_redfish_node_lifecycle(ironic: Ironic, demo: DemoProcess, images: Images) -> None:
    view = _view(demo, 0)
    name = "redfish-node"
    _enroll(ironic, view, {
        "name": name,
        "driver": "redfish",
        "boot_interface": "redfish-virtual-media",
        "deploy_interface": "ramdisk",
        "inspect_interface": "redfish",
        "bios_interface": "redfish",
        "driver_info": {
            "redfish_address": view.bmc["redfish"].removesuffix("/redfish/v1"),
            "redfish_system_id": f"/redfish/v1/Systems/{view.vm}",
            "redfish_username": view.bmc["username"],
            "redfish_password": view.bmc["password"],
            "redfish_verify_ca": False,  # the demo's self-signed certificate
        },
    })  # fmt: skip
    assert view.power() == "Off"
    _bios_settings_listed(ironic, name, {"BootMode": "Bios", "SecureBoot": "Disabled"})
    _power_on_reboot_off(ironic, view, name, view.power, "On", "Off")

    # boot device (once) and boot mode
    ironic.call("PUT", f"/nodes/{name}/management/boot_device", 204, json={"boot_device": "pxe"})
    assert ironic.call("GET", f"/nodes/{name}/management/boot_device", 200).json() == {
        "boot_device": "pxe", "persistent": False,
    }  # fmt: skip
    assert view.boot()[:2] == ("Pxe", "Once")
    view.expect_events(BOOT_CHANGED, "boot device pxe")
    ironic.call("PUT", f"/nodes/{name}/states/boot_mode", 202, json={"target": "uefi"})
    ironic.wait_node(name, lambda n: n["boot_mode"] == "uefi", "boot mode uefi")
    assert view.boot() == ("Pxe", "Once", "UEFI")
    view.expect_events(BOOT_CHANGED, "boot mode uefi")

    # out-of-band inspection: what the BMC reports becomes the node's properties, inventory and port
    node = ironic.provision(name, "inspect", "manageable")
    props = node["properties"]
    assert (props["cpu_arch"], props["memory_mb"]) == ("x86_64", 2048), props
    assert props["capabilities"] == "boot_mode:uefi", props
    # the demo's VMs boot from a 10Gi DataVolume: SimpleStorage lists it with CapacityBytes, and Ironic
    # takes the largest disk of at least 4 GiB, less 1 GiB for partitioning
    assert int(props["local_gb"]) >= 9, props
    inventory = ironic.call("GET", f"/nodes/{name}/inventory", 200).json()["inventory"]
    assert (inventory["cpu"]["count"], inventory["memory"]["physical_mb"]) == (2, 2048), inventory
    assert inventory["system_vendor"]["manufacturer"] == "KubeVirt", inventory
    ports = ironic.call("GET", f"/ports?node={name}", 200).json()["ports"]
    # the VM's NIC (devcluster/vmbmc_devcluster/demo/samples.py)
    assert [p["address"] for p in ports] == ["02:00:00:00:00:01"]
    view.expect_events([], "inspection (Ironic only reads)")

    ironic.provision(name, "provide", "available")  # automated cleaning is off: it would need an agent
    view.expect_events([], "provide")

    for attempt in ("first", "second"):
        _redfish_deploy_and_undeploy(ironic, view, images, name, attempt)
    ironic.provision(name, "manage", "manageable")
    _bios_apply_configuration(ironic, view, name)
    _delete(ironic, view, name, "02:00:00:00:00:01")


def _bios_settings_listed(ironic: Ironic, name: str, values: dict[str, str]) -> None:
    """`baremetal node bios setting list --long`: what the `redfish` bios interface cached when the node
    was managed, the Bios attributes with what the attribute registry says of them."""
    listed = ironic.call("GET", f"/nodes/{name}/bios?detail=True", 200).json()["bios"]
    settings = {s["name"]: s for s in listed}
    assert {n: s["value"] for n, s in settings.items()} == values
    assert settings["BootMode"]["allowable_values"] == ["Uefi", "Bios"], settings
    assert settings["SecureBoot"]["allowable_values"] == ["Enabled", "Disabled"], settings
    for setting in settings.values():
        assert setting["attribute_type"] == "Enumeration" and setting["reset_required"] is True, setting
        assert setting["read_only"] is False, setting


def _bios_apply_configuration(ironic: Ironic, view: BmcView, name: str) -> None:
    """A manual clean step `bios.apply_configuration` (the node is off and manageable, its boot mode UEFI,
    no one-time boot override pending): Ironic patches
    the settings object with apply time OnReset and reboots the node, which KubeVirt starts with the new
    spec. No agent boots: the step needs no ramdisk, so Ironic skips it and polls the Bios until the
    settings are current, then finishes the step and the cleaning."""
    step = {"interface": "bios", "step": "apply_configuration",
            "args": {"settings": [{"name": "SecureBoot", "value": "Enabled"}]}}
    node = ironic.provision(name, "clean", "manageable", clean_steps=[step])  # caches the settings too
    assert node["power_state"] == "power on", node
    vmi = view.kubectl_json("vmi", "-n", view.vm_namespace, view.vm)
    assert vmi is not None
    domain = vmi["spec"]["domain"]  # the VMI KubeVirt made at the reboot runs Secure Boot, with SMM
    assert domain["firmware"]["bootloader"] == {"efi": {"secureBoot": True}}, domain
    assert domain["features"]["smm"] == {"enabled": True}, domain
    assert view.get("/SecureBoot")["SecureBootCurrentBoot"] == "Enabled"
    settings = ironic.call("GET", f"/nodes/{name}/bios", 200).json()["bios"]
    assert {s["name"]: s["value"] for s in settings} == {"BootMode": "Uefi", "SecureBoot": "Enabled"}
    view.expect_events([*FIRMWARE_CHANGED, *POWER_ON], "bios.apply_configuration")
    ironic.power(name, "power off", "power off")  # as the node was before the step
    view.expect_events(POWER_OFF, "power off after the bios step")


def _redfish_deploy_and_undeploy(
    ironic: Ironic, view: BmcView, images: Images, name: str, attempt: str
) -> None:
    # deploy: Ironic puts the ISO on its own HTTP server, inserts it as virtual media, boots Cd, powers on
    patch = [{"op": "add", "path": "/instance_info/boot_iso", "value": images.boot_iso}]
    ironic.call("PATCH", f"/nodes/{name}", 200, json=patch)
    node = ironic.provision(name, "active", "active")
    assert node["power_state"] == "power on"
    assert view.power() == "On"
    media = view.media()
    ironic_iso = f"{images.url}/redfish/boot-{node['uuid']}.iso"
    assert (media["Inserted"], media["Image"]) == (True, ironic_iso), media
    served = images.root / "redfish" / f"boot-{node['uuid']}.iso"  # Ironic's copy, on our HTTP server
    assert served.read_bytes() == (images.root / "small.iso").read_bytes()
    assert view.boot() == ("Cd", "Continuous", "UEFI")
    data_volume = view.data_volume()
    assert data_volume is not None and data_volume["status"]["phase"] == "Succeeded", data_volume
    # A real cluster's CDI would copy the ISO into a PVC and the VM would boot it: the emulator's CDI
    # fetches the URL and reports the import; what the guest then runs needs a real cluster.
    view.expect_events([
        ("InsertMediaRequested", ["MediaInserted"]),
        ("BootOverrideSet", ["BootDeviceChanged"]),
        *POWER_ON,
    ], f"{attempt} deploy")  # fmt: skip

    ironic.power(name, "rebooting", "power on")  # a reboot while active
    assert view.power() == "On" and view.media()["Inserted"] is True
    view.expect_events(REBOOT, f"{attempt} reboot while active")

    # undeploy: power off, media ejected, the DataVolume deleted; no cleaning (an agent's job)
    node = ironic.provision(name, "deleted", "available")
    assert node["power_state"] == "power off" and node["instance_info"] == {}, node
    assert view.power() == "Off"
    assert view.media()["Inserted"] is False
    wait_until(lambda: view.data_volume() is None, 30, "the DataVolume deleted")
    view.expect_events([*POWER_OFF, ("EjectMediaRequested", ["MediaEjected", "BootDeviceChanged"])],
                       f"{attempt} undeploy")  # fmt: skip


@pytest.mark.timeout(240)
def test_ipmi_node_lifecycle_and_sol_console(ironic: Ironic, demo: DemoProcess, images: Images) -> None:
    view = _view(demo, 1)
    name = "ipmi-node"
    _enroll(ironic, view, {
        "name": name,
        "driver": "ipmi",
        "boot_interface": "pxe",
        "deploy_interface": "ramdisk",
        "inspect_interface": "no-inspect",  # out-of-band inspection is Redfish's; in-band needs an agent
        "console_interface": "ipmitool-socat",
        "driver_info": {
            "ipmi_address": view.bmc["ipmi"]["host"],
            "ipmi_port": view.bmc["ipmi"]["port"],
            "ipmi_username": view.bmc["username"],
            "ipmi_password": view.bmc["password"],
        },
    })  # fmt: skip
    assert view.ipmi_power() == "Chassis Power is off"
    _power_on_reboot_off(ironic, view, name, view.ipmi_power, "Chassis Power is on", "Chassis Power is off")

    # boot device, persistent; the boot mode (UEFI, Ironic's default) goes with it in the same command,
    # since Ironic's ipmitool management has no boot mode call of its own
    body = {"boot_device": "pxe", "persistent": True}
    ironic.call("PUT", f"/nodes/{name}/management/boot_device", 204, json=body)
    assert ironic.call("GET", f"/nodes/{name}/management/boot_device", 200).json() == body
    flags = view.ipmi_boot_flags()
    assert {"Options apply to all future boots", "BIOS EFI boot", "Force PXE"} <= set(flags), flags
    view.expect_events(BOOT_CHANGED, "boot device pxe persistent")

    # a port with the VM's MAC: what PXE's per-MAC configuration is written for
    node_uuid = ironic.node(name)["uuid"]
    ironic.call("POST", "/ports", 201, json={"node_uuid": node_uuid, "address": "02:00:00:00:00:02"})
    ironic.provision(name, "provide", "available")
    view.expect_events([], "provide")

    # deploy: a ramdisk over PXE. Ironic writes the kernel, ramdisk and boot configuration into its TFTP
    # root; the VM would fetch them over DHCP and TFTP, which needs a real network: only the BMC's side
    # (boot device PXE in UEFI, persistent; power on) is checked.
    patch = [
        {"op": "add", "path": "/instance_info/kernel", "value": f"{images.url}/vmlinuz"},
        {"op": "add", "path": "/instance_info/ramdisk", "value": f"{images.url}/initrd"},
    ]
    ironic.call("PATCH", f"/nodes/{name}", 200, json=patch)
    node = ironic.provision(name, "active", "active")
    assert node["power_state"] == "power on"
    tftp = ironic.root / "tftp"
    assert (tftp / node_uuid / "kernel").read_bytes() == (images.root / "vmlinuz").read_bytes()
    assert (tftp / node_uuid / "config").exists() and (tftp / "grub.cfg-01-02-00-00-00-00-02").exists()
    assert view.ipmi_power() == "Chassis Power is on"
    assert {"Options apply to all future boots", "BIOS EFI boot", "Force PXE"} <= set(view.ipmi_boot_flags())
    view.expect_events([("BootOverrideSet", []), *POWER_ON], "deploy")  # the override was already so

    ironic.power(name, "rebooting", "power on")
    view.expect_events(REBOOT, "reboot while active")

    _sol_console(ironic, view, name)

    node = ironic.provision(name, "deleted", "available")
    assert node["power_state"] == "power off"
    assert view.ipmi_power() == "Chassis Power is off"
    assert not (tftp / node_uuid).exists()
    view.expect_events(POWER_OFF, "undeploy")
    _delete(ironic, view, name, "02:00:00:00:00:02")


def _sol_console(ironic: Ironic, view: BmcView, name: str) -> None:
    """Ironic's console: socat on 127.0.0.1 runs `ipmitool sol activate` for each connection."""
    ironic.call("PUT", f"/nodes/{name}/states/console", 202, json={"enabled": True})
    ironic.wait_node(name, lambda n: n["console_enabled"], "console enabled")
    info = ironic.call("GET", f"/nodes/{name}/states/console", 200).json()["console_info"]
    assert info["type"] == "socat" and info["url"].startswith("tcp://127.0.0.1:"), info
    port = int(info["url"].rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
        seen = _read_until(conn, f"{view.vm} login: ".encode())
        assert b"SOL Session operational" in seen, seen
        conn.sendall(b"ironic-typed-this\r")
        _read_until(conn, b"ironic-typed-this")
    view.expect_events([], "console (SOL records no request)")

    ironic.call("PUT", f"/nodes/{name}/states/console", 202, json={"enabled": False})
    ironic.wait_node(name, lambda n: not n["console_enabled"], "console disabled")
    assert ironic.proc is not None
    wait_until(lambda: not _socat_running(ironic.proc.pid), 15, "Ironic's socat stopped")
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=5).close()


def _socat_running(sid: int) -> bool:
    def comm(pid: int) -> str:
        try:
            return Path(f"/proc/{pid}/comm").read_text().strip()
        except OSError:
            return ""  # gone meanwhile

    return any(comm(pid) == "socat" for pid in session_pids(sid))


def _read_until(conn: socket.socket, marker: bytes) -> bytes:
    seen = b""
    deadline = time.monotonic() + CONSOLE_WAIT
    while marker not in seen:
        assert time.monotonic() < deadline, (
            f"no {marker!r} on the console in {CONSOLE_WAIT} s: {seen[-500:]!r}"
        )
        try:
            chunk = conn.recv(4096)
        except TimeoutError:
            continue
        assert chunk, f"the console closed before {marker!r}: {seen[-500:]!r}"
        seen += chunk
    return seen

"""The boot override under faults, against a real `vmbmc kbmc` on the emulator, with real ipmitool, FreeIPMI
and an HTTP Redfish client: success only once the boot order patch (or, when the VM is already as asked,
the stored override) was accepted; C0h after the same bounded wait as a power command while the API server
hangs, FFh while it is unreachable; nothing sent after the 10 s bound, the request ending `unknown` or
`failed` with a Warning Event; a patch the hung server carries out late is undone by the kbmc as its own
recorded request; a restarted kbmc settles what the killed one left.

The fault helpers (a BMC and kbmc per test, the API proxy, the record readers) are the fault suite's.
"""

# ruff: noqa: F811  (the fault suite's `bmc` fixture is imported, then named as a test parameter)
from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
from machine_cluster import Cluster
from test_kbmc_faults import (  # noqa: F401  (bmc: a pytest fixture)
    ONE_TRY,
    Bmc,
    bmc,
    figure,
    kill,
    new_bmc,
    new_bmc_behind_proxy,
    record,
    records,
    warnings,
)

from vmbmc.machine.boot import boot_settings
from vmbmc.machine.requests import CALL_BOUND_SECONDS, LATE_TEXT
from vmbmc_devcluster.emulator.emulator import FaultRule
from vmbmc_devcluster.emulator.harness import EmulatorThread
from vmbmc_devcluster.testing.waiting import wait_until

BOOT = "boot_override"


def hold_patches(emu: EmulatorThread, bmc: Bmc, *, status: int | None = None) -> FaultRule:
    """The API server hangs on every PATCH of this VM (its boot order), up to 120 s or until released;
    `status`: what it then answers instead of carrying the patch out."""
    return emu.emulator.faults.add(
        "PATCH", rf"/virtualmachines/{bmc.vm}$", delay=120.0, hold=True, status=status
    )


def settings(cluster: Cluster, bmc: Bmc) -> tuple[Any, ...]:
    vm = cluster.vm(bmc.vm)
    assert vm is not None
    return boot_settings(vm)


def stored(cluster: Cluster, bmc: Bmc) -> dict[str, Any] | None:
    return ((cluster.bmc(bmc.name) or {}).get("status") or {}).get("bootOverride")


def boot_records(cluster: Cluster, bmc: Bmc) -> list[dict[str, Any]]:
    return [r for r in records(cluster, bmc) if r["action"] == BOOT]


def timed(
    run: Callable[[], subprocess.CompletedProcess[str]],
) -> tuple[subprocess.CompletedProcess[str], float]:
    started = time.monotonic()
    out = run()
    return out, time.monotonic() - started


def bootparam5(bmc: Bmc) -> str:
    out = bmc.kbmc.ipmitool("chassis", "bootparam", "get", "5")
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout


def settled(cluster: Cluster, bmc: Bmc, request_id: str, effect: str) -> dict[str, Any]:
    """The request's record once it has `effect` (within the bound and a margin)."""
    found: dict[str, Any] = wait_until(
        lambda: (r := record(cluster, bmc, request_id)) and r["effect"] == effect and r,
        timeout=CALL_BOUND_SECONDS + 15,
        what=f"request {request_id} {effect}",
    )
    return found


def nothing_pending(cluster: Cluster, bmc: Bmc) -> None:
    wait_until(
        lambda: all(r["effect"] != "pending" for r in records(cluster, bmc)),
        timeout=CALL_BOUND_SECONDS + 20,
        what="no record pending",
    )


# --- happy paths: the answer comes after the change -------------------------------------------------


def test_ipmitool_success_means_the_vm_is_patched(cluster: Cluster, bmc: Bmc) -> None:
    """Once and persistent, UEFI and legacy: when ipmitool prints success, the VM already has the boot
    order and firmware (read at once, no wait) and the request is `called`."""
    out, took = timed(lambda: bmc.kbmc.ipmitool("chassis", "bootdev", "pxe", "options=efiboot"))
    assert out.stdout.strip() == "Set Boot Device to pxe", out
    figure(
        "ipmitool chassis bootdev pxe options=efiboot, answered after the patch (whole process)",
        f"{took:.2f} s",
    )
    vm = cluster.vm(bmc.vm)
    assert vm is not None
    domain = vm["spec"]["template"]["spec"]["domain"]
    assert domain["devices"]["interfaces"][0].get("bootOrder") == 1
    assert "efi" in domain["firmware"]["bootloader"]
    assert (stored(cluster, bmc) or {}).get("enabled") == "Once"
    assert boot_records(cluster, bmc)[-1]["effect"] == "called"

    out = bmc.kbmc.ipmitool("chassis", "bootdev", "disk", "options=persistent")
    assert out.stdout.strip() == "Set Boot Device to disk", out
    vm = cluster.vm(bmc.vm)
    assert vm is not None
    disks = vm["spec"]["template"]["spec"]["domain"]["devices"]["disks"]
    assert disks[0].get("bootOrder") == 1, disks
    shown = bootparam5(bmc)
    assert "Hard-Drive" in shown and "Options apply to all future boots" in shown, shown
    assert "BIOS EFI boot" in shown  # no EFI bit: the VM keeps its firmware

    # ipmitool's other spelling of the same parameter
    out = bmc.kbmc.ipmitool("chassis", "bootparam", "set", "bootflag", "force_cdrom")
    assert out.returncode == 0 and "failed" not in out.stdout + out.stderr, out
    vm = cluster.vm(bmc.vm)
    assert vm is not None
    cdrom = [d for d in vm["spec"]["template"]["spec"]["domain"]["devices"]["disks"] if "cdrom" in d]
    assert cdrom[0].get("bootOrder") == 1, cdrom
    assert all(r["effect"] == "called" for r in boot_records(cluster, bmc))


def test_freeipmi_boot_flags(cluster: Cluster, bmc: Bmc) -> None:
    """FreeIPMI: ipmi-config commits the boot flags (PXE, persistent, EFI) and the VM has them when it
    returns; ipmi-chassis --set-boot-flags sends its boot flags and then parameter 4 (boot info
    acknowledge), and both are answered."""
    out = bmc.kbmc.freeipmi(
        "ipmi-config",
        "--category=chassis",
        "--commit",
        "--key-pair=Chassis_Boot_Flags:Boot_Device=PXE",
        "--key-pair=Chassis_Boot_Flags:Boot_Flags_Persistent=Yes",
        "--key-pair=Chassis_Boot_Flags:BIOS_Boot_Type=EFI",
    )
    assert out.returncode == 0, out.stdout + out.stderr
    vm = cluster.vm(bmc.vm)
    assert vm is not None
    domain = vm["spec"]["template"]["spec"]["domain"]
    assert domain["devices"]["interfaces"][0].get("bootOrder") == 1
    assert "efi" in domain["firmware"]["bootloader"]
    assert {k: (stored(cluster, bmc) or {}).get(k) for k in ("target", "enabled", "mode")} == {
        "target": "Pxe",
        "enabled": "Continuous",
        "mode": "UEFI",
    }
    out = bmc.kbmc.freeipmi("ipmi-chassis", "--get-boot-flags")
    assert "Force PXE" in out.stdout, out
    # FreeIPMI 1.6's --set-boot-flags re-sends the device in effect, for the next boot only
    out = bmc.kbmc.freeipmi("ipmi-chassis", "--set-boot-flags", "--boot-device=pxe")
    assert out.returncode == 0, out.stdout + out.stderr
    assert (stored(cluster, bmc) or {}).get("enabled") == "Once"
    assert all(r["effect"] == "called" for r in boot_records(cluster, bmc))


# --- the API server hung ------------------------------------------------------------------------------


def test_hung_api_ipmitool_bootdev_is_busy_and_a_late_patch_is_undone(
    emu: EmulatorThread, cluster: Cluster, bmc: Bmc
) -> None:
    """The VM patch hangs in the API server: ipmitool hears C0h (node busy) after the same wait as a power
    command; at the bound the request is `unknown` with a Warning Event and the stored override is put
    back. When the server carries the patch out after all, the kbmc undoes it as its own request."""
    before = settings(cluster, bmc)
    rule = hold_patches(emu, bmc)
    out, took = timed(
        lambda: bmc.kbmc.ipmitool("chassis", "bootdev", "pxe", "options=efiboot", extra=ONE_TRY)
    )
    assert "Node busy" in out.stdout + out.stderr and "Set Boot Device" not in out.stdout, out
    figure("hung API: ipmitool chassis bootdev answered", f"{took:.2f} s: {out.stderr.strip()}")
    req = boot_records(cluster, bmc)[-1]
    started = time.monotonic()
    # ipmitool's other spelling, while the first still hangs: it waits for the first, then hangs too
    out = bmc.kbmc.ipmitool("chassis", "bootparam", "set", "bootflag", "force_disk", extra=ONE_TRY)
    assert "Node busy" in out.stdout + out.stderr, out
    second = boot_records(cluster, bmc)[-1]
    assert second["id"] != req["id"]
    settled(cluster, bmc, req["id"], "unknown")
    wait_until(lambda: warnings(cluster, bmc, req["id"]), what="a PowerActionFailed Warning Event")
    figure("hung API: boot record unknown + Warning after the answer", f"{time.monotonic() - started:.1f} s")
    nothing_pending(cluster, bmc)  # the second: `unknown` too, or `failed` if it never got its turn
    assert (record(cluster, bmc, second["id"]) or {}).get("effect") in ("unknown", "failed")
    wait_until(lambda: warnings(cluster, bmc, second["id"]), what="its Warning Event")
    wait_until(lambda: stored(cluster, bmc) is None, what="the stored override put back")
    assert settings(cluster, bmc) == before  # nothing changed while the server hangs
    assert "No override" in bootparam5(bmc)

    rule.release()  # the server comes back and carries the held patch out after all
    # both patches were guarded by the same VM version: whichever the server carries out first lands,
    # the other can no longer apply
    undo = wait_until(
        lambda: next((r for r in records(cluster, bmc) if r["action"] == "boot_restore"), None),
        timeout=30,
        what="the late patch's undo recorded",
    )
    late_id = undo["id"].removesuffix("-undo")
    assert late_id in (req["id"], second["id"]), undo
    assert undo["protocol"] == "kbmc", undo
    settled(cluster, bmc, undo["id"], "called")
    wait_until(lambda: settings(cluster, bmc) == before, what="the late patch undone")
    event = wait_until(
        lambda: [e for e in cluster.events_for(bmc.name) if e["reason"] == "BootOverrideRestored"],
        what="the undo's request Event",
    )[0]
    assert late_id in event["message"] and LATE_TEXT in event["message"], event
    assert len([r for r in records(cluster, bmc) if r["action"] == "boot_restore"]) == 1
    assert stored(cluster, bmc) is None
    nothing_pending(cluster, bmc)


def test_hung_api_freeipmi_hears_busy(emu: EmulatorThread, cluster: Cluster, bmc: Bmc) -> None:
    """FreeIPMI retries a C0h with a new request a few times, then fails; each try is its own request,
    all of them end `unknown` or `failed` (the later ones never got past the first's lock: nothing sent),
    and the VM ends as it was."""
    before = settings(cluster, bmc)
    rule = hold_patches(emu, bmc)
    out, took = timed(
        lambda: bmc.kbmc.freeipmi(
            "ipmi-config", "--category=chassis", "--commit", "--key-pair=Chassis_Boot_Flags:Boot_Device=PXE"
        )
    )
    assert out.returncode != 0 and "Failed to commit" in out.stdout + out.stderr, out
    tries = boot_records(cluster, bmc)
    assert tries, records(cluster, bmc)
    figure("hung API: FreeIPMI ipmi-config commit of Boot_Device", f"{took:.2f} s, {len(tries)} tries")
    nothing_pending(cluster, bmc)
    effects = [r["effect"] for r in boot_records(cluster, bmc)]
    assert set(effects) <= {"unknown", "failed"} and "unknown" in effects, effects
    for r in boot_records(cluster, bmc):
        wait_until(lambda r=r: warnings(cluster, bmc, r["id"]), what=f"a Warning Event for {r['id']}")
    assert stored(cluster, bmc) is None
    rule.release()
    wait_until(
        lambda: [
            r for r in records(cluster, bmc) if r["action"] == "boot_restore" and r["effect"] == "called"
        ],
        what="the late patch undone",
    )
    wait_until(lambda: settings(cluster, bmc) == before, what="the VM as it was")


def test_hung_api_redfish_boot_patch_answers_503(
    emu: EmulatorThread, cluster: Cluster, tmp_path: Path
) -> None:
    """Redfish PATCH of Boot waits for its patch: with the API server hung it answers 503 with Retry-After
    once the bound has passed, and the request is `unknown` with a Warning Event."""
    made = new_bmc(emu, cluster, tmp_path, redfish=True)
    try:
        before = settings(cluster, made)
        rule = hold_patches(emu, made)
        started = time.monotonic()
        answer = httpx.patch(
            f"{made.redfish}/redfish/v1/Systems/{made.vm}",
            json={"Boot": {"BootSourceOverrideTarget": "Pxe", "BootSourceOverrideEnabled": "Once"}},
            auth=(made.kbmc.user, made.kbmc.password),
            timeout=CALL_BOUND_SECONDS + 20,
        )
        took = time.monotonic() - started
        assert answer.status_code == 503, answer.text
        assert int(answer.headers["Retry-After"]) >= 1
        body = answer.json()["error"]["@Message.ExtendedInfo"][0]
        assert body["MessageId"].endswith("ServiceTemporarilyUnavailable"), body
        figure("hung API: Redfish PATCH Boot answered 503", f"{took:.1f} s")
        req = [r for r in records(cluster, made) if r["action"] == BOOT][-1]
        settled(cluster, made, req["id"], "unknown")
        wait_until(lambda: warnings(cluster, made, req["id"]), what="a PowerActionFailed Warning Event")
        got = httpx.get(
            f"{made.redfish}/redfish/v1/Systems/{made.vm}", auth=(made.kbmc.user, made.kbmc.password)
        ).json()
        assert got["Boot"]["BootSourceOverrideEnabled"] == "Disabled", got["Boot"]
        rule.release()
        settled(cluster, made, f"{req['id']}-undo", "called")
        wait_until(lambda: settings(cluster, made) == before, what="the late patch undone")
    finally:
        emu.emulator.faults.clear()
        made.kbmc.stop()


# --- the API server unreachable -----------------------------------------------------------------------


def test_stopped_api_bootdev_answers_ffh(emu: EmulatorThread, cluster: Cluster, tmp_path: Path) -> None:
    """Every connection to the API server refused: the boot device request is answered FFh (unspecified
    error) at once; once the server is back nothing is applied late and no record is left pending."""
    made, proxy = new_bmc_behind_proxy(emu, cluster, tmp_path)
    try:
        before = settings(cluster, made)
        assert "No override" in bootparam5(made)
        proxy.stop_api()
        out, took = timed(lambda: made.kbmc.ipmitool("chassis", "bootdev", "pxe", extra=ONE_TRY))
        assert "Unspecified error" in out.stdout + out.stderr and "Set Boot Device" not in out.stdout, out
        figure("stopped API: ipmitool chassis bootdev answered", f"{took:.2f} s: {out.stderr.strip()}")
        out, took = timed(
            lambda: made.kbmc.freeipmi(
                "ipmi-config",
                "--category=chassis",
                "--commit",
                "--key-pair=Chassis_Boot_Flags:Boot_Device=PXE",
            )
        )
        assert out.returncode != 0 and "Failed to commit" in out.stdout + out.stderr, out
        figure("stopped API: FreeIPMI ipmi-config commit of Boot_Device answered", f"{took:.2f} s")
        time.sleep(1.0)  # down a while longer
        proxy.start_api()
        nothing_pending(cluster, made)
        assert settings(cluster, made) == before
        assert stored(cluster, made) is None
    finally:
        made.kbmc.stop()
        proxy.close()


# --- the kbmc killed and restarted --------------------------------------------------------------------


def test_kbmc_killed_while_its_boot_patch_hangs(emu: EmulatorThread, cluster: Cluster, bmc: Bmc) -> None:
    """Killed after storing the override and while its VM patch hangs (the server then refuses it): the
    restarted kbmc ends the request `failed` with a Warning Event, never sends the patch again, and clears
    the stored override the VM never got."""
    before = settings(cluster, bmc)
    rule = hold_patches(emu, bmc, status=503)
    with ThreadPoolExecutor(1) as pool:
        client = pool.submit(bmc.kbmc.ipmitool, "chassis", "bootdev", "cdrom", extra=ONE_TRY)
        wait_until(lambda: (stored(cluster, bmc) or {}).get("target") == "Cd", what="the override stored")
        kill(bmc)
        client.result(timeout=30)
    req = boot_records(cluster, bmc)[-1]
    assert req["effect"] == "pending", req
    rule.release()  # answered 503: not carried out
    emu.emulator.faults.clear()
    bmc.restart()
    settled(cluster, bmc, req["id"], "failed")
    wait_until(lambda: warnings(cluster, bmc, req["id"]), what="a PowerActionFailed Warning Event")
    wait_until(lambda: stored(cluster, bmc) is None, what="the stale override cleared")
    assert settings(cluster, bmc) == before
    assert "No override" in bootparam5(bmc)


def test_kbmc_killed_while_its_boot_patch_hangs_then_lands(
    emu: EmulatorThread, cluster: Cluster, bmc: Bmc
) -> None:
    """Killed while its VM patch hangs, and the server carries the patch out only after the restarted
    kbmc has settled the request `failed`: the restarted kbmc recognises the late patch and undoes it."""
    before = settings(cluster, bmc)
    rule = hold_patches(emu, bmc)
    with ThreadPoolExecutor(1) as pool:
        client = pool.submit(bmc.kbmc.ipmitool, "chassis", "bootdev", "pxe", "options=efiboot", extra=ONE_TRY)
        wait_until(lambda: (stored(cluster, bmc) or {}).get("target") == "Pxe", what="the override stored")
        kill(bmc)
        client.result(timeout=30)
    req = boot_records(cluster, bmc)[-1]
    bmc.restart()
    settled(cluster, bmc, req["id"], "failed")
    wait_until(lambda: stored(cluster, bmc) is None, what="the stale override cleared")
    assert settings(cluster, bmc) == before
    rule.release()  # the held patch lands now, after the restart
    settled(cluster, bmc, f"{req['id']}-undo", "called")
    wait_until(lambda: settings(cluster, bmc) == before, what="the late patch undone")
    assert "No override" in bootparam5(bmc)


def test_kbmc_restarted_after_bootdev_keeps_it(cluster: Cluster, bmc: Bmc) -> None:
    """Killed right after answering success: the override is in the VM and the record is `called`; the
    restarted kbmc reads it back as it was and changes nothing."""
    out = bmc.kbmc.ipmitool("chassis", "bootdev", "disk", "options=persistent")
    kill(bmc)
    assert out.stdout.strip() == "Set Boot Device to disk", out
    after = settings(cluster, bmc)
    req = boot_records(cluster, bmc)[-1]
    assert req["effect"] == "called", req
    bmc.restart()
    shown = bootparam5(bmc)
    assert "Hard-Drive" in shown and "Options apply to all future boots" in shown, shown
    nothing_pending(cluster, bmc)
    assert (record(cluster, bmc, req["id"]) or {}).get("effect") == "called"
    assert settings(cluster, bmc) == after

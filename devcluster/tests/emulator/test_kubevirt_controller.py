"""The fake KubeVirt controller against an in-memory store (no HTTP): power flows, runStrategies, hooks."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import pytest

from vmbmc_devcluster.emulator.errors import ApiError
from vmbmc_devcluster.emulator.kubevirt import VM_RT, VMI_RT, KubeVirt, install_kubevirt
from vmbmc_devcluster.testing.kubevirt_fake_cluster import FakeEmulator

NS = "default"


def vm_manifest(name: str = "vm1", run_strategy: str = "Halted") -> dict:
    return {
        "apiVersion": "kubevirt.io/v1",
        "kind": "VirtualMachine",
        "metadata": {"name": name},
        "spec": {
            "runStrategy": run_strategy,
            "template": {
                "metadata": {"labels": {"kubevirt.io/vm": name}},
                "spec": {
                    "domain": {"devices": {"disks": [{"name": "root", "disk": {}, "bootOrder": 1}]}},
                    "terminationGracePeriodSeconds": 30,
                },
            },
        },
    }


@pytest.fixture
async def cluster() -> AsyncIterator[tuple[FakeEmulator, KubeVirt]]:
    emu = FakeEmulator()
    kv = install_kubevirt(emu, start_delay=0.06, stop_delay=0.06)
    emu.sync_types()
    task = asyncio.create_task(kv.run(emu))
    yield emu, kv
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def until(pred: Callable[[], object], timeout: float = 3.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not pred():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached")
        await asyncio.sleep(0.01)


def vm(emu: FakeEmulator, name: str = "vm1") -> dict:
    return emu.store.get(VM_RT, NS, name)


def vmi(emu: FakeEmulator, name: str = "vm1") -> dict | None:
    return emu.store.try_get(VMI_RT, NS, name)


def status(emu: FakeEmulator, name: str = "vm1") -> str | None:
    return (vm(emu, name).get("status") or {}).get("printableStatus")


async def test_start_runs_and_ready(cluster: tuple[FakeEmulator, KubeVirt]) -> None:
    emu, kv = cluster
    emu.store.create(VM_RT, vm_manifest(), NS)
    await until(lambda: status(emu) == "Stopped")
    assert kv.call("start", NS, "vm1", None) == 202
    assert vm(emu)["spec"]["runStrategy"] == "Always"
    await until(lambda: status(emu) == "Starting")
    await until(lambda: vm(emu)["status"].get("ready") is True)
    v, i = vm(emu), vmi(emu)
    assert v["status"]["printableStatus"] == "Running" and v["status"]["created"] is True
    assert i is not None
    assert [p["phase"] for p in i["status"]["phaseTransitionTimestamps"]] == [
        "Pending",
        "Scheduling",
        "Scheduled",
        "Running",
    ]
    assert i["status"]["interfaces"][0]["ipAddress"].startswith("10.244.")
    assert i["metadata"]["ownerReferences"][0]["uid"] == v["metadata"]["uid"]
    with pytest.raises(ApiError) as e:
        kv.call("start", NS, "vm1", None)
    assert e.value.code == 409


async def test_stop_is_graceful(cluster: tuple[FakeEmulator, KubeVirt]) -> None:
    emu, kv = cluster
    kv.set_delays(stop=0.3)
    emu.store.create(VM_RT, vm_manifest(run_strategy="Always"), NS)
    await until(lambda: status(emu) == "Running")
    kv.call("stop", NS, "vm1", {})
    await until(lambda: status(emu) == "Stopping")
    terminating = vmi(emu)
    assert terminating is not None and terminating["metadata"].get("deletionTimestamp")
    await until(lambda: status(emu) == "Stopped")
    assert vmi(emu) is None
    assert vm(emu)["status"]["ready"] is False


async def test_force_stop_while_stopping(cluster: tuple[FakeEmulator, KubeVirt]) -> None:
    emu, kv = cluster
    kv.set_delays(stop=30)
    emu.store.create(VM_RT, vm_manifest(run_strategy="Always"), NS)
    await until(lambda: status(emu) == "Running")
    kv.call("stop", NS, "vm1", None)
    await until(lambda: status(emu) == "Stopping")
    with pytest.raises(ApiError) as e:
        kv.call("stop", NS, "vm1", None)
    assert e.value.code == 409 and "shorter graceperiod" in e.value.status()["message"]
    assert kv.call("stop", NS, "vm1", {"gracePeriod": 0}) == 202
    await until(lambda: status(emu) == "Stopped", timeout=2)


async def test_restart_gives_new_uid(cluster: tuple[FakeEmulator, KubeVirt]) -> None:
    emu, kv = cluster
    emu.store.create(VM_RT, vm_manifest(run_strategy="Always"), NS)
    await until(lambda: status(emu) == "Running")
    first = vmi(emu)["metadata"]["uid"]
    assert kv.call("restart", NS, "vm1", {"gracePeriodSeconds": 0}) == 202
    await until(lambda: (vmi(emu) or {}).get("metadata", {}).get("uid") not in (None, first))
    await until(lambda: status(emu) == "Running")
    assert "stateChangeRequests" not in vm(emu)["status"]


async def test_pause_unpause(cluster: tuple[FakeEmulator, KubeVirt]) -> None:
    emu, kv = cluster
    emu.store.create(VM_RT, vm_manifest(run_strategy="Always"), NS)
    await until(lambda: status(emu) == "Running")
    assert kv.call("pause", NS, "vm1", None) == 200
    await until(lambda: status(emu) == "Paused")
    cond = next(c for c in vm(emu)["status"]["conditions"] if c["type"] == "Paused")
    assert cond["status"] == "True" and cond["lastTransitionTime"]
    with pytest.raises(ApiError):
        kv.call("pause", NS, "vm1", None)
    assert kv.virtctl(NS, "vm1", "unpause") == 200
    await until(lambda: status(emu) == "Running")
    assert all(c["type"] != "Paused" for c in vm(emu)["status"]["conditions"])


async def test_guest_shutdown_per_strategy(cluster: tuple[FakeEmulator, KubeVirt]) -> None:
    emu, kv = cluster
    emu.store.create(VM_RT, vm_manifest("always", "Always"), NS)
    emu.store.create(VM_RT, vm_manifest("manual", "Manual"), NS)
    emu.store.create(VM_RT, vm_manifest("rerun", "RerunOnFailure"), NS)
    kv.call("start", NS, "manual", None)
    for name in ("always", "manual", "rerun"):
        await until(lambda name=name: status(emu, name) == "Running")
    uids = {n: vmi(emu, n)["metadata"]["uid"] for n in ("always", "manual", "rerun")}
    for name in ("always", "manual", "rerun"):
        kv.guest_shutdown(NS, name)
    await until(
        lambda: (vmi(emu, "always") or {}).get("metadata", {}).get("uid") not in (None, uids["always"])
    )
    await until(lambda: status(emu, "always") == "Running")
    await until(lambda: vmi(emu, "rerun") is None and status(emu, "rerun") == "Stopped")
    assert vmi(emu, "manual")["status"]["phase"] == "Succeeded"
    assert status(emu, "manual") == "Stopped"
    # Manual: start replaces the final VMI.
    kv.call("start", NS, "manual", None)
    await until(lambda: status(emu, "manual") == "Running")
    assert vmi(emu, "manual")["metadata"]["uid"] != uids["manual"]


async def test_rerun_on_failure_restarts_failed_vmi(cluster: tuple[FakeEmulator, KubeVirt]) -> None:
    emu, kv = cluster
    emu.store.create(VM_RT, vm_manifest(run_strategy="RerunOnFailure"), NS)
    await until(lambda: status(emu) == "Running")
    first = vmi(emu)["metadata"]["uid"]
    kv.vmi_fail(NS, "vm1")
    await until(lambda: (vmi(emu) or {}).get("metadata", {}).get("uid") not in (None, first))
    await until(lambda: status(emu) == "Running")


async def test_template_change_requires_restart(cluster: tuple[FakeEmulator, KubeVirt]) -> None:
    emu, kv = cluster
    emu.store.create(VM_RT, vm_manifest(run_strategy="Always"), NS)
    await until(lambda: status(emu) == "Running")

    def boot_from_pxe(o: dict) -> None:
        o["spec"]["template"]["spec"]["domain"]["devices"]["disks"][0]["bootOrder"] = 2

    emu.store.mutate(VM_RT, NS, "vm1", boot_from_pxe)
    await until(lambda: any(c["type"] == "RestartRequired" for c in vm(emu)["status"]["conditions"]))
    assert vmi(emu)["spec"]["domain"]["devices"]["disks"][0]["bootOrder"] == 1
    kv.call("restart", NS, "vm1", None)
    await until(
        lambda: (
            (vmi(emu) or {})
            .get("spec", {})
            .get("domain", {})
            .get("devices", {})
            .get("disks", [{}])[0]
            .get("bootOrder")
            == 2
        )
    )
    await until(lambda: not any(c["type"] == "RestartRequired" for c in vm(emu)["status"]["conditions"]))


async def test_fail_next_and_errors(cluster: tuple[FakeEmulator, KubeVirt]) -> None:
    emu, kv = cluster
    with pytest.raises(ApiError) as e:
        kv.call("start", NS, "missing", None)
    assert e.value.code == 404
    emu.store.create(VM_RT, vm_manifest(), NS)
    kv.fail_next("start", 503, "virt-api unavailable")
    with pytest.raises(ApiError) as e:
        kv.call("start", NS, "vm1", None)
    assert e.value.code == 503
    with pytest.raises(ApiError) as e:
        kv.call("stop", NS, "vm1", {"gracePeriod": "soon"})
    assert e.value.code == 400
    assert kv.call("start", NS, "vm1", {"dryRun": ["All"]}) == 202
    assert vm(emu)["spec"]["runStrategy"] == "Halted"


async def test_vm_deletion_stops_vmi(cluster: tuple[FakeEmulator, KubeVirt]) -> None:
    emu, _ = cluster
    emu.store.create(VM_RT, vm_manifest(run_strategy="Always"), NS)
    await until(lambda: status(emu) == "Running")
    emu.store.delete(VM_RT, NS, "vm1")
    await until(lambda: emu.store.try_get(VM_RT, NS, "vm1") is None and vmi(emu) is None)


async def test_legacy_running_flag(cluster: tuple[FakeEmulator, KubeVirt]) -> None:
    emu, kv = cluster
    manifest = vm_manifest()
    del manifest["spec"]["runStrategy"]
    manifest["spec"]["running"] = False
    emu.store.create(VM_RT, manifest, NS)
    kv.call("start", NS, "vm1", None)
    assert vm(emu)["spec"]["running"] is True
    await until(lambda: status(emu) == "Running")
    kv.call("stop", NS, "vm1", {"gracePeriod": 0})
    assert vm(emu)["spec"]["running"] is False
    await until(lambda: status(emu) == "Stopped")


async def test_standalone_vmi_boots_and_deletes_gracefully(cluster: tuple[FakeEmulator, KubeVirt]) -> None:
    emu, _ = cluster
    emu.store.create(VMI_RT, {"metadata": {"name": "solo"}, "spec": {"domain": {"devices": {}}}}, NS)
    await until(lambda: (vmi(emu, "solo") or {}).get("status", {}).get("phase") == "Running")
    assert "foregroundDeleteVirtualMachine" in vmi(emu, "solo")["metadata"]["finalizers"]
    emu.store.delete(VMI_RT, NS, "solo")
    assert vmi(emu, "solo")["metadata"]["deletionTimestamp"]
    await until(lambda: vmi(emu, "solo") is None)


async def test_start_paused(cluster: tuple[FakeEmulator, KubeVirt]) -> None:
    emu, kv = cluster
    emu.store.create(VM_RT, vm_manifest(), NS)
    assert kv.call("start", NS, "vm1", {"paused": True}) == 202
    await until(lambda: status(emu) == "Paused")
    assert vm(emu)["spec"]["runStrategy"] == "Always"
    assert vmi(emu)["spec"]["startStrategy"] == "Paused"
    assert "stateChangeRequests" not in vm(emu)["status"]
    kv.call("unpause", NS, "vm1", None)
    await until(lambda: status(emu) == "Running")

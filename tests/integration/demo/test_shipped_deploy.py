"""deploy/ as users apply it, run by the demo's pod runner (a kind node's kubelet, in effect):

- an overlay whose kustomize `images:` renames `vmbmc` names that image only, and the kbmc pods the
  controller deployed from it make run that same image (the controller reads its own pod);
- the pod runner pins one address per kbmc Deployment: a killed kbmc process and a deleted pod come
  back answering ipmitool at the same address;
- a kbmc image the node does not have shows ErrImagePull / ImagePullBackOff in the pod, and the BMC's
  Ready condition says so."""

from __future__ import annotations

import copy
import json
import os
import signal
import subprocess
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT
from tests.processes import kbmc_pid
from vmbmc import manifests
from vmbmc_devcluster.demo.cluster import controller_failure, ready_endpoint
from vmbmc_devcluster.demo.install import with_controller_args
from vmbmc_devcluster.demo.podrunner import LocalPodRunner
from vmbmc_devcluster.demo.samples import sample_vm
from vmbmc_devcluster.emulator.harness import EmulatorThread
from vmbmc_devcluster.testing.plugin import KUBECTL
from vmbmc_devcluster.testing.waiting import wait_until

SYSTEM = "virtualmachinebmc-system"
IMAGE = "registry.example/v/vmbmc:1.2.3"
BMC_LABEL = "virtualmachinebmc.kubevirt.io/bmc"


def kubectl(kubeconfig: str, *args: str, input: str | None = None) -> str:
    out = subprocess.run(
        [KUBECTL, "--kubeconfig", kubeconfig, *args], input=input, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, (args, out.stderr)
    return out.stdout


@contextmanager
def cluster(tmp_path: Path, image: str) -> Iterator[EmulatorThread]:
    """An emulated cluster whose node has `image` (and no other) and one sample VM."""
    kubeconfig = tmp_path / "kubeconfig"
    runner = LocalPodRunner(str(kubeconfig), tmp_path / "work", images=[image])
    with EmulatorThread(kubeconfig=kubeconfig, pod_runner=runner) as emu:
        runner.attach(emu.emulator, url=emu.url, ca_file=emu.ca_file)
        vm_rt = emu.emulator.registry.get("kubevirt.io", "v1", "virtualmachines")
        emu.call(emu.emulator.store.create, vm_rt, sample_vm(1), "default")
        yield emu


def images_named(objects: list[dict]) -> set[str]:
    found: set[str] = set()

    def walk(node: object) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "image" and isinstance(value, str):
                    found.add(value)
                elif "image" in key.lower() and isinstance(value, str):
                    found.add(value)  # e.g. a --kbmc-image flag would show up as a second image
                walk(value)
        elif isinstance(node, list):
            for item in node:
                if isinstance(item, str) and "image" in item:
                    found.add(item)
                walk(item)

    walk(objects)
    return found


def kbmc_pod(emu: EmulatorThread, bmc: str) -> dict | None:
    pods, _ = emu.call(
        emu.emulator.store.list,
        emu.emulator.registry.get("", "v1", "pods"),
        SYSTEM,
        label_selector=f"{BMC_LABEL}={bmc}",
    )
    live = [p for p in pods if not p["metadata"].get("deletionTimestamp")]
    return live[0] if len(live) == 1 else None


def ipmitool_status(host: str, user: str, password: str) -> str:
    lanplus = ["ipmitool", "-I", "lanplus", "-H", host, "-p", "10623", "-U", user, "-P", password]
    out = subprocess.run(
        [*lanplus, "-R", "1", "-N", "2", "power", "status"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    return out.stdout.strip()


def test_overlay_image_runs_every_pod_and_addresses_survive_restarts(tmp_path: Path) -> None:
    overlay = tmp_path / "overlay"
    overlay.mkdir()
    (overlay / "kustomization.yaml").write_text(
        yaml.safe_dump(
            {
                "resources": [os.path.relpath(ROOT / "deploy", overlay)],
                "images": [{"name": "vmbmc", "newName": "registry.example/v/vmbmc", "newTag": "1.2.3"}],
            }
        )
    )
    rendered = subprocess.run(
        [KUBECTL, "kustomize", str(overlay)], capture_output=True, text=True, timeout=60, check=True
    ).stdout
    assert images_named([d for d in yaml.safe_load_all(rendered) if d]) == {IMAGE}

    with cluster(tmp_path, IMAGE) as emu:
        kubectl(emu.kubeconfig, "apply", "--validate=false", "-f", "-", input=rendered)
        endpoint = wait_until(
            lambda: emu.call(ready_endpoint, emu, ("default", "demo-vm-1")), timeout=60, what="BMC Ready"
        )
        bmc = endpoint.bmc.split("/")[1]
        pod = kbmc_pod(emu, bmc)
        assert pod is not None
        assert pod["spec"]["containers"][0]["image"] == IMAGE
        assert pod["status"]["containerStatuses"][0]["image"] == IMAGE
        deployment = json.loads(
            kubectl(emu.kubeconfig, "-n", SYSTEM, "get", "deployment", f"{bmc}-kbmc", "-o", "json")
        )
        assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] == IMAGE
        address, user, password = endpoint.ipmi_host, endpoint.username, endpoint.password
        assert ipmitool_status(address, user, password) == "Chassis Power is off"

        # The kbmc process dies: the kubelet restarts the container on the same address.
        pid = kbmc_pid(address)
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        wait_until(
            lambda: (p := kbmc_pod(emu, bmc)) and p["status"]["containerStatuses"][0]["restartCount"] >= 1,
            timeout=30,
            what="the container restarted",
        )
        wait_until(lambda: kbmc_pid(address) not in (None, pid), timeout=30, what="a new kbmc process")
        wait_until(
            lambda: ipmitool_status(address, user, password) == "Chassis Power is off",
            timeout=30,
            what="the restarted kbmc answering at the same address",
        )

        # The pod is deleted: its replacement (a new pod of the same Deployment) gets the same address.
        old_name = kbmc_pod(emu, bmc)["metadata"]["name"]
        kubectl(emu.kubeconfig, "-n", SYSTEM, "delete", "pod", old_name, "--wait=false")
        replacement = wait_until(
            lambda: (
                (p := kbmc_pod(emu, bmc))
                and p["metadata"]["name"] != old_name
                and p.get("status", {}).get("podIP")
                and p
            ),
            timeout=30,
            what="a replacement pod",
        )
        assert replacement["status"]["podIP"] == address
        wait_until(
            lambda: ipmitool_status(address, user, password) == "Chassis Power is off",
            timeout=30,
            what="the replacement kbmc answering at the same address",
        )
        assert emu.call(lambda: list(emu.emulator.security.denials)) == []


def test_a_kbmc_image_the_node_lacks_is_told_in_the_bmc_condition(tmp_path: Path) -> None:
    objects = manifests.deploy_documents()
    shipped = manifests.controller_image(objects)
    objects = with_controller_args(objects, ["--kbmc-image=registry.example/v/vmbmc:missing"])
    with cluster(tmp_path, shipped) as emu:
        kubectl(emu.kubeconfig, "apply", "--validate=false", "-f", "-", input=yaml.safe_dump_all(objects))

        def ready_message() -> str | None:
            for item in json.loads(kubectl(emu.kubeconfig, "-n", SYSTEM, "get", "vmbmc", "-o", "json"))[
                "items"
            ]:
                for cond in item.get("status", {}).get("conditions") or []:
                    if cond["type"] == "Ready" and "ImagePull" in cond.get("message", ""):
                        return str(cond["message"])
            return None

        message = wait_until(ready_message, timeout=60, what="the Ready condition naming the image pull")
        assert "registry.example/v/vmbmc:missing" in message
        assert "ErrImagePull" in message or "ImagePullBackOff" in message, message
        pods = json.loads(kubectl(emu.kubeconfig, "-n", SYSTEM, "get", "pods", "-l", BMC_LABEL, "-o", "json"))
        (pod,) = pods["items"]
        waiting = pod["status"]["containerStatuses"][0]["state"]["waiting"]
        assert waiting["reason"] in ("ErrImagePull", "ImagePullBackOff"), waiting
        assert pod["status"]["phase"] == "Pending"


def _without_pods_rule(objects: list[dict]) -> list[dict]:
    out = copy.deepcopy(objects)
    for obj in out:
        if obj["kind"] == "ClusterRole":
            obj["rules"] = [r for r in obj["rules"] if "pods" not in r.get("resources", [])]
    return out


@pytest.mark.parametrize(
    ("broken", "logged"),
    [
        (
            lambda objs: with_controller_args(objs, ["--no-such-flag"]),
            "unrecognized arguments: --no-such-flag",
        ),
        (_without_pods_rule, "cannot list resource"),
    ],
    ids=["wrong flag", "missing rule"],
)
def test_a_broken_deploy_stops_the_controller_pod(tmp_path: Path, broken: Callable, logged: str) -> None:
    """What runs is what deploy/ says: a flag the controller does not know or a rule it lacks makes its
    pod exit (and `vmbmc demo` say so), as it would in a cluster."""
    objects = broken(manifests.deploy_documents())
    with cluster(tmp_path, manifests.controller_image(objects)) as emu:
        kubectl(emu.kubeconfig, "apply", "--validate=false", "-f", "-", input=yaml.safe_dump_all(objects))
        why = wait_until(
            lambda: emu.call(controller_failure, emu), timeout=60, what="the controller pod failing"
        )
        assert "exited" in why, why
        (log,) = (tmp_path / "work" / "pods").glob("*-vmbmc-controller-*/controller.log")
        assert logged in log.read_text()

"""The demo's pod runner: a kbmc pod as the controller writes it runs as a local `vmbmc kbmc`
process on a loopback address of its own, once its Secret exists, Ready from its /readyz, stopped when
the pod goes."""

from __future__ import annotations

import base64
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parents[1] / "machine"))
sys.path.insert(0, str(Path(__file__).parents[1] / "kbmc"))

from machine_cluster import Cluster, crd_files

from vmbmc_devcluster.demo.podrunner import LocalPodRunner
from vmbmc_devcluster.emulator.harness import EmulatorThread
from vmbmc_devcluster.testing.waiting import wait_until

PASSWORD = "pod-runner-pass-20ch"  # 20 characters: IPMI 2.0's limit


def kbmc_pod(bmc: str) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": f"{bmc}-kbmc-0",
            "namespace": "default",
            "labels": {"app.kubernetes.io/name": "vmbmc", "app.kubernetes.io/component": "kbmc"},
        },
        "spec": {
            "containers": [
                {
                    "name": "kbmc",
                    "image": "vmbmc:dev",
                    "args": [
                        "kbmc",
                        "--bmc",
                        f"default/{bmc}",
                        "--ipmi-port",
                        "10623",
                        "--health-port",
                        "8081",
                        "--credentials-dir",
                        "/etc/vmbmc/credentials",
                    ],
                    "volumeMounts": [
                        {"name": "credentials", "mountPath": "/etc/vmbmc/credentials", "readOnly": True},
                        {"name": "tmp", "mountPath": "/tmp"},
                    ],
                    "readinessProbe": {"httpGet": {"path": "/readyz", "port": 8081}},
                }
            ],
            "volumes": [
                {"name": "credentials", "secret": {"secretName": f"{bmc}-credentials"}},
                {"name": "tmp", "emptyDir": {}},
            ],
        },
    }


def ipmitool(ip: str) -> list[str]:
    return ["ipmitool", "-I", "lanplus", "-H", ip, "-p", "10623", "-U", "admin", "-P", PASSWORD]


def test_kbmc_pod_runs_locally_and_answers_ipmi(tmp_path: Path) -> None:
    runner = LocalPodRunner(str(tmp_path / "kubeconfig"), tmp_path / "work", images=["vmbmc:dev"])
    with EmulatorThread(kubeconfig=tmp_path / "kubeconfig", crds=crd_files(), pod_runner=runner) as emu:
        runner.attach(emu.emulator)
        cluster = Cluster(emu)
        cluster.create_vm("pod-vm")
        cluster.create_bmc("pod-bmc", "pod-vm")
        store, reg = emu.emulator.store, emu.emulator.registry
        pods = reg.get("", "v1", "pods")
        emu.call(store.create, pods, kbmc_pod("pod-bmc"), "default")

        def waiting_reason() -> str | None:
            pod = emu.call(store.try_get, pods, "default", "pod-bmc-kbmc-0") or {}
            statuses = (pod.get("status") or {}).get("containerStatuses") or [{}]
            return ((statuses[0].get("state") or {}).get("waiting") or {}).get("reason")

        # Its Secret does not exist yet: the pod waits in ContainerCreating (a kubelet's FailedMount) and
        # starts once the Secret is there.
        wait_until(lambda: waiting_reason() == "ContainerCreating", what="ContainerCreating")
        secret = {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "pod-bmc-credentials", "namespace": "default"},
            "data": {
                "username": base64.b64encode(b"admin").decode(),
                "password": base64.b64encode(PASSWORD.encode()).decode(),
            },
        }
        emu.call(store.create, reg.get("", "v1", "secrets"), secret, "default")

        def ready_pod():
            pod = emu.call(store.try_get, pods, "default", "pod-bmc-kbmc-0")
            conds = {c["type"]: c["status"] for c in (pod or {}).get("status", {}).get("conditions", [])}
            return pod if conds.get("Ready") == "True" else None

        # A generous bound: under load the kbmc process takes several seconds to import and make its
        # certificate before its /readyz answers.
        pod = wait_until(ready_pod, timeout=60, what="pod Ready")
        ip = pod["status"]["podIP"]
        assert ip.startswith("127.10.")
        out = subprocess.run(
            [
                *ipmitool(ip),
                "power",
                "status",
            ],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert out.stdout.strip() == "Chassis Power is off", out
        log = (tmp_path / "work" / "pods" / "default-pod-bmc-kbmc-0" / "kbmc.log").read_text()
        assert "kbmc ready" in log and PASSWORD not in log
        emu.call(store.delete, pods, "default", "pod-bmc-kbmc-0")
        wait_until(
            lambda: emu.call(store.try_get, pods, "default", "pod-bmc-kbmc-0") is None, what="pod gone"
        )
        out = subprocess.run(
            [
                *ipmitool(ip),
                "-R",
                "1",
                "-N",
                "1",
                "power",
                "status",
            ],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert out.returncode != 0  # the process is gone with its pod

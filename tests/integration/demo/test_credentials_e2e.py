"""A user's own credentials (`spec.authSecretRef`) through the whole chain: the real controller, the pod
runner running each kbmc pod as a real `vmbmc kbmc`, and real kubectl, ipmitool and Redfish clients.

- a Secret that does not exist yet: a `Credentials` condition and a Warning Event name it; created, the
  BMC becomes Ready without anyone touching it;
- a password of 17-20 bytes: IPMI 2.0 (`-I lanplus`) and Redfish work, `-I lan` cannot, and a condition
  and a Warning Event say so;
- over 20 bytes: IPMI logins are refused (Redfish works), with a condition saying why.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "machine"))

from machine_cluster import ROOT, crd_files

from vmbmc.controller import ControllerOptions, ControllerThread
from vmbmc_devcluster.demo.identity import install_controller_identity
from vmbmc_devcluster.demo.podrunner import LocalPodRunner
from vmbmc_devcluster.demo.samples import sample_vm
from vmbmc_devcluster.emulator.harness import EmulatorThread
from vmbmc_devcluster.testing.plugin import KUBECTL
from vmbmc_devcluster.testing.waiting import wait_until

SYSTEM = "virtualmachinebmc-system"
PW18 = "Ab3dEf6hIj9lMn2pQr"  # 18 bytes
PW24 = "Ab3dEf6hIj9lMn2pQr5tUv8x"  # 24 bytes


@pytest.mark.timeout(400)  # bounded polls of up to 60 s each on a loaded machine
def test_user_secrets_missing_and_too_long(tmp_path: Path) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    runner = LocalPodRunner(str(kubeconfig), tmp_path / "work", first_address=200, images=["vmbmc:dev"])
    with EmulatorThread(kubeconfig=kubeconfig, crds=crd_files(), pod_runner=runner) as emu:
        runner.attach(emu.emulator, url=emu.url, ca_file=emu.ca_file)

        def kubectl(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [KUBECTL, "--kubeconfig", str(kubeconfig), *args],
                input=stdin,
                capture_output=True,
                text=True,
                timeout=30,
            )

        for ns in (SYSTEM, "tenant"):
            assert kubectl("create", "namespace", ns).returncode == 0
        vm = sample_vm(1, "tenant")
        assert kubectl("apply", "--validate=false", "-f", "-", stdin=json.dumps(vm)).returncode == 0
        controller_kc = tmp_path / "controller.kubeconfig"
        install_controller_identity(emu, ROOT / "deploy" / "rbac.yaml", controller_kc)
        opts = ControllerOptions(
            kubeconfig=str(controller_kc),
            health_port=0,
            health_address="127.0.0.1",
            auto_create=False,
            identity="credentials-e2e",
        )

        def bmc(name: str, secret: str) -> str:
            body = {
                "apiVersion": "virtualmachine.kubevirt.io/v1",
                "kind": "VirtualMachineBMC",
                "metadata": {"name": name, "namespace": SYSTEM},
                "spec": {
                    "virtualMachineRef": {"namespace": "tenant", "name": vm["metadata"]["name"]},
                    "authSecretRef": {"name": secret},
                    "redfish": {"enabled": True, "insecureHTTP": True},
                },
            }
            out = kubectl("apply", "--validate=false", "-f", "-", stdin=json.dumps(body))
            assert out.returncode == 0, out.stderr
            return name

        def secret(name: str, password: str) -> None:
            out = kubectl(
                "-n", SYSTEM, "create", "secret", "generic", name,
                "--from-literal=username=admin", f"--from-literal=password={password}",
            )  # fmt: skip
            assert out.returncode == 0, out.stderr

        def credentials(name: str, reason: str) -> dict[str, Any] | None:
            out = kubectl("-n", SYSTEM, "get", "vmbmc", name, "-o", "json")
            status = json.loads(out.stdout).get("status") or {} if out.returncode == 0 else {}
            cond = {c["type"]: c for c in status.get("conditions") or []}.get("Credentials")
            return cond if cond and cond["reason"] == reason else None

        def warning(name: str, reason: str) -> str | None:
            out = kubectl(
                "-n", SYSTEM, "get", "events", "-o", "json",
                "--field-selector", f"involvedObject.name={name},reason={reason},type=Warning",
            )  # fmt: skip
            items = json.loads(out.stdout)["items"] if out.returncode == 0 else []
            return items[0]["message"] if items else None

        def pod_ip(name: str) -> str | None:
            out = kubectl(
                "-n", SYSTEM, "get", "pods", "-l", f"virtualmachinebmc.kubevirt.io/bmc={name}",
                "-o", "jsonpath={.items[0].status.podIP}",
            )  # fmt: skip
            ready = kubectl("-n", SYSTEM, "get", "vmbmc", name, "-o", "jsonpath={.status.ready}")
            return out.stdout.strip() or None if ready.stdout == "true" else None

        def ipmitool(interface: str, ip: str, password: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                ["ipmitool", "-I", interface, "-H", ip, "-p", "10623", "-U", "admin", "-P", password,
                 "-R", "1", "-N", "2", "power", "status"],
                capture_output=True, text=True, timeout=30,
            )  # fmt: skip

        def redfish(ip: str, password: str) -> int:
            url = f"http://{ip}:8443/redfish/v1/Systems/{vm['metadata']['name']}"
            return httpx.get(url, auth=("admin", password), timeout=10).status_code

        with ControllerThread(opts):
            # 1. the Secret does not exist yet
            bmc("late", "late-credentials")
            cond = wait_until(lambda: credentials("late", "SecretNotFound"), 60, "SecretNotFound")
            assert cond["status"] == "False"
            assert f"Secret {SYSTEM}/late-credentials does not exist" in cond["message"], cond
            message = wait_until(lambda: warning("late", "SecretNotFound"), 60, "the Warning Event")
            assert f"{SYSTEM}/late-credentials" in message
            described = kubectl("-n", SYSTEM, "describe", "vmbmc", "late").stdout
            assert "SecretNotFound" in described and "late-credentials" in described
            ready = wait_until(
                lambda: next(
                    (
                        c
                        for c in json.loads(kubectl("-n", SYSTEM, "get", "vmbmc", "late", "-o=json").stdout)
                        .get("status", {})
                        .get("conditions", [])
                        if c["type"] == "Ready" and "late-credentials" in c.get("message", "")
                    ),
                    None,
                ),
                60,
                "Ready naming the missing Secret",
            )
            assert ready["status"] == "False" and ready["reason"] == "KbmcNotReady", ready
            # the kbmc pod waits for its Secret volume, as a kubelet shows it
            wait_until(
                lambda: kubectl(
                    "-n", SYSTEM, "get", "pods", "-l", "virtualmachinebmc.kubevirt.io/bmc=late",
                    "-o", "jsonpath={.items[0].status.containerStatuses[0].state.waiting.reason}",
                ).stdout == "ContainerCreating",
                60, "the kbmc pod ContainerCreating",
            )  # fmt: skip
            # 2. created late, with a password of 18 bytes: the controller looks again by itself, and
            # the pod starts once its volume can be mounted
            secret("late-credentials", PW18)
            cond = wait_until(
                lambda: credentials("late", "PasswordTooLongForIPMI15"), 60, "PasswordTooLongForIPMI15"
            )
            assert "ipmitool -I lan" in cond["message"] and "18 bytes" in cond["message"], cond
            message = wait_until(lambda: warning("late", "PasswordTooLongForIPMI15"), 60, "the Warning")
            assert "late-credentials" in message and "-I lan" in message
            ip = wait_until(lambda: pod_ip("late"), 60, "the kbmc pod Ready")
            out = ipmitool("lanplus", ip, PW18)
            assert out.stdout.strip() == "Chassis Power is off", out
            out = ipmitool("lan", ip, PW18)
            assert out.returncode != 0 and "Chassis Power" not in out.stdout, out
            assert redfish(ip, PW18) == 200
            # 3. over 20 bytes: IPMI refused, Redfish works
            secret("long-credentials", PW24)
            bmc("long", "long-credentials")
            cond = wait_until(lambda: credentials("long", "PasswordTooLongForIPMI"), 60, "TooLongForIPMI")
            assert "IPMI logins are refused" in cond["message"] and "24 bytes" in cond["message"]
            assert wait_until(lambda: warning("long", "PasswordTooLongForIPMI"), 60, "the Warning")
            ip = wait_until(lambda: pod_ip("long"), 60, "the kbmc pod Ready")
            for attempt in (PW24, PW24[:20]):  # ipmitool refuses the first itself; the kbmc the second
                out = ipmitool("lanplus", ip, attempt)
                assert out.returncode != 0 and "Chassis Power" not in out.stdout, out
            assert redfish(ip, PW24) == 200

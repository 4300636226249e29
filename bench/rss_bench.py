"""Memory benchmark (issue 20): RSS of one dedicated `vmbmc kbmc` process with its back end connected and
watching, IPMI only and with Redfish; the same for the controller serving one BMC.

Every process runs as it does in a pod: `vmbmc kbmc --bmc NS/NAME` under the ServiceAccount and Roles
the controller gives it (name-restricted lists and watches), its health port on; the controller under
its own ServiceAccount (deploy/rbac.yaml). The emulator runs in this process. Figures come from
/proc/PID/status: VmRSS once the process is Ready (its watches synced), again after it has served
clients (ipmitool `power status`, Redfish GETs of the System), and VmHWM (the peak).

The processes run `PYTHON -m vmbmc`: `--python` picks another interpreter (a venv with only the runtime
dependencies, as the image has them: kopf imports `kubernetes` and `kubernetes_asyncio` when they are
installed), `--source` another checkout of vmbmc (put first on PYTHONPATH, e.g. the code before a change).

    python bench/rss_bench.py [--requests 20] [--python PATH] [--source DIR] [--json]
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from vmbmc.controller.children import BmcInfo  # noqa: E402
from vmbmc.naming import SYSTEM_NAMESPACE  # noqa: E402
from vmbmc_devcluster.demo.identity import install_controller_identity, install_kbmc_identity  # noqa: E402
from vmbmc_devcluster.demo.samples import sample_vm  # noqa: E402
from vmbmc_devcluster.emulator.harness import EmulatorThread  # noqa: E402

VMBMC = [sys.executable, "-m", "vmbmc"]  # --python replaces the interpreter
ENV: dict[str, str] = {}  # --source sets PYTHONPATH
USER, PASSWORD = "admin", "bench-password16"
NAMESPACE = "default"


def free_port(kind: int) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def memory(pid: int) -> dict[str, float]:
    """VmRSS and VmHWM of a process, MiB."""
    fields = dict(
        line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line
    )
    return {k: int(fields[k].split()[0]) / 1024 for k in ("VmRSS", "VmHWM")}


def wait_ready(proc: subprocess.Popen[bytes], health: int, log: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"process exited {proc.returncode}:\n{log.read_text()}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{health}/readyz", timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise SystemExit(f"not ready within {timeout} s:\n{log.read_text()}")


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


def create(emu: EmulatorThread, plural: str, group: str, body: dict[str, Any]) -> dict[str, Any]:
    rt = emu.emulator.registry.get(group, "v1", plural)
    return emu.call(emu.emulator.store.create, rt, body, NAMESPACE)


def ipmi_traffic(ipmi_port: int, requests: int) -> None:
    for _ in range(requests):
        subprocess.run(
            [
                "ipmitool",
                "-I",
                "lanplus",
                "-H",
                "127.0.0.1",
                "-p",
                str(ipmi_port),
                "-U",
                USER,
                "-P",
                PASSWORD,
                "power",
                "status",
            ],
            check=True,
            capture_output=True,
            timeout=30,
        )


def redfish_traffic(port: int, system: str, requests: int) -> None:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE  # the kbmc's self-signed certificate
    auth = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    for _ in range(requests):
        req = urllib.request.Request(
            f"https://127.0.0.1:{port}/redfish/v1/Systems/{system}", headers={"Authorization": auth}
        )
        with urllib.request.urlopen(req, context=ctx, timeout=10) as resp:
            resp.read()


def measure_kbmc(emu: EmulatorThread, work: Path, index: int, redfish: bool, requests: int) -> dict[str, Any]:
    vm = sample_vm(index, NAMESPACE)
    name = vm["metadata"]["name"]
    create(emu, "virtualmachines", "kubevirt.io", vm)
    bmc_body = {
        "apiVersion": "virtualmachine.kubevirt.io/v1",
        "kind": "VirtualMachineBMC",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {
            "virtualMachineRef": {"namespace": NAMESPACE, "name": name},
            "redfish": {"enabled": redfish},
        },
    }
    bmc = create(emu, "virtualmachinebmcs", "virtualmachine.kubevirt.io", bmc_body)
    kubeconfig = work / f"{name}.kubeconfig"
    info = BmcInfo(
        namespace=NAMESPACE, name=name, uid=bmc["metadata"]["uid"], vm_namespace=NAMESPACE, vm_name=name
    )
    install_kbmc_identity(emu, info, kubeconfig)
    creds = work / f"{name}-credentials"
    creds.mkdir()
    (creds / "username").write_text(USER)
    (creds / "password").write_text(PASSWORD)
    ipmi, health, https = (
        free_port(socket.SOCK_DGRAM),
        free_port(socket.SOCK_STREAM),
        free_port(socket.SOCK_STREAM),
    )
    log = work / f"{name}.log"
    env = {k: v for k, v in os.environ.items() if k != "KUBERNETES_SERVICE_HOST"} | ENV
    env["VMBMC_RESTRICTED"] = "1"  # as in a pod: name-restricted lists and watches only
    cmd = [
        *VMBMC,
        "kbmc",
        "--bmc",
        f"{NAMESPACE}/{name}",
        "--kubeconfig",
        str(kubeconfig),
        "--address",
        "127.0.0.1",
        "--ipmi-port",
        str(ipmi),
        "--health-port",
        str(health),
        "--credentials-dir",
        str(creds),
    ]
    if redfish:
        cmd += ["--redfish-port", str(https)]
    proc = subprocess.Popen(cmd, stdout=log.open("w"), stderr=subprocess.STDOUT, env=env, cwd=work)
    try:
        wait_ready(proc, health, log)
        time.sleep(1.0)  # let start-up garbage settle
        ready = memory(proc.pid)
        ipmi_traffic(ipmi, requests)
        if redfish:
            redfish_traffic(https, name, requests)
        served = memory(proc.pid)
    finally:
        stop(proc)
    return {"ready_rss": ready["VmRSS"], "served_rss": served["VmRSS"], "peak_rss": served["VmHWM"]}


def measure_controller(emu: EmulatorThread, work: Path) -> dict[str, Any]:
    rbac = ROOT / "deploy" / "rbac.yaml"
    kubeconfig = work / "controller.kubeconfig"
    namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": SYSTEM_NAMESPACE}}
    emu.call(emu.emulator.store.create, emu.emulator.registry.get("", "v1", "namespaces"), namespace, None)
    install_controller_identity(emu, rbac, kubeconfig)
    health = free_port(socket.SOCK_STREAM)
    log = work / "controller.log"
    cmd = [*VMBMC, "controller", "--kubeconfig", str(kubeconfig), "--health-port", str(health)]
    env = dict(os.environ) | ENV
    proc = subprocess.Popen(cmd, stdout=log.open("w"), stderr=subprocess.STDOUT, env=env, cwd=work)
    try:
        wait_ready(proc, health, log)
        time.sleep(3.0)  # the existing VMs and BMCs reconciled
        ready = memory(proc.pid)
    finally:
        stop(proc)
    return {"ready_rss": ready["VmRSS"], "served_rss": None, "peak_rss": ready["VmHWM"]}


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=20, help="client requests per protocol")
    parser.add_argument("--python", default=sys.executable, help="interpreter that runs `-m vmbmc`")
    parser.add_argument("--source", help="a vmbmc checkout to run instead of this one")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    VMBMC[0] = args.python
    if args.source:
        ENV["PYTHONPATH"] = os.pathsep.join(filter(None, (args.source, os.environ.get("PYTHONPATH"))))
    rows: dict[str, dict[str, Any]] = {}
    with (
        tempfile.TemporaryDirectory(prefix="vmbmc-rss-") as tmp,
        EmulatorThread(
            kubeconfig=Path(tmp) / "kubeconfig", crds=[ROOT / "crds" / "virtualmachinebmc.yaml"]
        ) as emu,
    ):
        work = Path(tmp)
        rows["kbmc, IPMI"] = measure_kbmc(emu, work, 1, False, args.requests)
        rows["kbmc, IPMI + Redfish"] = measure_kbmc(emu, work, 2, True, args.requests)
        rows["controller (2 VMs with BMCs)"] = measure_controller(emu, work)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print("| process | RSS when Ready MiB | RSS after serving MiB | peak RSS MiB |")
    print("|---|---|---|---|")
    for name, row in rows.items():
        served = "" if row["served_rss"] is None else f"{row['served_rss']:.1f}"
        print(f"| {name} | {row['ready_rss']:.1f} | {served} | {row['peak_rss']:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

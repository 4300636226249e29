"""Real kubectl against the emulator with RBAC on, under a ServiceAccount token (issue 12 items 1-2)."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import CRDS, KUBECTL
from vmbmc.emulator.harness import EmulatorThread, write_kubeconfig

NS = "tenant"
SA_USER = f"system:serviceaccount:{NS}:kbmc"

SETUP = f"""
apiVersion: v1
kind: Namespace
metadata: {{name: {NS}}}
---
apiVersion: v1
kind: ServiceAccount
metadata: {{name: kbmc, namespace: {NS}}}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {{name: kbmc-vm, namespace: {NS}}}
rules:
- apiGroups: [kubevirt.io]
  resources: [virtualmachines]
  resourceNames: [vm1]
  verbs: [get, list, watch, patch]
- apiGroups: [subresources.kubevirt.io]
  resources: [virtualmachines/start, virtualmachines/stop]
  resourceNames: [vm1]
  verbs: [update]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {{name: kbmc-vm, namespace: {NS}}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: Role, name: kbmc-vm}}
subjects:
- {{kind: ServiceAccount, name: kbmc, namespace: {NS}}}
"""

VM = """
apiVersion: kubevirt.io/v1
kind: VirtualMachine
metadata: {{name: {name}, namespace: NAMESPACE}}
spec:
  runStrategy: Halted
  template:
    spec:
      domain:
        devices: {{}}
""".replace("NAMESPACE", NS)


def _run(kubeconfig: str | Path, *args: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [KUBECTL, "--kubeconfig", str(kubeconfig), *args],
        input=input,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[EmulatorThread, Path]]:
    """An RBAC emulator with a tenant, its VMs, and a kubeconfig made from `kubectl create token`."""
    crds = [p for p in CRDS if "CustomResourceDefinition" in p.read_text()]
    tmp = tmp_path_factory.mktemp("rbac")
    with EmulatorThread(kubeconfig=tmp / "admin", crds=crds, rbac=True) as emu:
        admin = emu.kubeconfig
        setup = SETUP + "---" + VM.format(name="vm1") + "---" + VM.format(name="vm2")
        proc = _run(admin, "apply", "--validate=false", "-f", "-", input=setup)
        assert proc.returncode == 0, proc.stderr
        proc = _run(admin, "create", "token", "kbmc", "-n", NS, "--duration", "20m")
        assert proc.returncode == 0, proc.stderr
        sa_kubeconfig = tmp / "kbmc"
        write_kubeconfig(
            sa_kubeconfig, emu.url, proc.stdout.strip(), user="kbmc", namespace=NS, ca_file=emu.ca_file
        )
        yield emu, sa_kubeconfig


def test_whoami_with_a_created_token(cluster: tuple[EmulatorThread, Path]) -> None:
    _, sa = cluster
    proc = _run(sa, "auth", "whoami", "-o", "json")
    assert proc.returncode == 0, proc.stderr
    info = json.loads(proc.stdout)["status"]["userInfo"]
    assert info["username"] == SA_USER
    assert info["groups"] == [
        "system:serviceaccounts",
        f"system:serviceaccounts:{NS}",
        "system:authenticated",
    ]


@pytest.mark.parametrize(
    ("args", "allowed"),
    [
        (("get", "virtualmachines/vm1"), True),
        (("patch", "virtualmachines/vm1"), True),
        (("patch", "virtualmachines/vm2"), False),
        (("delete", "virtualmachines/vm1"), False),
        (("list", "virtualmachines"), False),
        (("get", "secrets"), False),
        (("create", "selfsubjectaccessreviews.authorization.k8s.io"), True),
    ],
)
def test_auth_can_i(cluster: tuple[EmulatorThread, Path], args: tuple[str, ...], allowed: bool) -> None:
    _, sa = cluster
    proc = _run(sa, "auth", "can-i", *args, "-n", NS)
    assert proc.stdout.strip().splitlines()[-1] == ("yes" if allowed else "no"), proc.stdout + proc.stderr
    assert proc.returncode == (0 if allowed else 1)


@pytest.mark.parametrize(("vm", "allowed"), [("vm1", True), ("vm2", False)])
def test_subresource_access_review(cluster: tuple[EmulatorThread, Path], vm: str, allowed: bool) -> None:
    """KubeVirt's discovery lists `virtualmachines/start` but no `virtualmachines` in
    subresources.kubevirt.io, so `kubectl auth can-i ... --subresource=start` cannot map the group (as
    against a real cluster); a SelfSubjectAccessReview posted with `kubectl create` names it exactly."""
    _, sa = cluster
    review = {
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "SelfSubjectAccessReview",
        "spec": {
            "resourceAttributes": {
                "namespace": NS,
                "verb": "update",
                "group": "subresources.kubevirt.io",
                "resource": "virtualmachines",
                "subresource": "start",
                "name": vm,
            }
        },
    }
    proc = _run(sa, "create", "--validate=false", "-f", "-", "-o", "json", input=json.dumps(review))
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["status"]["allowed"] is allowed


def test_auth_can_i_list(cluster: tuple[EmulatorThread, Path]) -> None:
    _, sa = cluster
    proc = _run(sa, "auth", "can-i", "--list", "-n", NS)
    assert proc.returncode == 0, proc.stderr
    assert "virtualmachines.kubevirt.io" in proc.stdout and "[vm1]" in proc.stdout


def test_allowed_requests(cluster: tuple[EmulatorThread, Path]) -> None:
    _, sa = cluster
    proc = _run(sa, "get", "virtualmachine", "vm1", "-o", "name")
    assert proc.returncode == 0 and proc.stdout.strip() == "virtualmachine.kubevirt.io/vm1", proc.stderr
    # a list limited to the one name the Role allows
    proc = _run(sa, "get", "virtualmachines", "--field-selector", "metadata.name=vm1", "-o", "name")
    assert proc.returncode == 0 and proc.stdout.strip() == "virtualmachine.kubevirt.io/vm1", proc.stderr
    proc = _run(
        sa, "patch", "virtualmachine", "vm1", "--type", "merge", "-p", '{"metadata":{"labels":{"a":"b"}}}'
    )
    assert proc.returncode == 0, proc.stderr
    start = f"/apis/subresources.kubevirt.io/v1/namespaces/{NS}/virtualmachines/vm1/start"
    proc = _run(sa, "replace", "--raw", start, "-f", "-", input="{}")
    assert proc.returncode == 0, proc.stderr


def test_forbidden_requests_show_kube_apiserver_messages(cluster: tuple[EmulatorThread, Path]) -> None:
    _, sa = cluster
    proc = _run(
        sa, "patch", "virtualmachine", "vm2", "--type", "merge", "-p", '{"metadata":{"labels":{"a":"b"}}}'
    )
    assert proc.returncode != 0
    assert proc.stderr.strip() == (  # kubectl patch reads the object first
        f'Error from server (Forbidden): virtualmachines.kubevirt.io "vm2" is forbidden: User "{SA_USER}" '
        f'cannot get resource "virtualmachines" in API group "kubevirt.io" in the namespace "{NS}"'
    )
    proc = _run(sa, "get", "virtualmachines")
    assert proc.returncode != 0
    assert (
        f'virtualmachines.kubevirt.io is forbidden: User "{SA_USER}" cannot list resource "virtualmachines" '
        f'in API group "kubevirt.io" in the namespace "{NS}"'
    ) in proc.stderr
    proc = _run(sa, "get", "secrets")
    assert proc.returncode != 0 and 'cannot list resource "secrets" in API group ""' in proc.stderr
    start = f"/apis/subresources.kubevirt.io/v1/namespaces/{NS}/virtualmachines/vm2/start"
    proc = _run(sa, "replace", "--raw", start, "-f", "-", input="{}")
    assert proc.returncode != 0
    assert (
        f'virtualmachines.subresources.kubevirt.io "vm2" is forbidden: User "{SA_USER}" cannot update '
        f'resource "virtualmachines/start" in API group "subresources.kubevirt.io" in the namespace "{NS}"'
    ) in proc.stderr
    proc = _run(sa, "delete", "virtualmachine", "vm1", "--wait=false")
    assert proc.returncode != 0 and "Forbidden" in proc.stderr


def test_anonymous_forged_expired_and_revoked(cluster: tuple[EmulatorThread, Path], tmp_path: Path) -> None:
    emu, sa = cluster
    import httpx

    with httpx.Client(base_url=emu.url, verify=str(emu.ca_file), timeout=10) as http:
        assert http.get("/version").status_code == 200
        r = http.get(f"/api/v1/namespaces/{NS}/secrets")
        assert r.status_code == 403
        assert r.json()["message"] == (
            f'secrets is forbidden: User "system:anonymous" cannot list resource "secrets" in API group "" '
            f'in the namespace "{NS}"'
        )
    for token in ("forged." + emu.token, emu.token_for(NS, "kbmc", expiration=-1)):
        bad = tmp_path / "bad"
        write_kubeconfig(bad, emu.url, token, ca_file=emu.ca_file)
        proc = _run(bad, "get", "--raw", "/api")
        assert proc.returncode != 0
        assert "Unauthorized" in proc.stderr
    # deleting the ServiceAccount revokes its tokens
    assert _run(sa, "get", "virtualmachine", "vm1").returncode == 0
    assert _run(emu.kubeconfig, "delete", "serviceaccount", "kbmc", "-n", NS).returncode == 0
    proc = _run(sa, "get", "virtualmachine", "vm1")
    assert proc.returncode != 0 and "Unauthorized" in proc.stderr

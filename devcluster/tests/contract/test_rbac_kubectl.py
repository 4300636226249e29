"""Real kubectl against the emulator with RBAC on, under a ServiceAccount token (issue 12 items 1-2)."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from vmbmc_devcluster.emulator.harness import EmulatorThread, write_kubeconfig
from vmbmc_devcluster.testing.k8s_protobuf import ssar
from vmbmc_devcluster.testing.plugin import KUBECTL, crd_files

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
    crds = crd_files()
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


# --- the kbmc identity the controller writes: can-i, --list, whoami, impersonation -------------------
KBMC_NS = "can-i"
KBMC = f"system:serviceaccount:{KBMC_NS}:bmc-a-kbmc"
OTHER_KBMC = f"system:serviceaccount:{KBMC_NS}:bmc-b-kbmc"
SUBRESOURCES = [
    ("virtualmachines", "start"),
    ("virtualmachines", "stop"),
    ("virtualmachines", "restart"),
    ("virtualmachineinstances", "pause"),
    ("virtualmachineinstances", "unpause"),
]


@pytest.fixture(scope="module")
def kbmc(cluster: tuple[EmulatorThread, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """BMC `bmc-a` (VM `vm-a`) and `bmc-b` (VM `vm-b`) in KBMC_NS, and a kubeconfig for bmc-a's kbmc
    with exactly the ServiceAccount, Roles and RoleBindings the controller writes for it."""
    from vmbmc.controller.children import BmcInfo
    from vmbmc_devcluster.demo.identity import install_kbmc_identity

    emu, _ = cluster
    docs: list[dict] = [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": KBMC_NS}}]
    for bmc, vm in (("bmc-a", "vm-a"), ("bmc-b", "vm-b")):
        docs.append(_vm_doc(vm, KBMC_NS))
        docs.append(
            {
                "apiVersion": "virtualmachine.kubevirt.io/v1",
                "kind": "VirtualMachineBMC",
                "metadata": {"name": bmc, "namespace": KBMC_NS},
                "spec": {"virtualMachineRef": {"namespace": KBMC_NS, "name": vm}},
            }
        )
    proc = _run(
        emu.kubeconfig, "create", "--validate=false", "-f", "-", input="\n".join(map(json.dumps, docs))
    )
    assert proc.returncode == 0, proc.stderr
    tmp = tmp_path_factory.mktemp("kbmc")
    for bmc in ("bmc-a", "bmc-b"):
        body = json.loads(_run(emu.kubeconfig, "get", "vmbmc", bmc, "-n", KBMC_NS, "-o", "json").stdout)
        install_kbmc_identity(emu, BmcInfo.from_body(body), tmp / bmc)
    return tmp / "bmc-a"


def _vm_doc(name: str, namespace: str) -> dict:
    return {
        "apiVersion": "kubevirt.io/v1",
        "kind": "VirtualMachine",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"runStrategy": "Halted", "template": {"spec": {"domain": {"devices": {}}}}},
    }


@pytest.mark.parametrize(
    ("args", "allowed"),
    [
        (("get", "virtualmachines/vm-a"), True),
        (("watch", "virtualmachines/vm-a"), True),
        (("patch", "virtualmachines/vm-a"), True),
        (("get", "virtualmachineinstances/vm-a"), True),
        (("get", "virtualmachines/vm-b"), False),
        (("get", "virtualmachineinstances/vm-b"), False),
        (("patch", "virtualmachinebmcs/bmc-a", "--subresource=status"), True),
        (("get", "virtualmachinebmcs/bmc-a"), True),
        (("patch", "virtualmachinebmcs/bmc-b", "--subresource=status"), False),
        (("patch", "virtualmachinebmcs/bmc-a"), False),  # its spec is the controller's
        (("create", "events"), True),
        (("list", "events"), False),
        (("get", "secrets"), False),
        (("get", "secrets/bmc-a-credentials"), False),
        (("delete", "virtualmachines/vm-a"), False),
        (("list", "virtualmachines"), False),  # a list without a name is every VM
        (("get", "virtualmachines/vm-a", "-n", "default"), False),
        (("get", "virtualmachines/vm-a", "-A"), False),
        # kubectl maps `virtualmachines` to kubevirt.io, so this asks about kubevirt.io's (non-existent)
        # virtualmachines/start, not subresources.kubevirt.io's: "no", as against a real cluster
        (("update", "virtualmachines/vm-a", "--subresource=start"), False),
    ],
)
def test_kbmc_can_i(kbmc: Path, args: tuple[str, ...], allowed: bool) -> None:
    namespace = () if "-n" in args or "-A" in args else ("-n", KBMC_NS)
    proc = _run(kbmc, "auth", "can-i", *args, *namespace)
    assert proc.stdout.strip().splitlines()[-1] == ("yes" if allowed else "no"), proc.stdout + proc.stderr
    assert proc.returncode == (0 if allowed else 1), proc.stderr


@pytest.mark.parametrize(("resource", "subresource"), SUBRESOURCES)
def test_kbmc_kubevirt_subresources_reviewed_over_protobuf(
    cluster: tuple[EmulatorThread, Path], kbmc: Path, resource: str, subresource: str
) -> None:
    """`kubectl auth can-i` cannot name subresources.kubevirt.io's resources (its discovery lists only
    `virtualmachines/start` and the like), so the review kubectl would post is posted here, as protobuf
    with kubectl's Content-Type and Accept, under the kbmc's token."""
    import httpx
    import yaml

    emu, _ = cluster
    token = yaml.safe_load(kbmc.read_text())["users"][0]["user"]["token"]
    headers = {
        "Authorization": f"Bearer {token}",
        "Content-Type": "application/vnd.kubernetes.protobuf",
        "Accept": "application/vnd.kubernetes.protobuf,application/json",
    }
    url = "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews"
    with httpx.Client(base_url=emu.url, verify=str(emu.ca_file), headers=headers, timeout=10) as http:
        for vm, allowed in (("vm-a", True), ("vm-b", False)):
            body = ssar(
                namespace=KBMC_NS,
                verb="update",
                group="subresources.kubevirt.io",
                version="v1",
                resource=resource,
                subresource=subresource,
                name=vm,
            )
            answer = http.post(url, content=body)
            assert answer.status_code == 201, answer.text
            assert answer.headers["content-type"].startswith("application/json")
            review = answer.json()
            assert review["status"]["allowed"] is allowed, (vm, review)
            assert review["spec"]["resourceAttributes"]["subresource"] == subresource
        # another verb on its own VM's subresource is refused: only update is granted
        answer = http.post(
            url,
            content=ssar(
                namespace=KBMC_NS,
                verb="get",
                group="subresources.kubevirt.io",
                resource=resource,
                subresource=subresource,
                name="vm-a",
            ),
        )
        assert answer.status_code == 201 and answer.json()["status"]["allowed"] is False
        # a body with neither resourceAttributes nor nonResourceAttributes: 422, as upstream
        answer = http.post(url, content=ssar())
        assert answer.status_code == 422 and "exactly one of" in answer.json()["message"]
        # a malformed one (a length running past the end): 400, never a 500 or an answer
        answer = http.post(url, content=ssar(verb="get")[:-2])
        assert answer.status_code == 400 and answer.json()["kind"] == "Status", answer.text


def test_kbmc_can_i_list(kbmc: Path) -> None:
    proc = _run(kbmc, "auth", "can-i", "--list", "-n", KBMC_NS)
    assert proc.returncode == 0, proc.stderr
    rows = {" ".join(line.split()) for line in proc.stdout.splitlines()}
    for row in (
        "virtualmachines.kubevirt.io [] [vm-a] [get list watch patch]",
        "virtualmachineinstances.kubevirt.io [] [vm-a] [get list watch]",
        "virtualmachines.subresources.kubevirt.io/start [] [vm-a] [update]",
        "virtualmachineinstances.subresources.kubevirt.io/pause [] [vm-a] [update]",
        "virtualmachinebmcs.virtualmachine.kubevirt.io [] [bmc-a] [get list watch]",
        "virtualmachinebmcs.virtualmachine.kubevirt.io/status [] [bmc-a] [get patch]",
        "events [] [] [create]",
        "selfsubjectaccessreviews.authorization.k8s.io [] [] [create]",
    ):
        assert row in rows, proc.stdout
    assert "secrets" not in proc.stdout and "*.*" not in proc.stdout and "vm-b" not in proc.stdout
    # in another namespace only what every authenticated user may do
    other = _run(kbmc, "auth", "can-i", "--list", "-n", "default").stdout
    assert "kubevirt.io" not in other and "selfsubjectaccessreviews" in other


def test_whoami_admin_and_kbmc(cluster: tuple[EmulatorThread, Path], kbmc: Path) -> None:
    emu, _ = cluster
    proc = _run(emu.kubeconfig, "auth", "whoami", "-o", "json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["status"]["userInfo"] == {
        "username": "admin",
        "groups": ["system:masters", "system:authenticated"],
    }
    proc = _run(kbmc, "auth", "whoami")
    assert proc.returncode == 0, proc.stderr
    table = {line.split()[0]: line.split(None, 1)[1] for line in proc.stdout.splitlines()[1:] if line.strip()}
    assert table["Username"] == KBMC
    assert (
        table["Groups"] == f"[system:serviceaccounts system:serviceaccounts:{KBMC_NS} system:authenticated]"
    )


def test_admin_impersonating_the_kbmc_gets_exactly_its_rights(
    cluster: tuple[EmulatorThread, Path], kbmc: Path
) -> None:
    emu, _ = cluster
    admin = emu.kubeconfig
    as_kbmc = (f"--as={KBMC}", "-n", KBMC_NS)
    info = json.loads(_run(admin, "auth", "whoami", "-o", "json", *as_kbmc).stdout)["status"]["userInfo"]
    assert info == {
        "username": KBMC,
        "groups": ["system:serviceaccounts", f"system:serviceaccounts:{KBMC_NS}", "system:authenticated"],
    }
    assert _run(admin, "auth", "can-i", "get", "virtualmachines/vm-a", *as_kbmc).stdout.strip() == "yes"
    proc = _run(admin, "auth", "can-i", "get", "virtualmachines/vm-b", *as_kbmc)
    assert proc.stdout.strip() == "no" and proc.returncode == 1
    # the same listing as under its own token
    listing = _run(admin, "auth", "can-i", "--list", *as_kbmc)
    assert listing.returncode == 0, listing.stderr
    assert listing.stdout == _run(kbmc, "auth", "can-i", "--list", "-n", KBMC_NS).stdout
    # requests run as it, and are refused in its name
    proc = _run(admin, "get", "vm", "vm-a", "-o", "name", *as_kbmc)
    assert proc.returncode == 0 and proc.stdout.strip() == "virtualmachine.kubevirt.io/vm-a", proc.stderr
    proc = _run(admin, "get", "vm", "vm-b", *as_kbmc)
    assert proc.returncode != 0
    assert proc.stderr.strip() == (
        f'Error from server (Forbidden): virtualmachines.kubevirt.io "vm-b" is forbidden: User "{KBMC}" '
        f'cannot get resource "virtualmachines" in API group "kubevirt.io" in the namespace "{KBMC_NS}"'
    )
    # --as-group replaces the ServiceAccount's groups (system:authenticated is still added)
    proc = _run(admin, "auth", "whoami", "-o", "json", *as_kbmc, "--as-group=tenants")
    assert json.loads(proc.stdout)["status"]["userInfo"]["groups"] == ["tenants", "system:authenticated"]
    # a ServiceAccount subject matches the user name alone (as upstream), so its rights stay
    proc = _run(admin, "auth", "can-i", "get", "virtualmachines/vm-a", *as_kbmc, "--as-group=tenants")
    assert proc.stdout.strip() == "yes", proc.stderr


def test_kbmc_cannot_impersonate(kbmc: Path) -> None:
    proc = _run(kbmc, "get", "vm", "vm-a", "-n", KBMC_NS, "--as=admin")
    assert proc.returncode != 0
    assert proc.stderr.strip() == (
        f'Error from server (Forbidden): users "admin" is forbidden: User "{KBMC}" cannot impersonate '
        'resource "users" in API group "" at the cluster scope'
    )
    proc = _run(kbmc, "auth", "can-i", "get", "virtualmachines/vm-b", "-n", KBMC_NS, f"--as={OTHER_KBMC}")
    assert proc.returncode != 0
    assert (
        f'serviceaccounts "bmc-b-kbmc" is forbidden: User "{KBMC}" cannot impersonate resource '
        f'"serviceaccounts" in API group "" in the namespace "{KBMC_NS}"'
    ) in proc.stderr
    # not even itself: impersonating is a right of its own, and groups are checked too
    proc = _run(kbmc, "get", "vm", "vm-a", "-n", KBMC_NS, f"--as={KBMC}", "--as-group=system:masters")
    assert proc.returncode != 0
    assert f'serviceaccounts "bmc-a-kbmc" is forbidden: User "{KBMC}" cannot impersonate' in proc.stderr
    # `auth whoami` reports any 403 as "not enabled ... or you do not have permission"
    proc = _run(kbmc, "auth", "whoami", "--as=admin")
    assert proc.returncode != 0 and "do not have permission" in proc.stderr

"""kubectl's own encoders against the emulator: the generators that post protobuf (`kubectl create
namespace|serviceaccount|configmap|secret|role|clusterrole|rolebinding|clusterrolebinding`), `auth
whoami`, and impersonation (`--as`, `--as-group`, `--as-uid`) with kube-apiserver's checks."""

from __future__ import annotations

import base64
import json
import subprocess
from collections.abc import Callable
from typing import Any

import httpx
import pytest

NS = "gen-imp"
SA = f"system:serviceaccount:{NS}:robot"
Kubectl = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture(scope="module")
def objects(emulator: Any) -> None:
    from vmbmc_devcluster.testing.plugin import KUBECTL

    if not getattr(emulator, "emulator", None):
        pytest.skip("needs the emulator")

    def run(*args: str) -> None:
        proc = subprocess.run(
            [KUBECTL, "--kubeconfig", emulator.kubeconfig, *args], capture_output=True, text=True, timeout=60
        )
        assert proc.returncode == 0, (args, proc.stderr)

    run("create", "namespace", NS)
    run("-n", NS, "create", "serviceaccount", "robot")
    run("-n", NS, "create", "configmap", "settings", "--from-literal=mode=pxe", "--from-literal=tries=3")
    run("-n", NS, "create", "secret", "generic", "creds", "--from-literal=password=s3cret")
    run("-n", NS, "create", "role", "pod-reader", "--verb=get,list", "--resource=pods", "--resource-name=web")
    run("-n", NS, "create", "rolebinding", "robot-reads", "--role=pod-reader", f"--serviceaccount={NS}:robot")
    run("create", "clusterrole", "gen-agg", "--aggregation-rule=gen=yes")
    run(
        "create",
        "clusterrole",
        "gen-impersonator",
        "--verb=impersonate",
        "--resource=users",
        "--resource-name=bob",
    )
    run(
        "create",
        "clusterrolebinding",
        "gen-imp",
        "--clusterrole=gen-impersonator",
        f"--serviceaccount={NS}:robot",
    )


def _json(kubectl: Kubectl, *args: str) -> Any:
    return json.loads(kubectl(*args, "-o", "json").stdout)


def test_generators_store_what_kubectl_encoded(kubectl: Kubectl, objects: None) -> None:
    assert _json(kubectl, "get", "namespace", NS)["metadata"]["name"] == NS
    sa = _json(kubectl, "-n", NS, "get", "serviceaccount", "robot")
    assert sa["metadata"]["namespace"] == NS
    assert _json(kubectl, "-n", NS, "get", "configmap", "settings")["data"] == {"mode": "pxe", "tries": "3"}
    secret = _json(kubectl, "-n", NS, "get", "secret", "creds")
    assert secret["type"] == "Opaque" and base64.b64decode(secret["data"]["password"]) == b"s3cret"
    role = _json(kubectl, "-n", NS, "get", "role", "pod-reader")
    assert role["rules"] == [
        {"apiGroups": [""], "resources": ["pods"], "resourceNames": ["web"], "verbs": ["get", "list"]}
    ]
    binding = _json(kubectl, "-n", NS, "get", "rolebinding", "robot-reads")
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": "pod-reader",
    }
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "robot", "namespace": NS}]
    agg = _json(kubectl, "get", "clusterrole", "gen-agg")
    assert agg["aggregationRule"] == {"clusterRoleSelectors": [{"matchLabels": {"gen": "yes"}}]}


def test_whoami_and_can_i_as_a_service_account(kubectl: Kubectl, objects: None) -> None:
    info = _json(kubectl, "auth", "whoami", f"--as={SA}")["status"]["userInfo"]
    assert info["username"] == SA
    assert info["groups"] == [
        "system:serviceaccounts",
        f"system:serviceaccounts:{NS}",
        "system:authenticated",
    ]
    assert kubectl("auth", "can-i", "get", "pods/web", "-n", NS, f"--as={SA}").stdout.strip() == "yes"
    denied = kubectl("auth", "can-i", "get", "pods/db", "-n", NS, f"--as={SA}", check=False)
    assert denied.stdout.strip() == "no" and denied.returncode == 1
    listing = kubectl("auth", "can-i", "--list", "-n", NS, f"--as={SA}").stdout
    assert "pods" in listing and "[web]" in listing and "*.*" not in listing
    # requests themselves run as the impersonated user, and are refused with its name
    proc = kubectl("-n", NS, "get", "secrets", f"--as={SA}", check=False)
    assert proc.returncode != 0
    assert f'secrets is forbidden: User "{SA}" cannot list resource "secrets" in API group ""' in proc.stderr


def test_as_group_and_uid(kubectl: Kubectl, objects: None) -> None:
    info = _json(kubectl, "auth", "whoami", "--as=alice", "--as-group=devs", "--as-uid=7")["status"][
        "userInfo"
    ]
    assert info == {"username": "alice", "uid": "7", "groups": ["devs", "system:authenticated"]}
    # system:anonymous gets system:unauthenticated: public info only (no reviews, as upstream)
    assert kubectl("get", "--raw", "/version", "--as=system:anonymous").returncode == 0
    proc = kubectl("get", "namespaces", "--as=system:anonymous", check=False)
    assert 'User "system:anonymous" cannot list resource "namespaces"' in proc.stderr


def test_impersonation_needs_the_impersonate_verb(
    emulator: Any, kubectl: Kubectl, objects: None, tmp_path
) -> None:
    from vmbmc_devcluster.emulator.harness import write_kubeconfig

    token = kubectl("-n", NS, "create", "token", "robot").stdout.strip()
    robot = tmp_path / "robot"
    write_kubeconfig(robot, emulator.url, token, namespace=NS, ca_file=emulator.ca_file)
    own = ("--kubeconfig", str(robot))
    # its ClusterRole lets it impersonate user "bob" and nobody else
    assert _json(kubectl, *own, "auth", "whoami", "--as=bob")["status"]["userInfo"]["username"] == "bob"
    proc = kubectl(*own, "get", "pods", "-n", NS, "--as=admin", check=False)
    assert proc.returncode != 0
    assert (
        f'users "admin" is forbidden: User "{SA}" cannot impersonate resource "users" in API group "" '
        "at the cluster scope"
    ) in proc.stderr
    proc = kubectl(*own, "get", "pods", "-n", NS, "--as=bob", "--as-group=system:masters", check=False)
    assert 'groups "system:masters" is forbidden' in proc.stderr and "cannot impersonate" in proc.stderr
    proc = kubectl(*own, "get", "pods", "-n", NS, f"--as=system:serviceaccount:{NS}:other", check=False)
    assert (
        f'serviceaccounts "other" is forbidden: User "{SA}" cannot impersonate resource "serviceaccounts" '
        f'in API group "" in the namespace "{NS}"'
    ) in proc.stderr


def test_impersonation_headers_without_a_user_are_400(emulator: Any, objects: None) -> None:
    headers = {"Authorization": f"Bearer {emulator.token}"}
    with httpx.Client(base_url=emulator.url, verify=emulator.ca_file, headers=headers, timeout=10) as http:
        for extra in (
            {"Impersonate-Group": "devs"},
            {"Impersonate-Uid": "1"},
            {"Impersonate-Extra-Scopes": "x"},
        ):
            answer = http.get("/api/v1/namespaces", headers=extra)
            assert answer.status_code == 400, answer.text
            assert (
                answer.json()["kind"] == "Status"
                and "without impersonating a user" in answer.json()["message"]
            )

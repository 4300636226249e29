"""Pod Security admission through real kubectl: what kube-apiserver's PodSecurity plug-in answers.

And the proof that every generated and shipped workload meets Pod Security `restricted`:
the kbmc Deployment the controller renders and the shipped deploy/ controller Deployment are applied to
namespaces that enforce, warn and audit `restricted`; kubectl prints no warning and their pods exist.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
import yaml

from tests.conftest import ROOT
from vmbmc.controller import children
from vmbmc_devcluster.emulator.podsecurity import evaluate
from vmbmc_devcluster.testing.waiting import wait_until

RESTRICTED = {f"pod-security.kubernetes.io/{mode}": "restricted" for mode in ("enforce", "warn", "audit")}
BARE_POD_DETAIL = (
    "allowPrivilegeEscalation != false "
    '(container "c" must set securityContext.allowPrivilegeEscalation=false), '
    'unrestricted capabilities (container "c" must set securityContext.capabilities.drop=["ALL"]), '
    'runAsNonRoot != true (pod or container "c" must set securityContext.runAsNonRoot=true), '
    'seccompProfile (pod or container "c" must set securityContext.seccompProfile.type to "RuntimeDefault" '
    'or "Localhost")'
)


def _namespace(kubectl: Callable[..., Any], name: str, labels: dict[str, str]) -> None:
    doc = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}}
    kubectl("apply", "--validate=false", "-f", "-", input=json.dumps(doc))


def _apply(kubectl: Callable[..., Any], *docs: dict, check: bool = True) -> Any:
    text = "\n---\n".join(yaml.safe_dump(d) for d in docs)
    return kubectl("apply", "--validate=false", "-f", "-", input=text, check=check)


# Each poll starts kubectl, and the emulator's Deployment and ReplicaSet controllers run in between: on a
# machine whose cores are busy one round took over 20 s. Two waits in a test stay under its 120 s.
WAIT = 45.0


def _get(kubectl: Callable[..., Any], ns: str, *args: str) -> list[dict]:
    return json.loads(kubectl("-n", ns, "get", *args, "-o", "json").stdout)["items"]


def _pod(name: str, **spec: Any) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {"containers": [{"name": "c", "image": "busybox"}], **spec},
    }


def _compliant(name: str) -> dict:
    obj = _pod(name)
    obj["spec"]["containers"][0]["securityContext"] = {
        "allowPrivilegeEscalation": False,
        "runAsNonRoot": True,
        "runAsUser": 1000,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    return obj


def test_enforce_refuses_a_bad_pod_with_the_upstream_message(kubectl):
    _namespace(kubectl, "psa-enforce", {"pod-security.kubernetes.io/enforce": "restricted"})
    proc = kubectl(
        "-n",
        "psa-enforce",
        "create",
        "--validate=false",
        "-f",
        "-",
        input=json.dumps(_pod("bad", hostNetwork=True)),
        check=False,
    )
    assert proc.returncode != 0
    assert proc.stderr.strip() == (
        'Error from server (Forbidden): error when creating "STDIN": pods "bad" is forbidden: '
        'violates PodSecurity "restricted:latest": host namespaces (hostNetwork=true), ' + BARE_POD_DETAIL
    )
    proc = kubectl(
        "-n", "psa-enforce", "create", "--validate=false", "-f", "-", input=json.dumps(_compliant("good"))
    )
    assert proc.stdout.strip() == "pod/good created" and "Warning" not in proc.stderr
    assert [p["metadata"]["name"] for p in _get(kubectl, "psa-enforce", "pods")] == ["good"]


def test_warn_prints_a_warning_and_admits(kubectl):
    _namespace(kubectl, "psa-warn", {"pod-security.kubernetes.io/warn": "baseline"})
    proc = kubectl(
        "-n",
        "psa-warn",
        "create",
        "--validate=false",
        "-f",
        "-",
        input=json.dumps(_pod("loud", hostPID=True)),
    )
    assert proc.stdout.strip() == "pod/loud created"
    assert (
        proc.stderr.strip()
        == 'Warning: would violate PodSecurity "baseline:latest": host namespaces (hostPID=true)'
    )


def test_a_stricter_enforce_label_names_the_existing_violating_pods(kubectl):
    _namespace(kubectl, "psa-relabel", {})
    kubectl(
        "-n",
        "psa-relabel",
        "create",
        "--validate=false",
        "-f",
        "-",
        input=json.dumps(_pod("old", hostIPC=True)),
    )
    proc = kubectl("label", "namespace", "psa-relabel", "pod-security.kubernetes.io/enforce=baseline")
    assert proc.stdout.strip() == "namespace/psa-relabel labeled"
    assert proc.stderr.splitlines() == [
        'Warning: existing pods in namespace "psa-relabel" violate the new PodSecurity enforce level '
        '"baseline:latest"',
        "Warning: old: host namespaces",
    ]
    proc = kubectl(
        "label",
        "namespace",
        "psa-relabel",
        "--overwrite",
        "pod-security.kubernetes.io/enforce=strict",
        check=False,
    )
    assert proc.returncode != 0
    assert 'Invalid value: "strict": must be one of privileged, baseline, restricted' in proc.stderr


def test_a_deployment_with_a_bad_template_is_warned_and_its_pods_fail(kubectl):
    _namespace(kubectl, "psa-workload", RESTRICTED)
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web"},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "c", "image": "busybox"}]},
            },
        },
    }
    proc = kubectl("-n", "psa-workload", "apply", "--validate=false", "-f", "-", input=json.dumps(deployment))
    assert proc.stdout.strip() == "deployment.apps/web created"
    assert proc.stderr.strip() == 'Warning: would violate PodSecurity "restricted:latest": ' + BARE_POD_DETAIL
    events = wait_until(
        lambda: [e for e in _get(kubectl, "psa-workload", "events") if e.get("reason") == "FailedCreate"],
        WAIT,
        "a FailedCreate event",
    )
    (rs,) = _get(kubectl, "psa-workload", "replicasets")
    rs_name = rs["metadata"]["name"]
    event = events[0]
    assert event["type"] == "Warning"
    assert event["involvedObject"]["kind"] == "ReplicaSet" and event["involvedObject"]["name"] == rs_name
    assert event["message"].startswith(f'Error creating: pods "{rs_name}-')
    assert event["message"].endswith(
        '" is forbidden: violates PodSecurity "restricted:latest": ' + BARE_POD_DETAIL
    )
    rs = wait_until(
        lambda: [
            r
            for r in _get(kubectl, "psa-workload", "replicasets")
            if (r.get("status") or {}).get("conditions")
        ],
        WAIT,
        "the ReplicaFailure condition",
    )[0]
    (cond,) = rs["status"]["conditions"]
    assert (cond["type"], cond["status"], cond["reason"]) == ("ReplicaFailure", "True", "FailedCreate")
    assert cond["message"] == event["message"].removeprefix("Error creating: ")
    assert _get(kubectl, "psa-workload", "pods") == []


BMCS = [
    children.BmcInfo("psa-kbmc", "ipmi-only", "uid-1", "tenant", "vm-1"),
    children.BmcInfo("psa-kbmc", "redfish", "uid-2", "tenant", "vm-2", redfish=True),
    children.BmcInfo(
        "psa-kbmc", "redfish-http", "uid-3", "tenant", "vm-3", ipmi=False, redfish=True, insecure_http=True
    ),
]


@pytest.mark.parametrize("bmc", BMCS, ids=[b.name for b in BMCS])
def test_the_generated_kbmc_deployment_meets_restricted(kubectl, bmc):
    """Pod Security `restricted` for the workload the controller generates, proven by admission."""
    _namespace(kubectl, "psa-kbmc", RESTRICTED)
    deployment = children.deployment(bmc, "vmbmc:dev", f"{bmc.name}-credentials")
    template = deployment["spec"]["template"]
    assert evaluate("restricted", template["metadata"], template["spec"]).violations == ()
    proc = _apply(kubectl, deployment)
    assert proc.stdout.strip() == f"deployment.apps/{deployment['metadata']['name']} created"
    assert proc.stderr == ""  # no `Warning: would violate PodSecurity …`
    selector = ",".join(f"{k}={v}" for k, v in deployment["spec"]["selector"]["matchLabels"].items())
    (pod,) = wait_until(lambda: _get(kubectl, "psa-kbmc", "pods", "-l", selector), WAIT, "the kbmc pod")
    assert pod["spec"]["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    events = [e for e in _get(kubectl, "psa-kbmc", "events") if e.get("reason") == "FailedCreate"]
    assert events == []


def test_the_shipped_controller_deployment_meets_restricted(kubectl):
    """Pod Security `restricted` for deploy/: its namespace enforces it, its Deployment passes."""
    rendered = kubectl("kustomize", str(ROOT / "deploy")).stdout
    docs = [d for d in yaml.safe_load_all(rendered) if d]
    (ns,) = [d for d in docs if d["kind"] == "Namespace"]
    assert RESTRICTED.items() <= ns["metadata"]["labels"].items()
    (deployment,) = [d for d in docs if d["kind"] == "Deployment"]
    template = deployment["spec"]["template"]
    assert evaluate("restricted", template["metadata"], template["spec"]).violations == ()
    # the CRDs are the fixture's already (kubectl would warn about their last-applied annotation)
    proc = _apply(kubectl, *[d for d in docs if d["kind"] != "CustomResourceDefinition"])
    assert "deployment.apps/vmbmc-controller created" in proc.stdout
    assert proc.stderr == ""  # no `Warning: would violate PodSecurity …`
    system = ns["metadata"]["name"]
    stored = json.loads(kubectl("get", "namespace", system, "-o", "json").stdout)
    assert RESTRICTED.items() <= stored["metadata"]["labels"].items()
    selector = ",".join(f"{k}={v}" for k, v in deployment["spec"]["selector"]["matchLabels"].items())
    wait_until(lambda: _get(kubectl, system, "pods", "-l", selector), WAIT, "the controller pod")
    assert [e for e in _get(kubectl, system, "events") if e.get("reason") == "FailedCreate"] == []

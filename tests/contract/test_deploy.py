"""deploy/ renders with kustomize and applies to the (schema-checked) API server."""

from __future__ import annotations

import json

import yaml

from tests.conftest import ROOT


def test_kustomize_renders_and_applies(kubectl):
    rendered = kubectl("kustomize", str(ROOT / "deploy")).stdout
    kinds = [d["kind"] for d in yaml.safe_load_all(rendered) if d]
    assert {
        "Namespace",
        "CustomResourceDefinition",
        "ClusterRole",
        "ClusterRoleBinding",
        "Role",
        "RoleBinding",
        "ServiceAccount",
        "Deployment",
    } <= set(kinds)
    kubectl("apply", "--validate=false", "-f", "-", input=rendered)
    dep = json.loads(
        kubectl(
            "-n", "virtualmachinebmc-system", "get", "deployment", "vmbmc-controller", "-o", "json"
        ).stdout
    )
    pod = dep["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    sc = container["securityContext"]
    assert sc["allowPrivilegeEscalation"] is False and sc["readOnlyRootFilesystem"] is True
    assert sc["capabilities"]["drop"] == ["ALL"]
    assert container["resources"]["limits"] and container["resources"]["requests"]
    assert dep["spec"]["strategy"]["type"] == "Recreate" and dep["spec"]["replicas"] == 1


def test_controller_rules_have_no_wildcards():
    docs = [d for d in yaml.safe_load_all((ROOT / "deploy" / "rbac.yaml").read_text()) if d]
    for doc in docs:
        for rule in doc.get("rules", []):
            for key in ("verbs", "resources", "apiGroups"):
                assert "*" not in rule.get(key, []), (doc["metadata"]["name"], rule)

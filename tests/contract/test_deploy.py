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


def test_example_network_policy_widens_to_the_kbmc_pods_the_controller_makes(kubectl):
    """deploy/examples shows how to widen the per-BMC NetworkPolicy (which limits who reaches 10623/UDP
    and 8443/TCP): it must select the
    pods the controller's Deployments make and open exactly their IPMI and Redfish ports."""
    from vmbmc.controller import children

    example = ROOT / "deploy" / "examples" / "networkpolicy-allow-provisioner.yaml"
    policy = yaml.safe_load(example.read_text())
    kubectl("create", "namespace", "virtualmachinebmc-system", check=False)
    kubectl("apply", "--validate=false", "-f", str(example))
    stored = json.loads(
        kubectl(
            "-n", "virtualmachinebmc-system", "get", "networkpolicy", policy["metadata"]["name"], "-o", "json"
        ).stdout
    )
    bmc = children.BmcInfo("virtualmachinebmc-system", "tenant-vm", "uid-1", "tenant", "vm")
    pod_labels = children.deployment(bmc, "vmbmc:dev", "s")["spec"]["template"]["metadata"]["labels"]
    assert stored["spec"]["podSelector"]["matchLabels"].items() <= pod_labels.items()
    (rule,) = stored["spec"]["ingress"]
    assert {(p["protocol"], p["port"]) for p in rule["ports"]} == {
        ("UDP", children.IPMI_PORT),
        ("TCP", children.REDFISH_PORT),
    }
    assert rule["from"] == [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "baremetal-operator-system"}}}
    ]


def test_example_egress_lets_only_the_kbmc_pods_reach_beyond_the_api_server(kubectl):
    """deploy/examples/networkpolicy-egress.yaml: the controller's pod reaches DNS and the API server
    only; the kbmc pods of both modes (and nothing else) reach the event destinations too."""
    from vmbmc.controller import children, shared

    example = ROOT / "deploy" / "examples" / "networkpolicy-egress.yaml"
    kubectl("create", "namespace", "virtualmachinebmc-system", check=False)
    kubectl("apply", "--validate=false", "-f", str(example))
    policies = {}
    for doc in (d for d in yaml.safe_load_all(example.read_text()) if d):
        name = doc["metadata"]["name"]
        got = kubectl("-n", "virtualmachinebmc-system", "get", "networkpolicy", name, "-o", "json").stdout
        policies[name] = json.loads(got)["spec"]
    controller = next(d for d in yaml.safe_load_all((ROOT / "deploy" / "controller.yaml").read_text())
                      if d and d["kind"] == "Deployment")
    bmc = children.BmcInfo("virtualmachinebmc-system", "tenant-vm", "uid-1", "tenant", "vm")
    pods = {
        "controller": controller["spec"]["template"]["metadata"]["labels"],
        "kbmc": children.deployment(bmc, "vmbmc:dev", "s")["spec"]["template"]["metadata"]["labels"],
        "kbmc-shared": shared.labels(),
    }

    def selects(selector: dict, labels: dict) -> bool:
        exprs = selector.get("matchExpressions") or []
        return selector.get("matchLabels", {}).items() <= labels.items() and all(
            labels.get(e["key"]) in e["values"] for e in exprs
        )

    def beyond_api_server(policy: dict) -> list[dict]:
        ports = [{p["port"] for p in r.get("ports", [])} for r in policy["egress"]]
        return [r for r, p in zip(policy["egress"], ports, strict=True) if not p & {53, 443, 6443}]

    selected = {who: [n for n, p in policies.items() if selects(p["podSelector"], labels)]
                for who, labels in pods.items()}
    assert selected == {"controller": ["vmbmc-controller-egress"], "kbmc": ["vmbmc-kbmc-egress"],
                        "kbmc-shared": ["vmbmc-kbmc-egress"]}
    assert all(p["policyTypes"] == ["Egress"] for p in policies.values())
    assert beyond_api_server(policies["vmbmc-controller-egress"]) == []
    receivers = [{"to": [{"ipBlock": {"cidr": "10.20.0.0/16"}}]}]
    assert beyond_api_server(policies["vmbmc-kbmc-egress"]) == receivers

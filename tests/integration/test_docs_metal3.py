"""docs/metal3.md and docs/troubleshooting.md cannot drift from the code: every YAML example parses, has
the right kind and apiVersion, addresses a BMC with a scheme Metal3 accepts and the Service name and
ports the controller makes, names Secrets with the keys both vmbmc and Metal3 read, and uses the label
and pod ports of the controller's NetworkPolicy; the reasons the pages explain are exactly the ones the
code writes; and the vmbmc-side objects are accepted by the API server (the emulator, with the CRD's
schema and CEL rules)."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from vmbmc import naming as n
from vmbmc.auth.passwords import IPMI15_MAX_PASSWORD
from vmbmc.controller import children as ch
from vmbmc.redfish import paths

ROOT = Path(__file__).parents[2]
DOCS = (ROOT / "docs" / "metal3.md", ROOT / "docs" / "troubleshooting.md")
API_VERSIONS = {
    "BareMetalHost": "metal3.io/v1alpha1",
    "Secret": "v1",
    "Pod": "v1",
    "NetworkPolicy": "networking.k8s.io/v1",
    "VirtualMachine": "kubevirt.io/v1",
    n.KIND: f"{n.GROUP}/{n.VERSION}",
}
# The schemes of BMO's `ipmi`, `redfish` and `redfish-virtualmedia` access factories (each Redfish one also
# registered with +http and +https); vmbmc serves every one, and the pages show every one.
METAL3_SCHEMES = {
    "ipmi", "redfish", "redfish+http", "redfish+https",
    "redfish-virtualmedia", "redfish-virtualmedia+http", "redfish-virtualmedia+https",
}  # fmt: skip
MAC = re.compile(r"[0-9a-f]{2}(:[0-9a-f]{2}){5}")
DEMO_VM = ("default", "demo-vm-1")  # the VM the examples' auto-created BMC serves


def examples(path: Path) -> list[dict[str, Any]]:
    blocks = re.findall(r"```yaml\n(.*?)```", path.read_text(), re.S)
    assert blocks, f"{path.name} has no YAML example"
    docs = [doc for block in blocks for doc in yaml.safe_load_all(block)]
    assert all(isinstance(doc, dict) for doc in docs), path
    return docs


ALL = [doc for path in DOCS for doc in examples(path)]


def of_kind(kind: str) -> list[dict[str, Any]]:
    return [doc for doc in ALL if doc["kind"] == kind]


def bmcs() -> dict[tuple[str, str], tuple[str, str]]:
    """BMC (namespace, name) → its VM (namespace, name): the demo VM's auto-created one and the pages' own."""
    found = {(n.SYSTEM_NAMESPACE, n.plain_bmc_name(*DEMO_VM)): DEMO_VM}
    for bmc in of_kind(n.KIND):
        found[(bmc["metadata"]["namespace"], bmc["metadata"]["name"])] = n.vm_ref(bmc)
    return found


def secret_data(secret: dict[str, Any]) -> dict[str, str]:
    data = {k: base64.b64decode(v).decode() for k, v in (secret.get("data") or {}).items()}
    return {**data, **{k: str(v) for k, v in (secret.get("stringData") or {}).items()}}


def test_every_example_has_its_kinds_api_version() -> None:
    for doc in ALL:
        assert API_VERSIONS.get(doc["kind"]) == doc["apiVersion"], doc
        assert doc["metadata"]["name"] and doc["metadata"]["namespace"], doc


def test_bare_metal_hosts_address_a_real_bmc_with_a_scheme_metal3_accepts() -> None:
    hosts = of_kind("BareMetalHost")
    known = bmcs()
    assert {urlsplit(h["spec"]["bmc"]["address"]).scheme for h in hosts} == METAL3_SCHEMES
    for host in hosts:
        spec, ns = host["spec"], host["metadata"]["namespace"]
        bmc = spec["bmc"]
        url = urlsplit(bmc["address"])
        assert url.scheme in METAL3_SCHEMES, url
        service, _, service_ns = str(url.hostname).partition(".")
        assert service_ns.removesuffix(".cluster.local").split(".")[1:] == ["svc"], url
        where = (service_ns.split(".")[0], service)
        owner = next((k for k in known if (k[0], n.kbmc_name(k[1])) == where), None)
        assert owner is not None, f"{url.hostname} is no BMC's Service"
        if url.scheme == "ipmi":
            assert url.port in (None, ch.SERVICE_IPMI_PORT) and url.path in ("", "/"), url
        else:
            assert url.path == paths.system(known[owner][1]), url
            if url.scheme.endswith("+http"):
                assert url.port == ch.SERVICE_REDFISH_PORT, "plain HTTP on the Service's 443 needs the port"
                assert not bmc.get("disableCertificateVerification"), host
            else:
                assert url.port in (None, ch.SERVICE_REDFISH_PORT), url
                assert bmc["disableCertificateVerification"] is True, "the kbmc's certificate is self-signed"
        (secret,) = [s for s in of_kind("Secret")
                     if s["metadata"]["name"] == bmc["credentialsName"] and s["metadata"]["namespace"] == ns]
        assert set(secret_data(secret)) == {"username", "password"}, secret
        assert MAC.fullmatch(spec["bootMACAddress"]), spec


def test_the_vms_mac_is_the_hosts_boot_mac() -> None:
    for vm in of_kind("VirtualMachine"):
        macs = {i["macAddress"] for i in vm["spec"]["template"]["spec"]["domain"]["devices"]["interfaces"]}
        ns = vm["metadata"]["namespace"]
        hosts = [h for h in of_kind("BareMetalHost") if h["metadata"]["namespace"] == ns]
        assert hosts and all(h["spec"]["bootMACAddress"] in macs for h in hosts), (vm, hosts)


def test_secrets_have_the_keys_and_a_password_every_client_takes() -> None:
    known = bmcs()
    for secret in of_kind("Secret"):
        data = secret_data(secret)
        assert set(data) == {"username", "password"}, secret
        assert 0 < len(data["password"].encode()) <= IPMI15_MAX_PASSWORD, secret
        meta = secret["metadata"]
        if meta["namespace"] == n.SYSTEM_NAMESPACE:  # a BMC's generated Secret: its real name
            assert any(meta["name"] == n.credentials_name(b) for ns, b in known if ns == meta["namespace"])
    for bmc in of_kind(n.KIND):
        ref = {"name": bmc["spec"]["authSecretRef"]["name"], "namespace": bmc["metadata"]["namespace"]}
        assert any(s["metadata"] == ref for s in of_kind("Secret")), bmc


def test_client_label_and_policy_ports_are_the_controllers() -> None:
    info = ch.BmcInfo(n.SYSTEM_NAMESPACE, n.plain_bmc_name(*DEMO_VM), "uid", *DEMO_VM, redfish=True)
    policy = ch.network_policy(info)
    client = policy["spec"]["ingress"][0]["from"][0]["podSelector"]["matchLabels"]
    assert client == {n.LABEL_CLIENT: "true"}
    pods = of_kind("Pod")
    assert pods and all(client.items() <= p["metadata"]["labels"].items() for p in pods)
    assert all(p["metadata"]["namespace"] == info.namespace for p in pods), "the policy's namespace only"
    pod_labels = ch.deployment(info, "vmbmc:dev", "s")["spec"]["template"]["metadata"]["labels"]
    for extra in of_kind("NetworkPolicy"):
        selector = extra["spec"]["podSelector"]["matchLabels"]
        assert selector.items() <= pod_labels.items(), (selector, pod_labels)  # selects the kbmc pods
        ports = {(p["protocol"], p["port"]) for rule in extra["spec"]["ingress"] for p in rule["ports"]}
        assert ports == {("UDP", ch.IPMI_PORT), ("TCP", ch.REDFISH_PORT)}, (
            "the pod's ports, not the Service's")


def _reasons(source: str, pattern: str) -> set[str]:
    return set(re.findall(pattern, (ROOT / source).read_text()))


def test_the_pages_explain_exactly_the_reasons_the_code_writes() -> None:
    text = (ROOT / "docs" / "troubleshooting.md").read_text()
    ready = _reasons("vmbmc/controller/reconcile.py", r'kube\.condition\("Ready", False, "(\w+)"')
    section = text.split("## `Ready` is `False`")[1].split("\n## ")[0]
    documented = set(re.findall(r"^\| `(\w+)` \|", section, re.M))
    assert ready and documented == ready
    credentials = _reasons("vmbmc/controller/credentials.py", r'_condition\((?:True|False), "(\w+)"')
    section = text.split("## The `Credentials` condition")[1].split("\n## ")[0]
    assert credentials and set(re.findall(r"^\| `(\w+)` \|", section, re.M)) == credentials
    (held,) = _reasons("vmbmc/auth/lockout.py", r'log\.warning\(\s*"([^"]+)"')
    (metric,) = _reasons("vmbmc/metrics.py", r'Counter\(\s*"(vmbmc_login_failures_delayed)"')
    assert f"`{held}`" in text and f"`{metric}_total`" in text, "the kbmc's log line and metric, as written"
    metal3 = (ROOT / "docs" / "metal3.md").read_text()
    for fact in (n.LABEL_CLIENT, f"{ch.SERVICE_IPMI_PORT}/UDP", f"{ch.SERVICE_REDFISH_PORT}/TCP",
                 str(ch.IPMI_PORT), str(ch.REDFISH_PORT), n.SYSTEM_NAMESPACE):
        assert fact in metal3, fact


def test_the_vmbmc_objects_are_accepted_by_the_api(kubectl: Any) -> None:
    """The vmbmc-side examples (and what they stand on) created in the emulator as a user would: the CRD's
    schema and CEL rules accept the VirtualMachineBMC, the API server the rest."""
    generated = ("Secret", n.SYSTEM_NAMESPACE)  # the controller's own Secret, shown for its keys
    docs = [d for d in ALL if d["kind"] in ("Secret", "VirtualMachine", n.KIND, "NetworkPolicy")
            and (d["kind"], d["metadata"]["namespace"]) != generated]  # fmt: skip
    for ns in sorted({d["metadata"]["namespace"] for d in docs}):
        kubectl("create", "namespace", ns, check=False)  # default and the system namespace may exist
    kubectl("apply", "--validate=false", "-f", "-", input=yaml.safe_dump_all(docs))
    for doc in docs:
        kind = "vmbmc" if doc["kind"] == n.KIND else doc["kind"].lower()
        meta = doc["metadata"]
        got = json.loads(kubectl("get", kind, meta["name"], "-n", meta["namespace"], "-o", "json").stdout)
        assert got["metadata"]["name"] == meta["name"]

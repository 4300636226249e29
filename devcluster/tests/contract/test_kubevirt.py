"""The emulator's fake KubeVirt and workloads through real clients: kubectl and the kubernetes python client.

KubeVirt's subresources are not in the generated client, so they are called as the project's back end does:
``ApiClient.param_serialize`` + ``call_api`` (kubernetes 37's ``call_api`` takes ``(method, url, ...)``)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from vmbmc_devcluster.emulator.harness import EmulatorThread

KUBECTL = str(Path(sys.executable).parent / "kubectl")
SUBRESOURCE = "/apis/subresources.kubevirt.io/v1/namespaces/{namespace}/{plural}/{name}/{action}"

VM_MANIFEST = """\
apiVersion: kubevirt.io/v1
kind: VirtualMachine
metadata:
  name: {name}
  namespace: {namespace}
  labels:
    app: demo
spec:
  runStrategy: {run_strategy}
  template:
    metadata:
      labels:
        kubevirt.io/vm: {name}
    spec:
      terminationGracePeriodSeconds: 30
      domain:
        devices:
          disks:
          - name: root
            disk: {{bus: virtio}}
            bootOrder: 1
          interfaces:
          - name: default
            masquerade: {{}}
            macAddress: "52:54:00:aa:bb:cc"
        resources:
          requests:
            memory: 128Mi
      networks:
      - name: default
        pod: {{}}
      volumes:
      - name: root
        containerDisk:
          image: quay.io/kubevirt/cirros-container-disk-demo
"""


@pytest.fixture(scope="module")
def cluster(emulator: EmulatorThread) -> EmulatorThread:
    """The shared emulator (tests/conftest.py), or a real cluster with --kubeconfig."""
    return emulator


def hook(cluster: EmulatorThread, name: str, *args: Any, optional: bool = False, **kwargs: Any) -> Any:
    """Call a fake-KubeVirt test hook; on a real cluster skip the test (or do nothing if optional)."""
    if cluster.kubevirt is None:
        if optional:
            return None
        pytest.skip("needs the emulator's KubeVirt test hooks")
    return cluster.call(getattr(cluster.kubevirt, name), *args, **kwargs)


@pytest.fixture(scope="module")
def api(cluster: EmulatorThread) -> Iterator[client.ApiClient]:
    api_client = config.new_client_from_config(config_file=str(cluster.kubeconfig))
    yield api_client
    api_client.close()


@pytest.fixture
def namespace(api: client.ApiClient) -> str:
    name = f"kv-{uuid.uuid4().hex[:8]}"
    client.CoreV1Api(api).create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    return name


def kubectl(cluster: EmulatorThread, *args: str, input: str | None = None, check: bool = True) -> str:
    proc = subprocess.run(
        [KUBECTL, "--kubeconfig", str(cluster.kubeconfig), *args],
        input=input,
        capture_output=True,
        text=True,
        timeout=60,
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"kubectl {' '.join(args)} failed ({proc.returncode}): {proc.stderr}{proc.stdout}"
        )
    return proc.stdout + proc.stderr if not check else proc.stdout


def subresource(
    api: client.ApiClient, namespace: str, name: str, action: str, body: dict | None = None, plural: str = ""
) -> tuple[int, bytes]:
    plural = plural or ("virtualmachineinstances" if action in ("pause", "unpause") else "virtualmachines")
    params = api.param_serialize(
        method="PUT",
        resource_path=SUBRESOURCE,
        path_params={"namespace": namespace, "plural": plural, "name": name, "action": action},
        header_params={"Content-Type": "application/json", "Accept": "application/json"},
        body=body if body is not None else {},
        auth_settings=["BearerToken"],
    )
    response = api.call_api(*params)
    return response.status, response.read()


def get_vm(api: client.ApiClient, namespace: str, name: str, plural: str = "virtualmachines") -> dict:
    return client.CustomObjectsApi(api).get_namespaced_custom_object(
        "kubevirt.io", "v1", namespace, plural, name
    )


def try_get_vmi(api: client.ApiClient, namespace: str, name: str) -> dict | None:
    try:
        return get_vm(api, namespace, name, "virtualmachineinstances")
    except ApiException as e:
        if e.status == 404:
            return None
        raise


def wait_for(pred, timeout: float = 15.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.05)


def apply_vm(
    cluster: EmulatorThread, namespace: str, name: str = "vm1", run_strategy: str = "Halted"
) -> None:
    manifest = VM_MANIFEST.format(name=name, namespace=namespace, run_strategy=run_strategy)
    kubectl(cluster, "apply", "--validate=false", "-f", "-", input=manifest)


def wait_ready(cluster: EmulatorThread, namespace: str, name: str) -> None:
    kubectl(cluster, "-n", namespace, "wait", f"vm/{name}", "--for=condition=Ready", "--timeout=30s")


def test_apply_get_start_wait(cluster: EmulatorThread, api: client.ApiClient, namespace: str) -> None:
    apply_vm(cluster, namespace)
    kubectl(
        cluster,
        "-n",
        namespace,
        "wait",
        "vm/vm1",
        "--for=jsonpath={.status.printableStatus}=Stopped",
        "--timeout=10s",
    )
    table = kubectl(cluster, "-n", namespace, "get", "vm")
    header, row = table.splitlines()[:2]
    assert header.split() == ["NAME", "AGE", "STATUS", "READY"]
    assert row.split()[0] == "vm1" and row.split()[2:] == ["Stopped", "False"]
    assert "vm1" in kubectl(cluster, "-n", namespace, "get", "vms", "-o", "name")

    status, body = subresource(api, namespace, "vm1", "start")
    assert (status, body) == (202, b"")
    wait_ready(cluster, namespace, "vm1")

    vm = get_vm(api, namespace, "vm1")
    assert vm["spec"]["runStrategy"] == "Always"
    assert vm["status"]["printableStatus"] == "Running"
    assert vm["status"]["ready"] is True and vm["status"]["created"] is True
    vmi = get_vm(api, namespace, "vm1", "virtualmachineinstances")
    assert vmi["status"]["phase"] == "Running"
    assert vmi["status"]["interfaces"][0]["mac"] == "52:54:00:aa:bb:cc"
    phases = [p["phase"] for p in vmi["status"]["phaseTransitionTimestamps"]]
    assert phases == ["Pending", "Scheduling", "Scheduled", "Running"]
    vmi_row = kubectl(cluster, "-n", namespace, "get", "vmi", "vm1", "--no-headers").split()
    assert vmi_row[2:] == [
        "Running",
        vmi["status"]["interfaces"][0]["ipAddress"],
        vmi["status"]["nodeName"],
        "True",
    ]


def test_transitional_states_are_visible(
    cluster: EmulatorThread, api: client.ApiClient, namespace: str
) -> None:
    hook(cluster, "set_delays", start=3.0)
    try:
        apply_vm(cluster, namespace)
        subresource(api, namespace, "vm1", "start")
        wait_for(lambda: get_vm(api, namespace, "vm1").get("status", {}).get("printableStatus") == "Starting")
        assert get_vm(api, namespace, "vm1")["status"]["ready"] is False
    finally:
        hook(cluster, "set_delays", start=0.3)
    wait_ready(cluster, namespace, "vm1")


def test_stop_graceful_then_stopped(cluster: EmulatorThread, api: client.ApiClient, namespace: str) -> None:
    apply_vm(cluster, namespace, run_strategy="Always")
    wait_ready(cluster, namespace, "vm1")
    hook(cluster, "set_delays", stop=1.5, optional=True)
    try:
        assert subresource(api, namespace, "vm1", "stop", {})[0] == 202
        wait_for(lambda: get_vm(api, namespace, "vm1")["status"]["printableStatus"] == "Stopping")
        terminating = try_get_vmi(api, namespace, "vm1")
        assert terminating is not None and terminating["metadata"]["deletionTimestamp"]
        # Force it: a shorter grace period finishes the stop at once.
        assert subresource(api, namespace, "vm1", "stop", {"gracePeriod": 0})[0] == 202
        kubectl(cluster, "-n", namespace, "wait", "vmi/vm1", "--for=delete", "--timeout=5s")
    finally:
        hook(cluster, "set_delays", stop=0.3, optional=True)
    wait_for(lambda: get_vm(api, namespace, "vm1")["status"]["printableStatus"] == "Stopped")
    vm = get_vm(api, namespace, "vm1")
    assert vm["spec"]["runStrategy"] == "Halted" and vm["status"]["ready"] is False


def test_restart_makes_new_vmi(cluster: EmulatorThread, api: client.ApiClient, namespace: str) -> None:
    apply_vm(cluster, namespace, run_strategy="Always")
    wait_ready(cluster, namespace, "vm1")
    first = get_vm(api, namespace, "vm1", "virtualmachineinstances")["metadata"]["uid"]
    assert subresource(api, namespace, "vm1", "restart", {"gracePeriodSeconds": 0})[0] == 202
    wait_for(
        lambda: (
            ((try_get_vmi(api, namespace, "vm1") or {}).get("metadata") or {}).get("uid") not in (None, first)
        )
    )
    wait_ready(cluster, namespace, "vm1")


def test_pause_unpause(cluster: EmulatorThread, api: client.ApiClient, namespace: str) -> None:
    apply_vm(cluster, namespace, run_strategy="Always")
    wait_ready(cluster, namespace, "vm1")
    assert subresource(api, namespace, "vm1", "pause") == (200, b"")
    wait_for(lambda: get_vm(api, namespace, "vm1")["status"]["printableStatus"] == "Paused")
    kubectl(cluster, "-n", namespace, "wait", "vm/vm1", "--for=condition=Paused", "--timeout=5s")
    assert subresource(api, namespace, "vm1", "unpause") == (200, b"")
    wait_for(lambda: get_vm(api, namespace, "vm1")["status"]["printableStatus"] == "Running")


def test_guest_shutdown_restarts_always_vm(
    cluster: EmulatorThread, api: client.ApiClient, namespace: str
) -> None:
    apply_vm(cluster, namespace, run_strategy="Always")
    wait_ready(cluster, namespace, "vm1")
    first = get_vm(api, namespace, "vm1", "virtualmachineinstances")["metadata"]["uid"]
    hook(cluster, "guest_shutdown", namespace, "vm1")
    wait_for(
        lambda: (
            ((try_get_vmi(api, namespace, "vm1") or {}).get("metadata") or {}).get("uid") not in (None, first)
        )
    )
    wait_ready(cluster, namespace, "vm1")


def test_error_answers(cluster: EmulatorThread, api: client.ApiClient, namespace: str) -> None:
    code, body = subresource(api, namespace, "missing", "start")
    assert code == 404
    status = json.loads(body)
    assert (status["kind"], status["reason"]) == ("Status", "NotFound")
    assert status["message"] == 'virtualmachine.kubevirt.io "missing" not found'

    apply_vm(cluster, namespace)
    assert subresource(api, namespace, "vm1", "start")[0] == 202
    code, body = subresource(api, namespace, "vm1", "start")
    assert code == 409
    status = json.loads(body)
    assert (
        status["message"]
        == 'Operation cannot be fulfilled on virtualmachine.kubevirt.io "vm1": VM is already running'
    )
    assert status["details"] == {"name": "vm1", "group": "kubevirt.io", "kind": "virtualmachine"}

    code, body = subresource(api, namespace, "vm1", "restart", {"gracePeriodSeconds": 5})
    assert code == 400
    assert json.loads(body)["message"] == "For force restart, only gracePeriod=0 is supported for now"

    code, body = subresource(api, namespace, "vm1", "stop", {"gracePeriod": "soon"})
    assert code == 400
    assert (
        "cannot unmarshal string into Go struct field StopOptions.gracePeriod" in json.loads(body)["message"]
    )

    hook(cluster, "fail_next", "stop", 503, "injected")
    code, body = subresource(api, namespace, "vm1", "stop")
    assert code == 503 and json.loads(body)["message"] == "injected"
    assert subresource(api, namespace, "vm1", "stop")[0] == 202


def test_deployment_service_endpoints(cluster: EmulatorThread, api: client.ApiClient, namespace: str) -> None:
    manifest = f"""\
apiVersion: apps/v1
kind: Deployment
metadata: {{name: web, namespace: {namespace}}}
spec:
  replicas: 1
  strategy: {{type: Recreate}}
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec:
      containers:
      - name: web
        image: nginx:1.27
        ports: [{{name: http, containerPort: 8080}}]
---
apiVersion: v1
kind: Service
metadata: {{name: web, namespace: {namespace}}}
spec:
  selector: {{app: web}}
  ports: [{{name: http, port: 80, targetPort: http}}]
"""
    kubectl(cluster, "apply", "--validate=false", "-f", "-", input=manifest)
    kubectl(cluster, "-n", namespace, "wait", "deployment/web", "--for=condition=Available", "--timeout=20s")
    pods = client.CoreV1Api(api).list_namespaced_pod(namespace, label_selector="app=web").items
    assert len(pods) == 1 and pods[0].status.phase == "Running" and pods[0].status.pod_ip
    svc = client.CoreV1Api(api).read_namespaced_service("web", namespace)
    assert svc.spec.cluster_ip.startswith("10.")

    def endpoint_ips() -> list[str]:
        try:
            ep = client.CoreV1Api(api).read_namespaced_endpoints("web", namespace)
        except ApiException:
            return []
        return [a.ip for s in ep.subsets or [] for a in s.addresses or []]

    wait_for(lambda: endpoint_ips() == [pods[0].status.pod_ip])
    ep = client.CoreV1Api(api).read_namespaced_endpoints("web", namespace)
    assert ep.subsets[0].ports[0].port == 8080


def test_api_latency_hook(cluster: EmulatorThread, api: client.ApiClient, namespace: str) -> None:
    apply_vm(cluster, namespace)
    hook(cluster, "set_delays", api=0.4)
    try:
        started = time.monotonic()
        assert subresource(api, namespace, "vm1", "start")[0] == 202
        assert time.monotonic() - started >= 0.4
    finally:
        hook(cluster, "set_delays", api=0.0)
    wait_ready(cluster, namespace, "vm1")


def test_delete_vm_stops_vmi_and_orphan_keeps_it(
    cluster: EmulatorThread, api: client.ApiClient, namespace: str
) -> None:
    apply_vm(cluster, namespace, "a", run_strategy="Always")
    apply_vm(cluster, namespace, "b", run_strategy="Always")
    wait_ready(cluster, namespace, "a")
    wait_ready(cluster, namespace, "b")
    kubectl(cluster, "-n", namespace, "delete", "vm", "a", "--timeout=20s")
    assert try_get_vmi(api, namespace, "a") is None
    kubectl(cluster, "-n", namespace, "delete", "vm", "b", "--cascade=orphan", "--timeout=20s")
    time.sleep(0.5)
    orphan = try_get_vmi(api, namespace, "b")
    assert orphan is not None and orphan["status"]["phase"] == "Running"
    assert not orphan["metadata"].get("ownerReferences")


def test_webhook_refuses_bad_run_strategy(cluster: EmulatorThread, namespace: str) -> None:
    both = VM_MANIFEST.format(name="both", namespace=namespace, run_strategy="Always").replace(
        "  runStrategy: Always\n", "  runStrategy: Always\n  running: true\n"
    )
    out = kubectl(cluster, "apply", "--validate=false", "-f", "-", input=both, check=False)
    # kubectl renders a 422 with causes and no kind/name as KubeVirt users see it.
    assert "The request is invalid: spec.running: Running and RunStrategy are mutually exclusive" in out
    bogus = VM_MANIFEST.format(name="bogus", namespace=namespace, run_strategy="Sometimes")
    out = kubectl(cluster, "apply", "--validate=false", "-f", "-", input=bogus, check=False)
    assert "Invalid RunStrategy (Sometimes)" in out


def test_webhook_refuses_secure_boot_without_smm(cluster: EmulatorThread, namespace: str) -> None:
    """KubeVirt's VM admission: EFI with Secure Boot on (or unset: KubeVirt's default) needs SMM."""
    apply_vm(cluster, namespace, "sb")

    def patch(domain: dict) -> str:
        body = json.dumps({"spec": {"template": {"spec": {"domain": domain}}}})
        return kubectl(cluster, "-n", namespace, "patch", "vm/sb", "--type=merge", "-p", body, check=False)

    refusal = (
        "spec.template.spec.domain has EFI SecureBoot enabled. SecureBoot requires SMM, which is currently "
        "disabled."
    )
    for efi in ({}, {"secureBoot": True}):
        out = patch({"firmware": {"bootloader": {"efi": efi}}})
        assert refusal in out, out
    assert "patched" in patch({"features": {"smm": {"enabled": False}}})
    out = patch({"firmware": {"bootloader": {"efi": {}}}})
    assert refusal in out, out
    # accepted: Secure Boot off, or on together with SMM
    assert "patched" in patch({"firmware": {"bootloader": {"efi": {"secureBoot": False}}}})
    on = {"features": {"smm": {"enabled": True}}, "firmware": {"bootloader": {"efi": {"secureBoot": True}}}}
    assert "patched" in patch(on)
    out = patch({"firmware": {"bootloader": {"bios": {}}}})
    assert "has both EFI and BIOS configured, but they are mutually exclusive." in out, out

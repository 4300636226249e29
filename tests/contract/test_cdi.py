"""CDI as vmbmc's virtual media uses it, through kubectl and the kubernetes client: the emulator's fake CDI
(devcluster/vmbmc_devcluster/emulator/cdi.py), or a real cluster with CDI and KubeVirt (`--kubeconfig`; then
VMBMC_TEST_IMAGE_BASE must name an HTTP server the cluster reaches, serving `small.iso` and answering 404
for `missing.iso`). The outcome is judged with the product's own reading of a DataVolume
(`vmbmc.machine.media.import_state`), which accepts both CDI behaviours on a failing source."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from tests.image_server import serve_images
from vmbmc.machine import media as md
from vmbmc_devcluster.emulator.harness import EmulatorThread
from vmbmc_devcluster.testing.waiting import wait_until

KUBECTL = str(Path(sys.executable).parent / "kubectl")
CIRROS = "quay.io/kubevirt/cirros-container-disk-demo"
WAIT = float(os.environ.get("VMBMC_TEST_IMPORT_SECONDS", "60"))  # a real importer pod takes longer


@pytest.fixture(scope="module")
def images(emulator: EmulatorThread, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    base = os.environ.get("VMBMC_TEST_IMAGE_BASE")
    if base:
        yield base.rstrip("/")
        return
    if getattr(emulator, "kubevirt", None) is None:
        pytest.skip("a real cluster cannot reach the test's 127.0.0.1: set VMBMC_TEST_IMAGE_BASE")
    with serve_images(tmp_path_factory.mktemp("cdi-images")) as url:
        yield url


@pytest.fixture(scope="module")
def api(emulator: EmulatorThread) -> Iterator[client.ApiClient]:
    api_client = config.new_client_from_config(config_file=str(emulator.kubeconfig))
    yield api_client
    api_client.close()


@pytest.fixture
def namespace(api: client.ApiClient) -> str:
    name = f"cdi-{uuid.uuid4().hex[:8]}"
    client.CoreV1Api(api).create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    return name


def kubectl(emulator: EmulatorThread, *args: str, input: str | None = None) -> str:
    proc = subprocess.run([KUBECTL, "--kubeconfig", str(emulator.kubeconfig), *args],
                          input=input, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, f"kubectl {' '.join(args)}: {proc.stderr}{proc.stdout}"
    return proc.stdout


def get_dv(api: client.ApiClient, namespace: str, name: str) -> dict[str, Any] | None:
    try:
        return client.CustomObjectsApi(api).get_namespaced_custom_object(
            md.CDI_GROUP, md.CDI_VERSION, namespace, "datavolumes", name)
    except ApiException as e:
        if e.status == 404:
            return None
        raise


def until(pred: Any, what: str) -> Any:
    return wait_until(pred, WAIT, what)


def apply_dv(emulator: EmulatorThread, namespace: str, name: str, url: str) -> None:
    body = md.data_volume(name, namespace, url, {"app.kubernetes.io/name": "vmbmc"})
    kubectl(emulator, "apply", "--validate=false", "-f", "-", input=json.dumps(body))


def test_http_import_succeeds_into_a_pvc_of_its_own(
    emulator: EmulatorThread, api: client.ApiClient, namespace: str, images: str
) -> None:
    apply_dv(emulator, namespace, "ok", f"{images}/small.iso")
    dv = until(lambda: (d := get_dv(api, namespace, "ok")) and md.import_state(d)[0] == md.SUCCEEDED and d,
               "import Succeeded")
    assert dv["status"]["phase"] == "Succeeded" and dv["status"]["progress"] == "100.0%"
    pvc = client.CoreV1Api(api).read_namespaced_persistent_volume_claim("ok", namespace)
    (owner,) = pvc.metadata.owner_references
    assert owner.kind == "DataVolume" and owner.uid == dv["metadata"]["uid"]
    table = kubectl(emulator, "get", "dv", "-n", namespace)  # short name and printer columns
    assert "PHASE" in table and "PROGRESS" in table and "Succeeded" in table
    kubectl(emulator, "delete", "dv", "ok", "-n", namespace, "--wait=true", "--timeout=60s")
    until(lambda: not client.CoreV1Api(api).list_namespaced_persistent_volume_claim(namespace).items,
          "the PVC garbage-collected with its DataVolume")


def test_a_404_source_fails_with_cdis_message(
    emulator: EmulatorThread, api: client.ApiClient, namespace: str, images: str
) -> None:
    apply_dv(emulator, namespace, "missing", f"{images}/missing.iso")
    dv = until(lambda: (d := get_dv(api, namespace, "missing")) and md.import_state(d)[0] == md.FAILED and d,
               "import failed")
    _, message = md.import_state(dv)
    assert "404" in message and "expected status code 200" in message
    running = next(c for c in dv["status"]["conditions"] if c["type"] == "Running")
    assert running["status"] == "False" and running["reason"] == "Error"
    assert dv["status"]["phase"] in ("Failed", "ImportInProgress")


def test_kubevirt_gives_the_vmi_a_cdrom_backed_by_the_data_volume(
    emulator: EmulatorThread, api: client.ApiClient, namespace: str, images: str
) -> None:
    apply_dv(emulator, namespace, "media", f"{images}/small.iso")
    until(lambda: (d := get_dv(api, namespace, "media")) and md.import_state(d)[0] == md.SUCCEEDED, "import")
    vm = {
        "apiVersion": "kubevirt.io/v1", "kind": "VirtualMachine",
        "metadata": {"name": "vm", "namespace": namespace},
        "spec": {"runStrategy": "Always", "template": {"spec": {
            "domain": {"devices": {"disks": [{"name": "root", "disk": {"bus": "virtio"}}]},
                       "resources": {"requests": {"memory": "128Mi"}}},
            "volumes": [{"name": "root", "containerDisk": {"image": CIRROS}}],
        }}},
    }
    kubectl(emulator, "apply", "--validate=false", "-f", "-", input=json.dumps(vm))
    objects = client.CustomObjectsApi(api)

    def vmi() -> dict[str, Any] | None:
        try:
            return objects.get_namespaced_custom_object("kubevirt.io", "v1", namespace,
                                                        "virtualmachineinstances", "vm")
        except ApiException as e:
            if e.status == 404:
                return None
            raise

    first = until(lambda: (v := vmi()) and v.get("status", {}).get("phase") == "Running" and v, "VMI Running")
    current = objects.get_namespaced_custom_object("kubevirt.io", "v1", namespace, "virtualmachines", "vm")
    ops = md.attach_ops(current, "media")
    kubectl(emulator, "patch", "vm", "vm", "-n", namespace, "--type=json", "-p", json.dumps(ops))

    def restart_required() -> bool:
        vm_now = objects.get_namespaced_custom_object("kubevirt.io", "v1", namespace, "virtualmachines", "vm")
        return any(c["type"] == "RestartRequired" and c["status"] == "True"
                   for c in vm_now.get("status", {}).get("conditions") or [])

    until(restart_required, "RestartRequired on the running VM")
    assert not any(v["name"] == md.MEDIA_NAME for v in first["spec"]["volumes"])
    kubectl(emulator, "delete", "vmi", "vm", "-n", namespace)  # the next start takes the new template
    second = until(lambda: (v := vmi()) and v["metadata"]["uid"] != first["metadata"]["uid"]
                   and v.get("status", {}).get("phase") == "Running" and v, "a new VMI")
    assert {"name": md.MEDIA_NAME, "dataVolume": {"name": "media"}} in second["spec"]["volumes"]
    disk = next(d for d in second["spec"]["domain"]["devices"]["disks"] if d["name"] == md.MEDIA_NAME)
    assert disk["cdrom"]["readonly"] is True

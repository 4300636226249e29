"""The emulated cluster's workload side through real clients: Service admission, graceful pod deletion,
Deployment rollouts (what the vmbmc controller's kbmc Deployments and Services rely on)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator

import pytest
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

DEPLOYMENT = """\
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
      terminationGracePeriodSeconds: 2
      containers:
      - name: web
        image: {image}
        ports: [{{name: http, containerPort: 8080}}]
"""


@pytest.fixture(scope="module")
def core(emulator) -> Iterator[client.CoreV1Api]:  # type: ignore[no-untyped-def]
    api_client = config.new_client_from_config(config_file=str(emulator.kubeconfig))
    yield client.CoreV1Api(api_client)
    api_client.close()


@pytest.fixture
def namespace(core: client.CoreV1Api) -> str:
    name = f"wl-{uuid.uuid4().hex[:8]}"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    return name


def wait_for(pred: Callable[[], object], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.05)


def service(name: str, **spec: object) -> client.V1Service:
    return client.V1Service(
        metadata=client.V1ObjectMeta(name=name),
        spec=client.V1ServiceSpec(
            ports=[client.V1ServicePort(name="ipmi", port=623, protocol="UDP")], **spec
        ),
    )


def test_service_addresses_at_create(core: client.CoreV1Api, namespace: str) -> None:
    created = core.create_namespaced_service(namespace, service("a"))
    assert created.spec.cluster_ip and created.spec.cluster_ip != "None"
    assert created.spec.cluster_ips == [created.spec.cluster_ip]
    node_port = core.create_namespaced_service(namespace, service("b", type="NodePort"))
    assert 30000 <= node_port.spec.ports[0].node_port <= 32767
    headless = core.create_namespaced_service(namespace, service("c", cluster_ip="None"))
    assert headless.spec.cluster_ip == "None"
    with pytest.raises(ApiException) as e:
        core.patch_namespaced_service(
            "a", namespace, {"spec": {"clusterIP": "10.96.77.77", "clusterIPs": None}}
        )
    assert e.value.status == 422
    assert core.read_namespaced_service("a", namespace).spec.cluster_ip == created.spec.cluster_ip


def test_pod_deletion_is_graceful_and_replaced(
    emulator, kubectl, core: client.CoreV1Api, namespace: str
) -> None:  # type: ignore[no-untyped-def]
    kubectl(
        "apply", "--validate=false", "-f", "-", input=DEPLOYMENT.format(namespace=namespace, image="web:1")
    )
    kubectl("-n", namespace, "rollout", "status", "deployment/web", "--timeout=20s")
    (pod,) = core.list_namespaced_pod(namespace, label_selector="app=web").items
    assert pod.status.phase == "Running" and pod.status.pod_ip
    deleted = core.delete_namespaced_pod(pod.metadata.name, namespace)
    assert deleted.metadata.deletion_timestamp is not None  # marked, not gone: the kubelet ends it

    def replaced() -> bool:
        pods = core.list_namespaced_pod(namespace, label_selector="app=web").items
        return [p.metadata.name for p in pods if p.metadata.deletion_timestamp is None] not in (
            [],
            [pod.metadata.name],
        )

    wait_for(replaced)
    wait_for(
        lambda: pod.metadata.name not in [p.metadata.name for p in core.list_namespaced_pod(namespace).items]
    )


def test_recreate_rollout(emulator, kubectl, core: client.CoreV1Api, namespace: str) -> None:  # type: ignore[no-untyped-def]
    kubectl(
        "apply", "--validate=false", "-f", "-", input=DEPLOYMENT.format(namespace=namespace, image="web:1")
    )
    kubectl("-n", namespace, "rollout", "status", "deployment/web", "--timeout=20s")
    kubectl(
        "apply", "--validate=false", "-f", "-", input=DEPLOYMENT.format(namespace=namespace, image="web:2")
    )
    kubectl("-n", namespace, "rollout", "status", "deployment/web", "--timeout=20s")
    wait_for(lambda: len(core.list_namespaced_pod(namespace, label_selector="app=web").items) == 1)
    (pod,) = core.list_namespaced_pod(namespace, label_selector="app=web").items
    assert pod.spec.containers[0].image == "web:2"
    apps = client.AppsV1Api(core.api_client)
    revisions = sorted(
        rs.metadata.annotations["deployment.kubernetes.io/revision"]
        for rs in apps.list_namespaced_replica_set(namespace).items
    )
    assert revisions == ["1", "2"]
    dep = apps.read_namespaced_deployment("web", namespace)
    assert dep.status.observed_generation == dep.metadata.generation
    assert dep.status.ready_replicas == 1 and dep.status.updated_replicas == 1
    out = kubectl("-n", namespace, "get", "deployment", "web", "--no-headers").stdout.split()
    assert out[:4] == ["web", "1/1", "1", "1"]

"""The pod runner's kubelet rules: image names as a container runtime resolves them, the API server's
default pull policy, which Deployment a pod belongs to (its pinned address), and the command line."""

from __future__ import annotations

import pytest

from vmbmc.controller.image import ImageUnknown, container_image
from vmbmc_devcluster.demo.podrunner import LocalPodRunner, normalize_image, pull_policy


@pytest.mark.parametrize(
    ("ref", "resolved"),
    [
        ("vmbmc:dev", "docker.io/library/vmbmc:dev"),
        ("vmbmc", "docker.io/library/vmbmc:latest"),
        ("docker.io/vmbmc:dev", "docker.io/library/vmbmc:dev"),
        ("someone/vmbmc:1", "docker.io/someone/vmbmc:1"),
        ("registry.example/v/vmbmc:1.2.3", "registry.example/v/vmbmc:1.2.3"),
        ("localhost:5000/vmbmc", "localhost:5000/vmbmc:latest"),
        ("r.example/vmbmc@sha256:ab", "r.example/vmbmc@sha256:ab"),
    ],
)
def test_image_names_resolve_as_a_runtime_does(ref: str, resolved: str) -> None:
    assert normalize_image(ref) == resolved


@pytest.mark.parametrize(
    ("container", "policy"),
    [
        ({"image": "vmbmc:dev"}, "IfNotPresent"),
        ({"image": "vmbmc"}, "Always"),
        ({"image": "vmbmc:latest"}, "Always"),
        ({"image": "vmbmc@sha256:ab"}, "IfNotPresent"),
        ({"image": "vmbmc:dev", "imagePullPolicy": "Always"}, "Always"),
        ({"image": "vmbmc", "imagePullPolicy": "Never"}, "Never"),
    ],
)
def test_default_pull_policy(container: dict, policy: str) -> None:
    assert pull_policy(container) == policy


def test_a_deployments_pods_share_one_workload_key() -> None:
    def pod(name: str, rs: str | None, template_hash: str | None) -> dict:
        meta: dict = {"name": name, "namespace": "ns", "labels": {}}
        if rs:
            meta["ownerReferences"] = [{"kind": "ReplicaSet", "name": rs}]
        if template_hash:
            meta["labels"]["pod-template-hash"] = template_hash
        return {"metadata": meta}

    first = LocalPodRunner._workload(pod("bmc-kbmc-5fcd477b76-856d8", "bmc-kbmc-5fcd477b76", "5fcd477b76"))
    second = LocalPodRunner._workload(pod("bmc-kbmc-5fcd477b76-aaaaa", "bmc-kbmc-5fcd477b76", "5fcd477b76"))
    assert first == second == "ns/bmc-kbmc"
    assert LocalPodRunner._workload(pod("lonely", None, None)) == "ns/lonely"


def test_command_line_keeps_the_containers_args_and_binds_the_pod_ip() -> None:
    container = {
        "args": ["kbmc", "--bmc", "ns/b", "--credentials-dir", "/etc/vmbmc/credentials", "--address=::",
                 "--advertised-ipmi-port", "623"]  # no Service here: SOL names the port the demo prints
    }  # fmt: skip
    argv = LocalPodRunner._argv(container, {"/etc/vmbmc/credentials": "/w/creds"}, "127.10.0.9", "/w/kc")
    assert argv[1:] == [
        "-P",  # the installed vmbmc, never a folder of that name in the current directory
        "-m",
        "vmbmc",
        *("kbmc", "--bmc", "ns/b", "--credentials-dir", "/w/creds"),
        *("--address", "127.10.0.9", "--kubeconfig", "/w/kc"),
    ]
    controller = {"command": ["vmbmc"], "args": ["controller", "--health-port=8080"]}
    argv = LocalPodRunner._argv(controller, {}, "127.10.0.2", "/w/kc")
    assert argv[4:] == [
        "controller",
        "--health-port=8080",
        "--health-address",
        "127.10.0.2",
        "--kubeconfig",
        "/w/kc",
    ]
    with pytest.raises(ValueError, match="runs only vmbmc"):
        LocalPodRunner._argv({"command": ["sh", "-c", "x"]}, {}, "127.10.0.2", "/w/kc")


def test_controller_image_is_its_own_container() -> None:
    pod = {"metadata": {"name": "p"}, "spec": {"containers": [{"name": "sidecar", "image": "s"}]}}
    assert container_image(pod) == "s"  # the only container
    pod["spec"]["containers"].append({"name": "controller", "image": "r.example/vmbmc:1"})
    assert container_image(pod) == "r.example/vmbmc:1"
    pod["spec"]["containers"] = [{"name": "a", "image": "a"}, {"name": "b", "image": "b"}]
    with pytest.raises(ImageUnknown, match="--kbmc-image"):
        container_image(pod)

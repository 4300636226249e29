"""Deployment → ReplicaSet → Pod, kubelet and Endpoints controllers against an in-memory store (no HTTP)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import pytest

from vmbmc_devcluster.emulator.kubelet import PodEvents, PodHandle
from vmbmc_devcluster.emulator.registry import ResourceType
from vmbmc_devcluster.emulator.workloads import Workloads, install_workloads
from vmbmc_devcluster.testing.kubevirt_fake_cluster import FakeEmulator

NS = "default"
PODS = ResourceType("", "v1", "pods", "Pod", True)
SERVICES = ResourceType("", "v1", "services", "Service", True)
ENDPOINTS = ResourceType("", "v1", "endpoints", "Endpoints", True)
SLICES = ResourceType("discovery.k8s.io", "v1", "endpointslices", "EndpointSlice", True)
DEPLOYMENTS = ResourceType("apps", "v1", "deployments", "Deployment", True)
REPLICASETS = ResourceType("apps", "v1", "replicasets", "ReplicaSet", True)


class Runner:
    """A PodRunner that records calls; readiness is reported by the test."""

    def __init__(self) -> None:
        self.started: list[str] = []
        self.stopped: list[tuple[str, float]] = []
        self.events: dict[str, PodEvents] = {}

    async def start(self, pod: dict, events: PodEvents) -> PodHandle:
        name = pod["metadata"]["name"]
        self.started.append(name)
        self.events[name] = events
        return PodHandle(ip=f"127.10.0.{len(self.started)}", data=name)

    async def stop(self, handle: PodHandle, grace_seconds: float) -> None:
        self.stopped.append((handle.data, grace_seconds))


async def start_cluster(runner: Runner | None = None) -> tuple[FakeEmulator, Workloads, list[asyncio.Task]]:
    emu = FakeEmulator()
    for rt in (PODS, SERVICES, ENDPOINTS, SLICES, DEPLOYMENTS, REPLICASETS):
        emu.registry.register(rt)
    emu.sync_types()
    workloads = install_workloads(emu, pod_runner=runner, pod_start_delay=0.01)
    tasks = [asyncio.create_task(c.run(emu)) for c in emu.controllers]
    return emu, workloads, tasks


@pytest.fixture
async def cluster() -> AsyncIterator[FakeEmulator]:
    emu, _, tasks = await start_cluster()
    yield emu
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def until(pred: Callable[[], object], timeout: float = 3.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not pred():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached")
        await asyncio.sleep(0.01)


def deployment(image: str = "vmbmc:1", strategy: str = "Recreate", probe: bool = False) -> dict:
    container: dict = {"name": "kbmc", "image": image, "ports": [{"name": "ipmi", "containerPort": 10623}]}
    if probe:
        container["readinessProbe"] = {"httpGet": {"path": "/readyz", "port": 8081}}
    return {
        "metadata": {"name": "bmc"},
        "spec": {
            "replicas": 1,
            "strategy": {"type": strategy},
            "selector": {"matchLabels": {"app": "kbmc"}},
            "template": {"metadata": {"labels": {"app": "kbmc"}}, "spec": {"containers": [container]}},
        },
    }


def pods(emu: FakeEmulator) -> list[dict]:
    return emu.store.list(PODS, NS)[0]


def ready_pods(emu: FakeEmulator) -> list[dict]:
    return [
        p
        for p in pods(emu)
        if any(
            c["type"] == "Ready" and c["status"] == "True"
            for c in (p.get("status") or {}).get("conditions", [])
        )
    ]


def deploy_status(emu: FakeEmulator) -> dict:
    return emu.store.get(DEPLOYMENTS, NS, "bmc").get("status") or {}


async def test_deployment_to_ready_pod(cluster: FakeEmulator) -> None:
    emu = cluster
    emu.store.create(DEPLOYMENTS, deployment(), NS)
    await until(lambda: deploy_status(emu).get("availableReplicas") == 1)
    (pod,) = pods(emu)
    assert pod["status"]["phase"] == "Running"
    assert pod["status"]["podIP"].startswith("10.244.")
    assert pod["spec"]["nodeName"] == "node01"
    rs = emu.store.list(REPLICASETS, NS)[0][0]
    assert pod["metadata"]["ownerReferences"][0]["uid"] == rs["metadata"]["uid"]
    conds = {c["type"]: c["status"] for c in deploy_status(emu)["conditions"]}
    assert conds == {"Available": "True", "Progressing": "True"}


async def test_template_change_recreates(cluster: FakeEmulator) -> None:
    emu = cluster
    emu.store.create(DEPLOYMENTS, deployment(), NS)
    await until(lambda: len(ready_pods(emu)) == 1)
    first = pods(emu)[0]["metadata"]["name"]

    def bump(o: dict) -> None:
        o["spec"]["template"]["spec"]["containers"][0]["image"] = "vmbmc:2"

    emu.store.mutate(DEPLOYMENTS, NS, "bmc", bump)
    await until(lambda: [p["metadata"]["name"] for p in ready_pods(emu)] not in ([], [first]))
    await until(lambda: len(pods(emu)) == 1)
    assert pods(emu)[0]["spec"]["containers"][0]["image"] == "vmbmc:2"
    assert len(emu.store.list(REPLICASETS, NS)[0]) == 2
    await until(lambda: deploy_status(emu).get("updatedReplicas") == 1)
    dep = emu.store.get(DEPLOYMENTS, NS, "bmc")
    assert dep["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "2"


async def test_rolling_update(cluster: FakeEmulator) -> None:
    emu = cluster
    emu.store.create(DEPLOYMENTS, deployment(strategy="RollingUpdate"), NS)
    await until(lambda: len(ready_pods(emu)) == 1)

    def bump(o: dict) -> None:
        o["spec"]["template"]["spec"]["containers"][0]["image"] = "vmbmc:2"

    emu.store.mutate(DEPLOYMENTS, NS, "bmc", bump)
    await until(lambda: len(pods(emu)) == 1 and pods(emu)[0]["spec"]["containers"][0]["image"] == "vmbmc:2")
    await until(lambda: len(ready_pods(emu)) == 1)


async def test_service_ip_and_endpoints(cluster: FakeEmulator) -> None:
    emu = cluster
    emu.store.create(
        SERVICES,
        {
            "metadata": {"name": "bmc"},
            "spec": {
                "selector": {"app": "kbmc"},
                "ports": [{"name": "ipmi", "port": 623, "targetPort": 10623}],
            },
        },
        NS,
    )
    await until(lambda: emu.store.get(SERVICES, NS, "bmc")["spec"].get("clusterIP"))
    assert emu.store.get(SERVICES, NS, "bmc")["spec"]["clusterIP"].startswith("10.9")
    emu.store.create(DEPLOYMENTS, deployment(), NS)
    await until(lambda: len(ready_pods(emu)) == 1)
    ip = ready_pods(emu)[0]["status"]["podIP"]

    def addresses() -> list[str]:
        ep = emu.store.try_get(ENDPOINTS, NS, "bmc") or {}
        return [a["ip"] for s in ep.get("subsets") or [] for a in s.get("addresses") or []]

    await until(lambda: addresses() == [ip])
    sl = emu.store.get(SLICES, NS, "bmc")
    assert sl["endpoints"][0]["addresses"] == [ip]
    assert sl["metadata"]["labels"]["kubernetes.io/service-name"] == "bmc"
    emu.store.delete(DEPLOYMENTS, NS, "bmc")
    await until(lambda: addresses() == [])


async def test_pod_runner_readiness_and_stop() -> None:
    runner = Runner()
    emu, _, tasks = await start_cluster(runner)
    try:
        emu.store.create(DEPLOYMENTS, deployment(probe=True), NS)
        await until(lambda: runner.started)
        await until(lambda: pods(emu) and pods(emu)[0].get("status", {}).get("phase") == "Running")
        pod = pods(emu)[0]
        assert pod["status"]["podIP"] == "127.10.0.1"
        assert not ready_pods(emu)
        runner.events[pod["metadata"]["name"]].ready(True)
        await until(lambda: len(ready_pods(emu)) == 1)
        emu.store.delete(PODS, NS, pod["metadata"]["name"])
        await until(lambda: runner.stopped)
        assert runner.stopped[0][0] == pod["metadata"]["name"]
        await until(lambda: len(runner.started) == 2)  # the ReplicaSet replaced it
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def test_load_balancer_and_node_port(cluster: FakeEmulator) -> None:
    emu = cluster
    emu.store.create(
        SERVICES,
        {
            "metadata": {"name": "lb"},
            "spec": {"type": "LoadBalancer", "ports": [{"port": 623, "protocol": "UDP"}]},
        },
        NS,
    )

    def ingress() -> list:
        return ((emu.store.get(SERVICES, NS, "lb").get("status") or {}).get("loadBalancer") or {}).get(
            "ingress"
        ) or []

    await until(ingress)
    svc = emu.store.get(SERVICES, NS, "lb")
    assert 30000 <= svc["spec"]["ports"][0]["nodePort"] <= 32767
    assert ingress()[0]["ip"].startswith("172.18.255.")


async def test_pod_runner_exit_restarts_or_ends() -> None:
    runner = Runner()
    emu, _, tasks = await start_cluster(runner)
    try:
        emu.store.create(DEPLOYMENTS, deployment(), NS)
        await until(lambda: len(ready_pods(emu)) == 1)
        name = pods(emu)[0]["metadata"]["name"]
        runner.events[name].exited(1)
        await until(lambda: pods(emu)[0]["status"]["containerStatuses"][0]["restartCount"] == 1, timeout=5)
        await until(lambda: len(ready_pods(emu)) == 1)
        bare = {
            "metadata": {"name": "job"},
            "spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "x"}]},
        }
        emu.store.create(PODS, bare, NS)
        await until(lambda: "job" in runner.events)
        await until(lambda: (emu.store.get(PODS, NS, "job").get("status") or {}).get("phase") == "Running")
        runner.events["job"].exited(0)
        await until(lambda: emu.store.get(PODS, NS, "job")["status"]["phase"] == "Succeeded")
        state = emu.store.get(PODS, NS, "job")["status"]["containerStatuses"][0]["state"]
        assert state["terminated"]["exitCode"] == 0
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

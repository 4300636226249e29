"""Service address allocation and Endpoints computation (no server)."""

from __future__ import annotations

import ipaddress

import pytest

from vmbmc_devcluster.emulator.errors import ApiError
from vmbmc_devcluster.emulator.services import (
    SERVICE_CIDR,
    ServiceAllocator,
    endpoints_for,
    selector_matches,
    slice_endpoints,
)


def svc(name: str = "s", **spec: object) -> dict:
    return {
        "metadata": {"name": name, "namespace": "ns"},
        "spec": {"ports": [{"port": 623, "protocol": "UDP"}], **spec},
    }


def pod(name: str, ip: str | None, *, ready: bool = True, labels: dict | None = None) -> dict:
    return {
        "metadata": {"name": name, "namespace": "ns", "uid": f"uid-{name}", "labels": labels or {"app": "a"}},
        "spec": {
            "nodeName": "node01",
            "containers": [{"name": "c", "ports": [{"name": "ipmi", "containerPort": 10623}]}],
        },
        "status": {
            "phase": "Running",
            "podIP": ip,
            "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
        },
    }


class TestAllocator:
    def test_allocates_cluster_ip_in_range(self) -> None:
        out = ServiceAllocator().admit(svc())
        ip = out["spec"]["clusterIP"]
        assert ipaddress.ip_address(ip) in SERVICE_CIDR
        assert ip != "10.96.0.1"
        assert out["spec"]["clusterIPs"] == [ip]
        assert out["spec"]["type"] == "ClusterIP"
        assert "nodePort" not in out["spec"]["ports"][0]

    def test_distinct_addresses(self) -> None:
        alloc = ServiceAllocator()
        ips = {alloc.admit(svc(f"s{i}"))["spec"]["clusterIP"] for i in range(50)}
        assert len(ips) == 50

    def test_headless_is_kept(self) -> None:
        out = ServiceAllocator().admit(svc(clusterIP="None"))
        assert out["spec"]["clusterIP"] == "None"

    def test_requested_address_and_conflict(self) -> None:
        alloc = ServiceAllocator()
        assert alloc.admit(svc("a", clusterIP="10.96.5.5"))["spec"]["clusterIP"] == "10.96.5.5"
        with pytest.raises(ApiError) as e:
            alloc.admit(svc("b", clusterIP="10.96.5.5"))
        assert e.value.code == 422
        with pytest.raises(ApiError):
            alloc.admit(svc("c", clusterIP="192.168.1.1"))

    def test_cluster_ip_is_immutable(self) -> None:
        alloc = ServiceAllocator()
        old = alloc.admit(svc())
        new = svc(clusterIP="10.96.9.9")
        with pytest.raises(ApiError) as e:
            alloc.admit(new, old)
        assert e.value.code == 422
        assert "may not change once set" in str(e.value.status()["message"])
        kept = alloc.admit(svc(), old)
        assert kept["spec"]["clusterIP"] == old["spec"]["clusterIP"]

    def test_node_ports(self) -> None:
        alloc = ServiceAllocator()
        out = alloc.admit(svc(type="NodePort"))
        port = out["spec"]["ports"][0]["nodePort"]
        assert 30000 <= port <= 32767
        again = alloc.admit(svc(type="NodePort"), out)
        assert again["spec"]["ports"][0]["nodePort"] == port
        other = alloc.admit(svc("other", type="LoadBalancer"))
        assert other["spec"]["ports"][0]["nodePort"] != port

    def test_release_frees(self) -> None:
        alloc = ServiceAllocator()
        out = alloc.admit(svc(clusterIP="10.96.7.7"))
        alloc.release(out)
        assert alloc.admit(svc("b", clusterIP="10.96.7.7"))["spec"]["clusterIP"] == "10.96.7.7"


class TestEndpoints:
    def test_selector(self) -> None:
        assert selector_matches({"app": "a"}, {"app": "a", "x": "y"})
        assert not selector_matches({"app": "a"}, {"app": "b"})
        assert not selector_matches({}, {"app": "a"})

    def test_ready_and_not_ready(self) -> None:
        s = svc(selector={"app": "a"})
        s["spec"]["ports"][0].update(name="ipmi", targetPort="ipmi")
        subsets = endpoints_for(
            s, [pod("p1", "10.244.0.5"), pod("p2", "10.244.0.6", ready=False), pod("p3", None)]
        )
        assert len(subsets) == 1
        assert [a["ip"] for a in subsets[0]["addresses"]] == ["10.244.0.5"]
        assert [a["ip"] for a in subsets[0]["notReadyAddresses"]] == ["10.244.0.6"]
        assert subsets[0]["ports"] == [{"port": 10623, "protocol": "UDP", "name": "ipmi"}]
        assert subsets[0]["addresses"][0]["targetRef"]["name"] == "p1"
        endpoints, ports = slice_endpoints(subsets)
        assert [e["conditions"]["ready"] for e in endpoints] == [True, False]
        assert ports == subsets[0]["ports"]

    def test_no_pods_no_subsets(self) -> None:
        assert endpoints_for(svc(selector={"app": "a"}), []) == []

"""Service networking of the emulated cluster: ClusterIP and NodePort allocation, load-balancer ingress,
and the Endpoints / EndpointSlice controller.

- ``ServiceAllocator.admit(service, old)`` is what kube-apiserver's service REST storage does on create and
  update: allocate ``spec.clusterIP``/``clusterIPs`` from 10.96.0.0/12 (``None`` = headless, left alone; an
  explicit free address is honoured, a taken or out-of-range one is 422), allocate ``nodePort`` 30000-32767
  for NodePort and LoadBalancer ports, and refuse to change a set ClusterIP (422 "may not change once set").
- ``EndpointsController`` keeps one ``Endpoints`` and one ``discovery.k8s.io/v1 EndpointSlice`` per
  Service with a selector in step with the pods that match it (ready pods under ``addresses``, others under
  ``notReadyAddresses``), like kube-controller-manager's endpoints and endpointslice controllers.
- A LoadBalancer Service gets ``status.loadBalancer.ingress`` from 172.18.255.0/24 (as MetalLB in kind does).
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from typing import TYPE_CHECKING, Any

from vmbmc_devcluster.emulator.errors import ApiError

if TYPE_CHECKING:
    from vmbmc_devcluster.emulator.emulator import Emulator

log = logging.getLogger("vmbmc.emulator.services")

SERVICE_CIDR = ipaddress.ip_network("10.96.0.0/12")
LB_CIDR = ipaddress.ip_network("172.18.255.0/24")
NODE_PORTS = range(30000, 32768)
KUBERNETES_SERVICE_IP = "10.96.0.1"  # the "kubernetes" Service's address, never handed out


def _invalid(name: str, field: str, value: Any, detail: str) -> ApiError:
    shown = _go_value(value)
    return ApiError(
        422,
        "Invalid",
        f'Service "{name}" is invalid: {field}: Invalid value: {shown}: {detail}',
        details={
            "name": name,
            "kind": "Service",
            "causes": [
                {
                    "reason": "FieldValueInvalid",
                    "message": f"Invalid value: {shown}: {detail}",
                    "field": field,
                }
            ],
        },
    )


def _go_value(value: Any) -> str:
    if isinstance(value, list):
        return "[]string{" + ", ".join(f'"{v}"' for v in value) + "}"
    if isinstance(value, int):
        return str(value)
    return f'"{value}"'


def _node_port_types(svc: dict) -> bool:
    return (svc.get("spec") or {}).get("type") in ("NodePort", "LoadBalancer")


class ServiceAllocator:
    """ClusterIP, NodePort and load-balancer address bookkeeping (in memory, rebuilt from the store)."""

    def __init__(self) -> None:
        self.cluster_ips: dict[str, str] = {KUBERNETES_SERVICE_IP: "default/kubernetes"}
        self.node_ports: dict[int, str] = {}
        self.lb_ips: dict[str, str] = {}
        self._next_ip = 10
        self._next_port = NODE_PORTS.start
        self._next_lb = 240

    def _take_cluster_ip(self, owner: str) -> str:
        size = SERVICE_CIDR.num_addresses - 2
        for _ in range(size):
            candidate = str(SERVICE_CIDR[self._next_ip % size + 1])
            self._next_ip += 1
            if candidate not in self.cluster_ips:
                self.cluster_ips[candidate] = owner
                return candidate
        raise ApiError(
            500, "InternalError", "Internal error occurred: failed to allocate a serviceIP: range is full"
        )

    def _take_node_port(self, owner: str) -> int:
        for _ in NODE_PORTS:
            port = self._next_port
            self._next_port = NODE_PORTS.start + (self._next_port + 1 - NODE_PORTS.start) % len(NODE_PORTS)
            if port not in self.node_ports:
                self.node_ports[port] = owner
                return port
        raise ApiError(
            500, "InternalError", "Internal error occurred: failed to allocate a nodePort: range is full"
        )

    def take_lb_ip(self, owner: str) -> str:
        for ip, who in self.lb_ips.items():
            if who == owner:
                return ip
        for _ in range(LB_CIDR.num_addresses - 2):
            candidate = str(LB_CIDR[self._next_lb % (LB_CIDR.num_addresses - 2) + 1])
            self._next_lb += 1
            if candidate not in self.lb_ips:
                self.lb_ips[candidate] = owner
                return candidate
        raise ApiError(500, "InternalError", "Internal error occurred: load-balancer pool is full")

    def admit(self, svc: dict, old: dict | None = None) -> dict:
        """Fill in spec.clusterIP(s) and nodePorts (in place, also returned); raise 422 on a bad change."""
        meta = svc.get("metadata") or {}
        name = meta.get("name", "")
        owner = f"{meta.get('namespace', '')}/{name}"
        spec = svc.setdefault("spec", {})
        spec.setdefault("type", "ClusterIP")
        spec.setdefault("sessionAffinity", "None")
        old_spec = (old or {}).get("spec") or {}
        if spec["type"] == "ExternalName":
            return svc
        old_ip = old_spec.get("clusterIP")
        want = spec.get("clusterIP") or (spec.get("clusterIPs") or [None])[0]
        if old_ip:
            if want and want != old_ip:
                raise _invalid(name, "spec.clusterIPs[0]", [want], "may not change once set")
            want = old_ip
        elif want and want != "None":
            try:
                addr = ipaddress.ip_address(want)
            except ValueError:
                raise _invalid(name, "spec.clusterIPs[0]", want, "must be a valid IP address") from None
            if addr not in SERVICE_CIDR:
                raise _invalid(
                    name,
                    "spec.clusterIPs[0]",
                    want,
                    f"provided IP is not in the valid range. The range of valid IPs is {SERVICE_CIDR}",
                )
            if self.cluster_ips.get(want, owner) != owner:
                raise _invalid(name, "spec.clusterIPs[0]", want, "provided IP is already allocated")
            self.cluster_ips[want] = owner
        elif not want:
            want = self._take_cluster_ip(owner)
        spec["clusterIP"] = want
        spec["clusterIPs"] = [want]
        if want != "None":
            spec.setdefault("ipFamilies", ["IPv4"])
            spec.setdefault("ipFamilyPolicy", "SingleStack")
        old_ports = {
            (p.get("name"), p.get("port"), p.get("protocol", "TCP")): p.get("nodePort")
            for p in old_spec.get("ports") or []
        }
        for port in spec.get("ports") or []:
            port.setdefault("protocol", "TCP")
            port.setdefault("targetPort", port.get("port"))
            if _node_port_types(svc):
                if not port.get("nodePort"):
                    kept = old_ports.get((port.get("name"), port.get("port"), port["protocol"]))
                    port["nodePort"] = kept or self._take_node_port(owner)
                else:
                    holder = self.node_ports.get(int(port["nodePort"]), owner)
                    if holder != owner:
                        raise _invalid(
                            name,
                            "spec.ports[0].nodePort",
                            int(port["nodePort"]),
                            "provided port is already allocated",
                        )
                    self.node_ports[int(port["nodePort"])] = owner
            else:
                port.pop("nodePort", None)
        if _node_port_types(svc):
            spec.setdefault("externalTrafficPolicy", "Cluster")
        return svc

    def release(self, svc: dict) -> None:
        meta = svc.get("metadata") or {}
        owner = f"{meta.get('namespace', '')}/{meta.get('name', '')}"
        for table in (self.cluster_ips, self.node_ports, self.lb_ips):
            for key in [k for k, v in table.items() if v == owner]:
                del table[key]


def selector_matches(selector: dict | None, labels: dict | None) -> bool:
    """A Service selector (a plain map) matches when the pod has every pair; empty matches nothing."""
    if not selector:
        return False
    labels = labels or {}
    return all(labels.get(k) == v for k, v in selector.items())


def pod_ready(pod: dict) -> bool:
    for c in (pod.get("status") or {}).get("conditions") or []:
        if c.get("type") == "Ready":
            return c.get("status") == "True"
    return False


def _resolve_port(port: dict, pod: dict) -> int | None:
    target = port.get("targetPort", port.get("port"))
    if isinstance(target, int):
        return target
    if isinstance(target, str) and target.isdigit():
        return int(target)
    for c in (pod.get("spec") or {}).get("containers") or []:
        for cp in c.get("ports") or []:
            if cp.get("name") == target:
                return cp.get("containerPort")
    return None


def endpoints_for(svc: dict, pods: list[dict]) -> list[dict]:
    """The ``subsets`` of the Endpoints of ``svc`` (pods already filtered by the selector)."""
    groups: dict[tuple, dict] = {}
    for pod in sorted(pods, key=lambda p: p["metadata"]["name"]):
        status = pod.get("status") or {}
        ip = status.get("podIP")
        if (
            not ip
            or pod["metadata"].get("deletionTimestamp")
            or status.get("phase") in ("Succeeded", "Failed")
        ):
            continue
        ports = []
        for port in (svc.get("spec") or {}).get("ports") or []:
            number = _resolve_port(port, pod)
            if number is None:
                continue
            entry = {"port": number, "protocol": port.get("protocol", "TCP")}
            if port.get("name"):
                entry["name"] = port["name"]
            ports.append(entry)
        key = tuple(sorted((p.get("name", ""), p["port"], p["protocol"]) for p in ports))
        group = groups.setdefault(key, {"addresses": [], "notReadyAddresses": [], "ports": ports})
        address = {
            "ip": ip,
            "nodeName": (pod.get("spec") or {}).get("nodeName"),
            "targetRef": {
                "kind": "Pod",
                "namespace": pod["metadata"].get("namespace"),
                "name": pod["metadata"]["name"],
                "uid": pod["metadata"].get("uid"),
            },
        }
        group["addresses" if pod_ready(pod) else "notReadyAddresses"].append(address)
    subsets = []
    for group in groups.values():
        subset = {k: v for k, v in group.items() if v}
        if subset.get("addresses") or subset.get("notReadyAddresses"):
            subsets.append(subset)
    return subsets


def slice_endpoints(subsets: list[dict]) -> tuple[list[dict], list[dict]]:
    """EndpointSlice ``endpoints`` and ``ports`` from Endpoints subsets."""
    endpoints, ports = [], []
    for subset in subsets:
        for key, ready in (("addresses", True), ("notReadyAddresses", False)):
            for a in subset.get(key) or []:
                endpoints.append(
                    {
                        "addresses": [a["ip"]],
                        "conditions": {"ready": ready, "serving": ready, "terminating": False},
                        "nodeName": a.get("nodeName"),
                        "targetRef": a.get("targetRef"),
                    }
                )
        for p in subset.get("ports") or []:
            if p not in ports:
                ports.append(p)
    return endpoints, ports


class EndpointsController:
    """Endpoints and EndpointSlices for every Service with a selector."""

    def __init__(self, emulator: Emulator, allocator: ServiceAllocator, *, lb_ingress: bool = True) -> None:
        self.emulator = emulator
        self.allocator = allocator
        self.lb_ingress = lb_ingress
        self._dirty: set[tuple[str, str]] = set()
        self._wake = asyncio.Event()
        self._members: dict[tuple[str, str], set[str]] = {}  # pod (ns, name) -> service names
        # Indexes kept from watch events (an informer's cache): namespace -> name -> selector / labels.
        self._selectors: dict[str, dict[str, dict]] = {}
        self._pod_labels: dict[str, dict[str, dict]] = {}

    def _note(self, plural: str, obj: dict, deleted: bool) -> None:
        meta = obj.get("metadata") or {}
        table = self._selectors if plural == "services" else self._pod_labels
        names = table.setdefault(meta.get("namespace", ""), {})
        if deleted:
            names.pop(meta.get("name", ""), None)
        elif plural == "services":
            names[meta.get("name", "")] = dict((obj.get("spec") or {}).get("selector") or {})
        else:
            names[meta.get("name", "")] = dict(meta.get("labels") or {})

    def _rt(self, group: str, version: str, plural: str) -> Any:
        return self.emulator.registry.get(group, version, plural)

    async def run(self, emulator: Emulator) -> None:
        self.emulator = emulator
        self._wake = asyncio.Event()
        store = emulator.store
        sub = store.subscribe()
        try:
            pods, _ = store.list(self._rt("", "v1", "pods"))
            for pod in pods:
                self._note("pods", pod, False)
            services, _ = store.list(self._rt("", "v1", "services"))
            for svc in services:
                self._note("services", svc, False)
                self._dirty.add((svc["metadata"]["namespace"], svc["metadata"]["name"]))
            self._wake.set()
            reader = asyncio.create_task(self._read(sub))
            try:
                while True:
                    await self._wake.wait()
                    self._wake.clear()
                    if reader.done():
                        reader.result()
                    keys, self._dirty = self._dirty, set()
                    for key in sorted(keys):
                        try:
                            self.sync(*key)
                        except Exception:
                            log.exception(
                                "endpoints sync failed", extra={"namespace": key[0], "service": key[1]}
                            )
            finally:
                reader.cancel()
        finally:
            sub.close()

    async def _read(self, sub: Any) -> None:
        async for event in sub:
            rt, obj = event.rt, event.object
            meta = obj.get("metadata") or {}
            ns = meta.get("namespace", "")
            if rt.group == "" and rt.plural == "services":
                if event.type == "DELETED":
                    self.allocator.release(obj)
                self._note("services", obj, event.type == "DELETED")
                self._dirty.add((ns, meta.get("name", "")))
            elif rt.group == "" and rt.plural == "pods":
                self._note("pods", obj, event.type == "DELETED")
                key = (ns, meta.get("name", ""))
                names = set(self._members.get(key, set()))
                for svc_name, selector in self._selectors.get(ns, {}).items():
                    if selector_matches(selector, meta.get("labels")):
                        names.add(svc_name)
                if event.type == "DELETED":
                    self._members.pop(key, None)
                for name in names:
                    self._dirty.add((ns, name))
            else:
                continue
            self._wake.set()

    def sync(self, namespace: str, name: str) -> None:
        store = self.emulator.store
        svc_rt = self._rt("", "v1", "services")
        ep_rt = self._rt("", "v1", "endpoints")
        slice_rt = self._rt("discovery.k8s.io", "v1", "endpointslices")
        svc = store.try_get(svc_rt, namespace, name)
        if svc is None:
            for pod_key in self._members:
                self._members[pod_key].discard(name)
            return  # Endpoints/EndpointSlices carry an ownerReference (slices) or are removed by GC below
        self._ensure_admitted(svc)
        selector = (svc.get("spec") or {}).get("selector")
        if not selector or (svc.get("spec") or {}).get("type") == "ExternalName":
            return
        pod_rt = self._rt("", "v1", "pods")
        pods = []
        for pod_name, labels in sorted(self._pod_labels.get(namespace, {}).items()):
            if selector_matches(selector, labels):
                pod = store.try_get(pod_rt, namespace, pod_name)
                if pod is not None and selector_matches(selector, pod["metadata"].get("labels")):
                    pods.append(pod)
        for pod in pods:
            self._members.setdefault((namespace, pod["metadata"]["name"]), set()).add(name)
        subsets = endpoints_for(svc, pods)
        owner = {
            "apiVersion": "v1",
            "kind": "Service",
            "name": name,
            "uid": svc["metadata"]["uid"],
            "controller": True,
            "blockOwnerDeletion": True,
        }
        labels = dict(svc["metadata"].get("labels") or {})
        self._put(
            ep_rt,
            namespace,
            name,
            {
                "apiVersion": "v1",
                "kind": "Endpoints",
                "metadata": {"name": name, "labels": labels, "ownerReferences": [owner]},
            },
            {"subsets": subsets},
        )
        if slice_rt is not None:
            endpoints, ports = slice_endpoints(subsets)
            slice_labels = {
                **labels,
                "kubernetes.io/service-name": name,
                "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io",
            }
            self._put(
                slice_rt,
                namespace,
                name,
                {
                    "apiVersion": "discovery.k8s.io/v1",
                    "kind": "EndpointSlice",
                    "metadata": {"name": name, "labels": slice_labels, "ownerReferences": [owner]},
                    "addressType": "IPv4",
                },
                {"endpoints": endpoints, "ports": ports},
            )

    def _ensure_admitted(self, svc: dict) -> None:
        """Services that got no IPs at admission (created before us, or by another path) get them here."""
        store = self.emulator.store
        meta = svc["metadata"]
        spec = svc.get("spec") or {}
        needs_ip = spec.get("type") != "ExternalName" and not spec.get("clusterIP")
        needs_port = _node_port_types(svc) and any(not p.get("nodePort") for p in spec.get("ports") or [])
        if needs_ip or needs_port:
            store.mutate(
                self._rt("", "v1", "services"),
                meta["namespace"],
                meta["name"],
                lambda o: self.allocator.admit(o),
            )
        if self.lb_ingress and spec.get("type") == "LoadBalancer":
            ingress = ((svc.get("status") or {}).get("loadBalancer") or {}).get("ingress")
            if not ingress:
                ip = self.allocator.take_lb_ip(f"{meta['namespace']}/{meta['name']}")

                def apply(o: dict) -> None:
                    o.setdefault("status", {})["loadBalancer"] = {"ingress": [{"ip": ip, "ipMode": "VIP"}]}

                store.mutate(self._rt("", "v1", "services"), meta["namespace"], meta["name"], apply)

    def _put(self, rt: Any, namespace: str, name: str, skeleton: dict, content: dict) -> None:
        store = self.emulator.store
        current = store.try_get(rt, namespace, name)
        if current is None:
            store.create(rt, {**skeleton, **content}, namespace)
            return
        if (
            all(current.get(k) == v for k, v in content.items())
            and (current["metadata"].get("labels") or {}) == skeleton["metadata"]["labels"]
        ):
            return

        def apply(o: dict) -> None:
            o.update(content)
            o["metadata"]["labels"] = skeleton["metadata"]["labels"]

        store.mutate(rt, namespace, name, apply)

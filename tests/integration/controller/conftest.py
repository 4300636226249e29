"""The real controller (ControllerThread: kopf, in-process) against the emulator; small HTTP helpers.

The emulator enforces RBAC and the controller runs as its ServiceAccount bound to exactly what
`deploy/rbac.yaml` ships (issue 12), so a rule the controller lacks fails these tests as it would fail in
a cluster. The tests themselves act as the cluster admin.
"""

from __future__ import annotations

import copy
import json
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).parent))

from vmbmc.controller import ControllerOptions, ControllerThread
from vmbmc_devcluster.demo.identity import install_controller_identity
from vmbmc_devcluster.demo.samples import sample_vm
from vmbmc_devcluster.testing.waiting import wait_until

SYSTEM = "virtualmachinebmc-system"
CONTROLLER_USER = f"system:serviceaccount:{SYSTEM}:vmbmc-controller"
RBAC_FILE = Path(__file__).resolve().parents[3] / "deploy" / "rbac.yaml"
BMCS = "/apis/virtualmachine.kubevirt.io/v1"
PATHS = {
    "vmbmc": (BMCS, "virtualmachinebmcs"),
    "vm": ("/apis/kubevirt.io/v1", "virtualmachines"),
    "deployment": ("/apis/apps/v1", "deployments"),
    "service": ("/api/v1", "services"),
    "serviceaccount": ("/api/v1", "serviceaccounts"),
    "secret": ("/api/v1", "secrets"),
    "event": ("/api/v1", "events"),
    "pod": ("/api/v1", "pods"),
    "namespace": ("/api/v1", "namespaces"),
    "role": ("/apis/rbac.authorization.k8s.io/v1", "roles"),
    "rolebinding": ("/apis/rbac.authorization.k8s.io/v1", "rolebindings"),
    "networkpolicy": ("/apis/networking.k8s.io/v1", "networkpolicies"),
    "lease": ("/apis/coordination.k8s.io/v1", "leases"),
    "datavolume": ("/apis/cdi.kubevirt.io/v1beta1", "datavolumes"),
}


class Api:
    def __init__(self, url: str, token: str, ca_file: str | None = None) -> None:
        self.http = httpx.Client(
            base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=30, verify=ca_file or True
        )

    def path(self, kind: str, ns: str | None, name: str | None = None) -> str:
        prefix, plural = PATHS[kind]
        p = f"{prefix}/namespaces/{ns}/{plural}" if ns else f"{prefix}/{plural}"
        return f"{p}/{name}" if name else p

    def get(self, kind: str, ns: str | None, name: str) -> dict[str, Any] | None:
        r = self.http.get(self.path(kind, ns, name))
        if r.status_code == 404:
            return None
        r.raise_for_status()
        return r.json()

    def list(self, kind: str, ns: str | None = None, selector: str | None = None) -> list[dict[str, Any]]:
        params = {"labelSelector": selector} if selector else {}
        r = self.http.get(self.path(kind, ns), params=params)
        r.raise_for_status()
        return r.json()["items"]

    def create(self, obj: dict[str, Any]) -> dict[str, Any]:
        kind = obj["kind"].lower().replace("virtualmachinebmc", "vmbmc").replace("virtualmachine", "vm")
        r = self.http.post(self.path(kind, obj["metadata"].get("namespace")), json=obj)
        assert r.status_code in (200, 201), r.text
        return r.json()

    def delete(self, kind: str, ns: str | None, name: str) -> None:
        r = self.http.delete(self.path(kind, ns, name))
        assert r.status_code in (200, 202, 404), r.text

    def merge(self, kind: str, ns: str | None, name: str, body: dict[str, Any]) -> dict[str, Any]:
        r = self.http.patch(
            self.path(kind, ns, name),
            content=json.dumps(body),
            headers={"Content-Type": "application/merge-patch+json"},
        )
        assert r.status_code == 200, r.text
        return r.json()

    def namespace(self, name: str, labels: dict[str, str] | None = None) -> None:
        if self.get("namespace", None, name) is None:
            self.create(
                {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels or {}}}
            )

    def vm(self, ns: str, name: str, labels: dict[str, str] | None = None) -> dict[str, Any]:
        self.namespace(ns)
        vm = copy.deepcopy(sample_vm(1, ns))
        vm["metadata"]["name"] = name
        vm["metadata"]["labels"] = {**vm["metadata"]["labels"], **(labels or {})}
        return self.create(vm)


UNTIL_FLOOR = 60.0


def until(pred: Callable[[], Any], timeout: float = 15.0, what: str = "condition") -> Any:
    """`wait_until` (the suite's short name) bounded by at least UNTIL_FLOOR seconds: the controller's work
    crosses threads and the emulator, and on a loaded machine (the suite runs beside others) the first
    reconcile after a controller starts took over 20 s. A bound, not a budget: it costs nothing when fast."""
    return wait_until(pred, max(timeout, UNTIL_FLOOR), what)


@pytest.fixture(scope="module")
def api(emulator: Any) -> Api:
    if not getattr(emulator, "url", ""):
        pytest.skip("needs the emulator")
    client = Api(emulator.url, emulator.token, emulator.ca_file)
    client.namespace(SYSTEM)
    return client


def controller_kubeconfig(emulator: Any) -> str:
    """The controller's ServiceAccount kubeconfig, bound to deploy/rbac.yaml (made once per emulator)."""
    existing = getattr(emulator, "vmbmc_controller_kubeconfig", None)
    if existing:
        return str(existing)
    Api(emulator.url, emulator.token, emulator.ca_file).namespace(SYSTEM)
    path = Path(emulator.kubeconfig).with_name(f"controller-{emulator.port}.kubeconfig")
    install_controller_identity(emulator, RBAC_FILE, path)
    emulator.vmbmc_controller_kubeconfig = path
    return str(path)


def options(emulator: Any, **kw: Any) -> ControllerOptions:
    base: dict[str, Any] = {
        "kubeconfig": controller_kubeconfig(emulator),
        "health_port": 0,
        "health_address": "127.0.0.1",
        "resync_seconds": 2.0,
        "identity": "test-controller",
    }
    return ControllerOptions(**{**base, **kw})


def controller_denials(emulator: Any) -> list[str]:
    """Every 403 the controller's identity was given: a missing rule in deploy/rbac.yaml."""
    denials = emulator.call(lambda: list(emulator.emulator.security.denials))
    return [message for user, message in denials if user == CONTROLLER_USER]


@pytest.fixture(scope="module")
def controller(emulator: Any, api: Api) -> Iterator[ControllerThread]:
    thread = ControllerThread(options(emulator)).start()
    yield thread
    thread.stop()
    assert thread.error is None, thread.error


@pytest.fixture(scope="module", autouse=True)
def shipped_rules_suffice(emulator: Any) -> Iterator[None]:
    """The controller's rules suffice for this whole suite: none of its requests was refused."""
    yield
    if getattr(emulator, "emulator", None) is not None:
        assert controller_denials(emulator) == []

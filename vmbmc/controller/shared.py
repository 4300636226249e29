"""Shared kbmc mode (`--kbmc-mode shared`): one kbmc Deployment per BMC namespace serving every BMC in it.

The namespace's objects, all named `vmbmc-kbmc-shared` and owned by no BMC (they serve many):
- a ServiceAccount, bound by name to each served BMC's Roles (see vmbmc.controller.children);
- a Role and RoleBinding letting it read (get, list, watch) only the roster ConfigMap, by name;
- the roster ConfigMap: one key per served BMC, its value JSON with the BMC's own container ports and
  credentials Secret; the kbmc watches it and starts or stops serving a BMC when it changes;
- the Deployment, whose pod template never changes with the BMCs it serves (no pod restart per BMC).

The roster's format and port allocation are in vmbmc.roster (the kbmc reads it too). A namespace has
these objects exactly while its roster lists a BMC: the roster's writer makes them before it lists the
first and removes them when the last one leaves (a pod idling with a token is a risk, not a convenience).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from vmbmc import naming as n
from vmbmc.controller import kube
from vmbmc.controller.children import SERVICE_IPMI_PORT, kbmc_container, kbmc_pod_security
from vmbmc.k8s.client import ApiClient, ApiError
from vmbmc.k8s.status import guarded_patch
from vmbmc.roster import COMPONENT, NAME, RosterEntry, Wanted, configmap_path, parse_roster, plan

__all__ = ["COMPONENT", "NAME", "Roster", "RosterEntry", "Wanted"]

log = logging.getLogger(__name__)

HEALTH_PORT = 8081


class Roster:
    """The one writer of one namespace's roster ConfigMap and, in shared mode (`image` given), of the
    objects serving it. Changes are batched: every reconcile that arrives while a write is under way goes
    into the next one, so 1,000 BMCs created at once cost a few writes, not 1,000 conflicting ones.
    Making and removing the serving objects happen in the same one sequence as the roster's writes, so a
    BMC being listed never races the namespace's last BMC leaving."""

    def __init__(self, api: ApiClient, namespace: str, image: str | None = None) -> None:
        self.api = api
        self.namespace = namespace
        self.image = image
        self.deployed = False  # the serving objects were made by this writer (and not removed since)
        self._pending: dict[str, Wanted | None] = {}
        self._waiters: list[tuple[str, asyncio.Future[RosterEntry | None]]] = []
        self._recheck = False
        self._task: asyncio.Task[None] | None = None

    async def put(self, bmc: str, want: Wanted | None) -> RosterEntry | None:
        """List `bmc` as `want` (None: remove it); returns its entry as written (None when removed)."""
        fut: asyncio.Future[RosterEntry | None] = asyncio.get_running_loop().create_future()
        self._pending[bmc] = want
        self._waiters.append((bmc, fut))
        self._start()
        return await fut

    def recheck(self) -> None:
        """Make the serving objects again if the roster lists a BMC (one of them was deleted), remove
        them if it lists none (left over by an earlier run); in the writer's sequence, later."""
        self._recheck = True
        self._start()

    def _start(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._flush())

    async def _flush(self) -> None:
        while self._pending or self._recheck:
            batch, waiters = self._pending, self._waiters
            self._pending, self._waiters = {}, []
            recheck, self._recheck = self._recheck, False
            try:
                entries = await self._step(batch, recheck)
            except Exception as err:  # every waiter of this batch sees the failure (kopf retries)
                for _, fut in waiters:
                    if not fut.done():
                        fut.set_exception(err)
                if not waiters:
                    log.warning("shared kbmc objects of namespace %s: %s", self.namespace, err)
                continue
            for bmc, fut in waiters:
                if not fut.done():
                    fut.set_result(entries.get(bmc))

    async def _step(self, batch: dict[str, Wanted | None], recheck: bool) -> dict[str, RosterEntry]:
        if self.image is None:  # dedicated mode: only ever lets BMCs go (a switch from shared mode)
            return await self._write(batch) if batch else {}
        if recheck:
            self.deployed = False
        if not self.deployed and any(w is not None for w in batch.values()):
            await deploy(self.api, self.namespace, self.image)
            self.deployed = True
        if batch:
            entries = await self._write(batch)
        else:
            entries = parse_roster(await kube.get(self.api, "ConfigMap", self.namespace, NAME))
        if entries and not self.deployed:
            await deploy(self.api, self.namespace, self.image)
            self.deployed = True
        elif not entries and (recheck or any(w is None for w in batch.values())):
            await retire(self.api, self.namespace)
            self.deployed = False
        return entries

    async def _write(self, batch: dict[str, Wanted | None]) -> dict[str, RosterEntry]:
        path = configmap_path(self.namespace)

        def make_patch(cm: dict[str, Any]) -> dict[str, Any] | None:
            data = plan(parse_roster(cm), batch)
            return {"data": data} if data else None

        for _ in range(3):
            written = await guarded_patch(self.api, path, make_patch)
            if written is not None:
                return parse_roster(written)
            if all(w is None for w in batch.values()):
                return {}  # nothing to remove from a roster that does not exist
            # made, or there already (None): the next round patches it
            await self.api.create(configmap_path(self.namespace, None), configmap(self.namespace))
        raise ApiError(409, "Conflict", f"ConfigMap {self.namespace}/{NAME} could not be created")


# The serving objects in the order they are made; removed in the reverse order, the pod (and its
# token) first, the roster last.
KINDS = ("ServiceAccount", "Role", "RoleBinding", "Deployment")


async def deploy(api: ApiClient, namespace: str, image: str) -> None:
    """Make (or bring up to date) the namespace's serving objects; the roster's writer makes the roster."""
    for body in (
        service_account(namespace),
        role(namespace),
        role_binding(namespace),
        deployment(namespace, image),
    ):
        await kube.apply(api, body)


async def retire(api: ApiClient, namespace: str) -> None:
    """Remove the namespace's shared kbmc: its pod and token, its rights, and its roster."""
    for kind in (*reversed(KINDS), "ConfigMap"):
        if await kube.delete(api, kind, namespace, NAME):
            log.info("removed %s %s/%s: no BMC left for the shared kbmc to serve", kind, namespace, NAME)


def labels() -> dict[str, str]:
    return {
        "app.kubernetes.io/name": "vmbmc",
        "app.kubernetes.io/managed-by": n.MANAGED_BY,
        "app.kubernetes.io/component": COMPONENT,
    }


def pod_selector() -> dict[str, str]:
    return {"app.kubernetes.io/name": "vmbmc", "app.kubernetes.io/component": COMPONENT}


def _meta(namespace: str) -> dict[str, Any]:
    return {"name": NAME, "namespace": namespace, "labels": labels()}


def configmap(namespace: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": _meta(namespace), "data": {}}


def service_account(namespace: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": _meta(namespace)}


def role(namespace: str) -> dict[str, Any]:
    """The shared kbmc's own right: reading its roster, by name (a list or watch with
    fieldSelector=metadata.name, the way a name-restricted watch is allowed)."""
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": _meta(namespace),
        "rules": [
            {
                "apiGroups": [""],
                "resources": ["configmaps"],
                "resourceNames": [NAME],
                "verbs": ["get", "list", "watch"],
            }
        ],
    }


def role_binding(namespace: str) -> dict[str, Any]:
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": _meta(namespace),
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": NAME},
        "subjects": [{"kind": "ServiceAccount", "name": NAME, "namespace": namespace}],
    }


def deployment(namespace: str, image: str) -> dict[str, Any]:
    """The shared kbmc. Its template names no BMC and no BMC port: a Service's targetPort need not be a
    declared container port, so adding a BMC changes nothing here and restarts nothing."""
    container = kbmc_container(
        image,
        [
            "kbmc",
            "--shared",
            namespace,
            "--advertised-ipmi-port",  # every BMC's Service maps 623: SOL and Redfish name it
            str(SERVICE_IPMI_PORT),
            "--health-port",
            str(HEALTH_PORT),
        ],
        [{"name": "health", "containerPort": HEALTH_PORT, "protocol": "TCP"}],
        {"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"cpu": "2", "memory": "1Gi"}},
        [{"name": "tmp", "mountPath": "/tmp"}],
    )
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _meta(namespace),
        "spec": {
            "replicas": 1,
            # Never two kbmcs for one BMC: two writers of the same status and two IPMI answerers.
            "strategy": {"type": "Recreate"},
            "selector": {"matchLabels": pod_selector()},
            "template": {
                "metadata": {"labels": labels()},
                "spec": {
                    "serviceAccountName": NAME,
                    "automountServiceAccountToken": True,
                    "securityContext": kbmc_pod_security(),
                    "containers": [container],
                    "volumes": [{"name": "tmp", "emptyDir": {}}],
                },
            },
        },
    }

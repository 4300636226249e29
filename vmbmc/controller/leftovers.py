"""What the other kbmc mode made, removed: after `--kbmc-mode` changes, only what this mode needs stays.

Dedicated mode gives each BMC a Deployment and a ServiceAccount `<bmc>-kbmc` (labelled
`app.kubernetes.io/component: kbmc`); shared mode gives each BMC namespace a Deployment, ServiceAccount,
Role, RoleBinding and roster ConfigMap `vmbmc-kbmc-shared` (`app.kubernetes.io/component: kbmc-shared`).
A leftover is a risk, not clutter: a shared pod keeps a token with rights to VMs, and an unused
ServiceAccount is an identity someone may bind. Everything else a BMC has (its Service and ClusterIP,
credentials Secret, NetworkPolicy, Roles and status: boot override, power history) serves both modes and
is changed in place by its reconcile, never deleted here.

`sweep` finds the other mode's objects cluster-wide by the labels the controller put on them (so a switch
made while the controller was down is found at start-up) and runs at start-up and at every resync
interval. It never races a reconcile: the current mode never makes what it removes, and in shared mode a
namespace's shared kbmc is checked by its roster's one writer (vmbmc.controller.shared.Roster), which
keeps it exactly while the roster lists a BMC.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine, Iterable
from typing import Any

from vmbmc import naming as n
from vmbmc.controller import kube, shared
from vmbmc.controller.state import State
from vmbmc.k8s.client import ApiClient
from vmbmc.roster import parse_roster

log = logging.getLogger(__name__)

MANAGED = f"app.kubernetes.io/managed-by={n.MANAGED_BY}"
DEDICATED_SELECTOR = f"{MANAGED},app.kubernetes.io/component=kbmc"
SHARED_SELECTOR = f"{MANAGED},app.kubernetes.io/component={shared.COMPONENT}"
DEDICATED_KINDS = ("Deployment", "ServiceAccount")  # the pod (and its token) first
CONCURRENCY = 8
RETRY_SECONDS = 5.0


async def remove_dedicated(api: ApiClient, namespace: str, bmc: str) -> None:
    """A BMC's own kbmc Deployment and ServiceAccount (shared mode serves it from the namespace's pod)."""
    for kind in DEDICATED_KINDS:
        if await kube.delete(api, kind, namespace, n.kbmc_name(bmc)):
            log.info("removed %s %s/%s: shared mode serves its BMC", kind, namespace, n.kbmc_name(bmc))


async def dedicated_leftovers(api: ApiClient) -> set[tuple[str, str]]:
    """(namespace, BMC) of every BMC's own kbmc Deployment or ServiceAccount: named after the BMC that
    owns it (its controller ownerReference), so nothing else carrying our labels is taken."""
    found: set[tuple[str, str]] = set()
    for kind in DEDICATED_KINDS:
        for obj in await kube.list_items(api, kind, None, DEDICATED_SELECTOR):
            meta = obj["metadata"]
            for ref in meta.get("ownerReferences") or []:
                if ref.get("kind") == n.KIND and meta.get("name") == n.kbmc_name(str(ref.get("name"))):
                    found.add((str(meta["namespace"]), str(ref["name"])))
    return found


async def shared_namespaces(api: ApiClient) -> set[str]:
    """The namespaces holding any of the shared kbmc's objects (the roster is listed by name: the
    controller may read no other ConfigMap)."""
    found: set[str] = set()
    for kind in (*shared.KINDS, "ConfigMap"):
        if kind == "ConfigMap":
            items = await kube.list_items(api, kind, None, field_selector=f"metadata.name={shared.NAME}")
        else:
            items = await kube.list_items(api, kind, None, SHARED_SELECTOR)
        for obj in items:
            meta = obj["metadata"]
            labels = meta.get("labels") or {}
            if meta.get("name") == shared.NAME and labels.get("app.kubernetes.io/managed-by") == n.MANAGED_BY:
                found.add(str(meta["namespace"]))
    return found


async def forget_ghosts(api: ApiClient, roster: shared.Roster) -> None:
    """Let go of roster entries whose BMC is gone without its finalizer's cleanup (removed by hand): the
    shared kbmc would go on trying to serve them, and keep the namespace's pod. The roster is read
    before the BMCs are listed, so a BMC listed meanwhile is never taken for a ghost."""
    listed = parse_roster(await kube.get(api, "ConfigMap", roster.namespace, shared.NAME))
    if not listed:
        return
    bmcs = {str(b["metadata"]["name"]) for b in await kube.list_items(api, n.KIND, roster.namespace)}
    ghosts = sorted(set(listed) - bmcs)
    for name in ghosts:
        log.info("roster %s/%s lists BMC %s, which is gone: removing it", roster.namespace, shared.NAME, name)
    await asyncio.gather(*(roster.put(name, None) for name in ghosts))


async def sweep(state: State) -> None:
    """Remove what the other mode made, everywhere. Shared mode: every BMC's own kbmc and
    ServiceAccount; each namespace's roster lets go of BMCs that are gone, and its shared kbmc is
    checked by the roster's writer (removed where the roster lists no BMC). Dedicated mode: every
    namespace's shared kbmc and roster."""
    api = state.api
    if state.shared:
        await _bounded(remove_dedicated(api, ns, bmc) for ns, bmc in sorted(await dedicated_leftovers(api)))
        for ns in sorted(await shared_namespaces(api)):
            await forget_ghosts(api, state.roster(ns))
            state.roster(ns).recheck()
    else:
        await _bounded(shared.retire(api, ns) for ns in sorted(await shared_namespaces(api)))


async def keep_clean(state: State) -> None:
    """`sweep` now and at every resync interval (sooner again after a failure) until cancelled."""
    while True:
        wait = state.options.resync_seconds
        try:
            await sweep(state)
        except Exception as err:  # an API hiccup: the next attempt comes soon
            log.warning("removing the other kbmc mode's objects failed, retrying: %s", err)
            wait = min(wait, RETRY_SECONDS)
        await asyncio.sleep(wait)


async def _bounded(calls: Iterable[Coroutine[Any, Any, None]]) -> None:
    """Run `calls` at most CONCURRENCY at a time (a switch of 1,000 BMCs is 2,000 deletes); the first
    failure is raised once all have run."""
    gate = asyncio.Semaphore(CONCURRENCY)

    async def one(call: Coroutine[Any, Any, None]) -> None:
        async with gate:
            await call

    results = await asyncio.gather(*(one(c) for c in calls), return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result

"""apps/v1 controllers of the emulated cluster: Deployment → ReplicaSet → Pod, plus the node and Services.

``install_workloads(emulator, pod_runner=None)`` adds three emulator controllers:

- ``WorkloadController``: the deployment controller (one ReplicaSet per pod template, named
  ``<deployment>-<pod-template-hash>``; ``Recreate`` scales old ReplicaSets to 0 and waits for their
  pods to go before scaling the new one up; ``RollingUpdate`` brings the new one up, then scales old
  ones down once enough new pods are ready; ``deployment.kubernetes.io/revision``; status replicas,
  updatedReplicas, readyReplicas, availableReplicas, unavailableReplicas, conditions Available and
  Progressing, observedGeneration) and the replicaset controller (pods from the template, with
  ownerReferences so garbage collection removes them with their owner);
- ``Kubelet`` (``vmbmc_devcluster.emulator.kubelet``): scheduling, pod status, the optional ``PodRunner``;
- ``EndpointsController`` (``vmbmc_devcluster.emulator.services``): Service IPs, Endpoints and EndpointSlices.
"""

from __future__ import annotations

import asyncio
import copy
import datetime as dt
import json
import logging
import math
import time
from collections import defaultdict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from vmbmc_devcluster.emulator.errors import ApiError
from vmbmc_devcluster.emulator.kubelet import Kubelet, PodRunner
from vmbmc_devcluster.emulator.services import EndpointsController, ServiceAllocator, pod_ready

if TYPE_CHECKING:
    from vmbmc_devcluster.emulator.emulator import Emulator

log = logging.getLogger("vmbmc.emulator.workloads")

HASH_LABEL = "pod-template-hash"
REVISION = "deployment.kubernetes.io/revision"
_SAFE_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"  # k8s.io/apimachinery/pkg/util/rand.SafeEncodeString


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def template_hash(template: dict, collision_count: int = 0) -> str:
    """ComputeHash: FNV-1a 32 of the template (+ collisionCount), safe-encoded as kube-controller-manager."""
    data = json.dumps(template, sort_keys=True, separators=(",", ":")).encode()
    if collision_count:
        data += str(collision_count).encode()
    h = 0x811C9DC5
    for byte in data:
        h = ((h ^ byte) * 0x01000193) & 0xFFFFFFFF
    return "".join(_SAFE_ALPHABET[ord(c) % len(_SAFE_ALPHABET)] for c in str(h))


def selector_string(selector: dict | None) -> str:
    """A LabelSelector (matchLabels + matchExpressions) as the list API's labelSelector string."""
    selector = selector or {}
    parts = [f"{k}={v}" for k, v in sorted((selector.get("matchLabels") or {}).items())]
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr.get("key"), expr.get("operator"), expr.get("values") or []
        if op == "In":
            parts.append(f"{key} in ({','.join(values)})")
        elif op == "NotIn":
            parts.append(f"{key} notin ({','.join(values)})")
        elif op == "Exists":
            parts.append(key)
        elif op == "DoesNotExist":
            parts.append(f"!{key}")
    return ",".join(parts)


def controller_of(obj: dict) -> dict | None:
    for ref in (obj.get("metadata") or {}).get("ownerReferences") or []:
        if ref.get("controller"):
            return ref
    return None


def owner_ref(obj: dict, api_version: str, kind: str) -> dict:
    return {
        "apiVersion": api_version,
        "kind": kind,
        "name": obj["metadata"]["name"],
        "uid": obj["metadata"]["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def _percent(value: Any, total: int, *, round_up: bool) -> int:
    if isinstance(value, int):
        return value
    text = str(value or "25%")
    if text.endswith("%"):
        raw = int(text[:-1]) * total / 100
        return math.ceil(raw) if round_up else math.floor(raw)
    return int(text)


def rolling_params(deploy: dict, replicas: int) -> tuple[int, int]:
    """(maxSurge, maxUnavailable) with their 25 % defaults; both 0 is not allowed, so surge becomes 1."""
    ru = ((deploy.get("spec") or {}).get("strategy") or {}).get("rollingUpdate") or {}
    surge = _percent(ru.get("maxSurge", "25%"), replicas, round_up=True)
    unavailable = _percent(ru.get("maxUnavailable", "25%"), replicas, round_up=False)
    if surge == 0 and unavailable == 0:
        surge = 1
    return surge, unavailable


def new_replicaset(deploy: dict, pod_hash: str, revision: int) -> dict:
    meta = deploy["metadata"]
    spec = deploy.get("spec") or {}
    template = copy.deepcopy(spec.get("template") or {})
    tmeta = template.setdefault("metadata", {})
    tmeta.setdefault("labels", {})[HASH_LABEL] = pod_hash
    selector = copy.deepcopy(spec.get("selector") or {})
    selector.setdefault("matchLabels", {})[HASH_LABEL] = pod_hash
    replicas = spec.get("replicas", 1)
    surge, _ = rolling_params(deploy, replicas)
    return {
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "metadata": {
            "name": f"{meta['name']}-{pod_hash}",
            "labels": dict(tmeta["labels"]),
            "annotations": {
                REVISION: str(revision),
                "deployment.kubernetes.io/desired-replicas": str(replicas),
                "deployment.kubernetes.io/max-replicas": str(replicas + surge),
            },
            "ownerReferences": [owner_ref(deploy, "apps/v1", "Deployment")],
        },
        "spec": {
            "replicas": 0,
            "minReadySeconds": spec.get("minReadySeconds", 0),
            "selector": selector,
            "template": template,
        },
    }


def new_pod(rs: dict) -> dict:
    template = copy.deepcopy(((rs.get("spec") or {}).get("template")) or {})
    tmeta = template.get("metadata") or {}
    spec = template.get("spec") or {}
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("terminationGracePeriodSeconds", 30)
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("schedulerName", "default-scheduler")
    spec.setdefault("serviceAccountName", spec.get("serviceAccount") or "default")
    spec.setdefault("securityContext", {})
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "generateName": f"{rs['metadata']['name']}-",
            "labels": dict(tmeta.get("labels") or {}),
            "annotations": dict(tmeta.get("annotations") or {}),
            "ownerReferences": [owner_ref(rs, "apps/v1", "ReplicaSet")],
        },
        "spec": spec,
    }


def replica_failure(rs: dict, failure: ApiError | None, diff: int) -> list[dict]:
    """The ReplicaSet's conditions: ReplicaFailure is set on a failed create or delete (and kept as it
    was while the failure lasts), removed once the replicas are managed without error."""
    conditions = [c for c in (rs.get("status") or {}).get("conditions") or []]
    current = next((c for c in conditions if c.get("type") == "ReplicaFailure"), None)
    if failure is not None and current is None:
        reason = "FailedCreate" if diff < 0 else "FailedDelete" if diff > 0 else ""
        conditions.append(
            {
                "type": "ReplicaFailure",
                "status": "True",
                "lastTransitionTime": _now(),
                "reason": reason,
                "message": failure.message,
            }
        )
    elif failure is None and current is not None:
        conditions.remove(current)
    return conditions


def record_event(emulator: Emulator, obj: dict, type_: str, reason: str, message: str) -> None:
    """An Event from the replicaset controller about `obj`; a repeat bumps count and lastTimestamp."""
    store = emulator.store
    ev_rt = emulator.registry.get("", "v1", "events")
    if ev_rt is None:
        return
    meta = obj["metadata"]
    source = "replicaset-controller"
    for ev in store.iter_raw(ev_rt, meta["namespace"]):
        involved = ev.get("involvedObject") or {}
        if (
            involved.get("uid") == meta["uid"]
            and ev.get("reason") == reason
            and ev.get("message") == message
            and (ev.get("source") or {}).get("component") == source
        ):

            def bump(o: dict) -> None:
                o["count"] = int(o.get("count") or 1) + 1
                o["lastTimestamp"] = _now()

            store.mutate(ev_rt, meta["namespace"], ev["metadata"]["name"], bump)
            return
    now = _now()
    store.create(
        ev_rt,
        {
            "metadata": {"name": f"{meta['name']}.{time.time_ns():x}", "namespace": meta["namespace"]},
            "involvedObject": {
                "kind": obj.get("kind", "ReplicaSet"),
                "namespace": meta["namespace"],
                "name": meta["name"],
                "uid": meta["uid"],
                "apiVersion": obj.get("apiVersion", "apps/v1"),
                "resourceVersion": meta.get("resourceVersion", ""),
            },
            "reason": reason,
            "message": message,
            "source": {"component": source},
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
            "type": type_,
            "reportingComponent": source,
            "reportingInstance": "",
        },
        meta["namespace"],
    )


def _active(pod: dict) -> bool:
    return not pod["metadata"].get("deletionTimestamp") and (pod.get("status") or {}).get("phase") not in (
        "Succeeded",
        "Failed",
    )


def _deletion_rank(pod: dict) -> tuple:
    """Which pods a scale-down removes first: unscheduled, then not ready, then the newest."""
    scheduled = bool((pod.get("spec") or {}).get("nodeName"))
    return (scheduled, pod_ready(pod), _negated(pod["metadata"].get("creationTimestamp", "")))


def _negated(text: str) -> tuple:
    return tuple(-ord(c) for c in text)


def _condition(ctype: str, status: bool, reason: str, message: str, now: str, old: list[dict]) -> dict:
    prev = next((c for c in old if c.get("type") == ctype), None)
    value = "True" if status else "False"
    transition = prev.get("lastTransitionTime", now) if prev and prev.get("status") == value else now
    if (
        prev
        and prev.get("status") == value
        and prev.get("reason") == reason
        and prev.get("message") == message
    ):
        return prev
    return {
        "type": ctype,
        "status": value,
        "lastUpdateTime": now,
        "lastTransitionTime": transition,
        "reason": reason,
        "message": message,
    }


def deployment_status(deploy: dict, new_rs: dict | None, all_rs: list[dict], now: str) -> dict:
    spec = deploy.get("spec") or {}
    want = spec.get("replicas", 1)
    _, max_unavailable = rolling_params(deploy, want)
    if ((spec.get("strategy") or {}).get("type") or "RollingUpdate") == "Recreate":
        max_unavailable = want
    st = [r.get("status") or {} for r in all_rs]
    replicas = sum(s.get("replicas", 0) for s in st)
    ready = sum(s.get("readyReplicas", 0) for s in st)
    available = sum(s.get("availableReplicas", 0) for s in st)
    updated = ((new_rs or {}).get("status") or {}).get("replicas", 0)
    old = (deploy.get("status") or {}).get("conditions") or []
    is_available = available >= want - max_unavailable
    avail = _condition(
        "Available",
        is_available,
        "MinimumReplicasAvailable" if is_available else "MinimumReplicasUnavailable",
        "Deployment has minimum availability."
        if is_available
        else "Deployment does not have minimum availability.",
        now,
        old,
    )
    rs_name = (new_rs or {}).get("metadata", {}).get("name", "")
    new_status = (new_rs or {}).get("status") or {}
    done = (
        new_rs is not None
        and updated == want
        and new_status.get("availableReplicas", 0) == want
        and replicas == want
    )
    prev = next((c for c in old if c.get("type") == "Progressing"), None)
    if done:
        reason, message = "NewReplicaSetAvailable", f'ReplicaSet "{rs_name}" has successfully progressed.'
    elif prev is None or (
        prev.get("reason") == "NewReplicaSetCreated" and rs_name in prev.get("message", "")
    ):
        reason, message = "NewReplicaSetCreated", f'Created new replica set "{rs_name}"'
    else:
        reason, message = "ReplicaSetUpdated", f'ReplicaSet "{rs_name}" is progressing.'
    progressing = _condition("Progressing", True, reason, message, now, old)
    status: dict[str, Any] = {
        "observedGeneration": deploy["metadata"].get("generation", 1),
        "replicas": replicas,
        "updatedReplicas": updated,
        "readyReplicas": ready,
        "availableReplicas": available,
        "conditions": [avail, progressing],
    }
    if want - available > 0:
        status["unavailableReplicas"] = want - available
    for key in ("replicas", "updatedReplicas", "readyReplicas", "availableReplicas"):
        if not status[key]:
            del status[key]  # omitempty, as the API serves them
    return status


@dataclass
class Workloads:
    """What ``install_workloads`` added: the controllers and the Service address allocator."""

    controller: WorkloadController
    kubelet: Kubelet
    endpoints: EndpointsController
    allocator: ServiceAllocator


class WorkloadController:
    """The deployment and replicaset controllers."""

    def __init__(self, emulator: Emulator) -> None:
        self.emulator = emulator
        self._dirty: set[tuple[str, str, str]] = set()  # (kind, namespace, name)
        self._wake = asyncio.Event()
        # Owner uid -> names of its dependents, kept from watch events and our own creates (an informer's
        # index): listing a namespace per sync would cost O(objects) each time.
        self._children: dict[str, set[str]] = defaultdict(set)
        self._backoff: dict[tuple[str, str, str], float] = {}  # ReplicaSets whose pod creates fail

    def _index(self, obj: dict, deleted: bool = False) -> None:
        owner = controller_of(obj)
        if owner and owner.get("uid"):
            names = self._children[owner["uid"]]
            if deleted:
                names.discard(obj["metadata"]["name"])
                if not names:
                    del self._children[owner["uid"]]
            else:
                names.add(obj["metadata"]["name"])

    def _dependents(self, owner: dict, plural: str) -> list[dict]:
        meta = owner["metadata"]
        out = []
        for name in sorted(self._children.get(meta["uid"], ())):
            obj = self.emulator.store.try_get(self._rt(plural), meta["namespace"], name)
            if obj is not None and (controller_of(obj) or {}).get("uid") == meta["uid"]:
                out.append(obj)
        return out

    def _rt(self, plural: str) -> Any:
        if plural == "pods":
            return self.emulator.registry.get("", "v1", "pods")
        return self.emulator.registry.get("apps", "v1", plural)

    async def run(self, emulator: Emulator) -> None:
        self.emulator = emulator
        self._wake = asyncio.Event()
        store = emulator.store
        sub = store.subscribe()
        reader = asyncio.create_task(self._read(sub))
        try:
            for plural, kind in (("deployments", "Deployment"), ("replicasets", "ReplicaSet"), ("pods", "")):
                objs, _ = store.list(self._rt(plural))
                for obj in objs:
                    self._index(obj)
                    if kind:
                        self._dirty.add((kind, obj["metadata"]["namespace"], obj["metadata"]["name"]))
            self._wake.set()
            while True:
                await self._wake.wait()
                self._wake.clear()
                if reader.done():
                    reader.result()
                keys, self._dirty = self._dirty, set()
                # ReplicaSets first, so a Deployment sees its ReplicaSets' fresh status.
                for kind, ns, name in sorted(keys, key=lambda k: (k[0] != "ReplicaSet", k)):
                    try:
                        if kind == "ReplicaSet":
                            self.sync_replicaset(ns, name)
                        else:
                            self.sync_deployment(ns, name)
                    except Exception:
                        log.exception(
                            "workload sync failed", extra={"kind": kind, "namespace": ns, "name": name}
                        )
        finally:
            reader.cancel()
            sub.close()

    async def _read(self, sub: Any) -> None:
        async for event in sub:
            rt, obj = event.rt, event.object
            meta = obj.get("metadata") or {}
            ns = meta.get("namespace", "")
            owner = controller_of(obj)
            if (rt.group, rt.plural) in (("apps", "replicasets"), ("", "pods")):
                self._index(obj, deleted=event.type == "DELETED")
            if rt.group == "apps" and rt.plural == "deployments":
                self._dirty.add(("Deployment", ns, meta.get("name", "")))
            elif rt.group == "apps" and rt.plural == "replicasets":
                self._dirty.add(("ReplicaSet", ns, meta.get("name", "")))
                if owner and owner.get("kind") == "Deployment":
                    self._dirty.add(("Deployment", ns, owner["name"]))
            elif rt.group == "" and rt.plural == "pods":
                if not (owner and owner.get("kind") == "ReplicaSet"):
                    continue
                self._dirty.add(("ReplicaSet", ns, owner["name"]))
                # A Recreate rollout waits for old pods to be gone: their deletion concerns the Deployment.
                rs = self.emulator.store.try_get(self._rt("replicasets"), ns, owner["name"])
                deployment = controller_of(rs) if rs is not None else None
                if deployment and deployment.get("kind") == "Deployment":
                    self._dirty.add(("Deployment", ns, deployment["name"]))
            else:
                continue
            self._wake.set()

    # ---------------------------------------------------------------- replicaset controller

    def _owned_pods(self, rs: dict) -> list[dict]:
        return self._dependents(rs, "pods")

    def sync_replicaset(self, namespace: str, name: str) -> None:
        store = self.emulator.store
        rs = store.try_get(self._rt("replicasets"), namespace, name)
        if rs is None or rs["metadata"].get("deletionTimestamp"):
            return
        want = (rs.get("spec") or {}).get("replicas", 1)
        pods = self._owned_pods(rs)
        active = [p for p in pods if _active(p)]
        failure: ApiError | None = None
        if len(active) < want:
            for _ in range(want - len(active)):
                try:
                    pod = store.create(self._rt("pods"), new_pod(rs), namespace)
                except ApiError as err:  # e.g. refused by Pod Security admission
                    failure = err
                    self._failed_create(rs, err)
                    break
                self._index(pod)
                active.append(pod)
                log.info(
                    "pod created",
                    extra={"namespace": namespace, "replicaset": name, "pod": pod["metadata"]["name"]},
                )
        elif len(active) > want:
            for pod in sorted(active, key=_deletion_rank)[: len(active) - want]:
                try:
                    store.delete(self._rt("pods"), namespace, pod["metadata"]["name"])
                except ApiError as e:
                    if e.code != 404:
                        raise
                active.remove(pod)
                log.info(
                    "pod deleted",
                    extra={"namespace": namespace, "replicaset": name, "pod": pod["metadata"]["name"]},
                )
        labels = (((rs.get("spec") or {}).get("template") or {}).get("metadata") or {}).get("labels") or {}
        status: dict[str, Any] = {
            "replicas": len(active),
            "fullyLabeledReplicas": sum(
                1
                for p in active
                if all((p["metadata"].get("labels") or {}).get(k) == v for k, v in labels.items())
            ),
            "readyReplicas": sum(1 for p in active if pod_ready(p)),
            "availableReplicas": sum(1 for p in active if pod_ready(p)),
            "observedGeneration": rs["metadata"].get("generation", 1),
        }
        status = {k: v for k, v in status.items() if v or k == "replicas"}
        if failure is None:
            self._backoff.pop(("ReplicaSet", namespace, name), None)
        conditions = replica_failure(rs, failure, len(active) - want)
        if conditions:
            status["conditions"] = conditions
        if status != (rs.get("status") or {}):

            def apply(o: dict) -> None:
                o["status"] = status

            store.mutate(self._rt("replicasets"), namespace, name, apply)

    def _failed_create(self, rs: dict, err: ApiError) -> None:
        """What the replicaset controller does when a pod create fails: a FailedCreate Warning Event
        (counted when it repeats, as client-go's recorder does) and a retry with backoff."""
        meta = rs["metadata"]
        record_event(self.emulator, rs, "Warning", "FailedCreate", f"Error creating: {err.message}")
        key = ("ReplicaSet", meta["namespace"], meta["name"])
        delay = self._backoff[key] = min(self._backoff.get(key, 0.5) * 2, 30.0)

        def retry() -> None:
            self._dirty.add(key)
            self._wake.set()

        try:
            asyncio.get_running_loop().call_later(delay, retry)
        except RuntimeError:  # called outside the controller's loop: the next sync retries
            pass

    # ---------------------------------------------------------------- deployment controller

    def sync_deployment(self, namespace: str, name: str) -> None:
        store = self.emulator.store
        deploy = store.try_get(self._rt("deployments"), namespace, name)
        if deploy is None or deploy["metadata"].get("deletionTimestamp"):
            return
        spec = deploy.get("spec") or {}
        want = spec.get("replicas", 1)
        pod_hash = template_hash(
            spec.get("template") or {}, (deploy.get("status") or {}).get("collisionCount", 0)
        )
        owned = self._dependents(deploy, "replicasets")
        new_rs = next(
            (r for r in owned if (r["metadata"].get("labels") or {}).get(HASH_LABEL) == pod_hash), None
        )
        old_rs = [r for r in owned if r is not new_rs]
        revisions = [int((r["metadata"].get("annotations") or {}).get(REVISION, "0") or 0) for r in owned]
        if new_rs is None:
            revision = max(revisions, default=0) + 1
            new_rs = store.create(
                self._rt("replicasets"), new_replicaset(deploy, pod_hash, revision), namespace
            )
            self._index(new_rs)
            log.info(
                "replicaset created",
                extra={"namespace": namespace, "deployment": name, "replicaset": new_rs["metadata"]["name"]},
            )
            owned.append(new_rs)
        elif old_rs and int((new_rs["metadata"].get("annotations") or {}).get(REVISION, "0")) < max(
            revisions
        ):
            # A rollback to an older template: that ReplicaSet becomes the newest revision again.
            revision = max(revisions) + 1
            self._annotate(new_rs, {REVISION: str(revision)})
        strategy = (spec.get("strategy") or {}).get("type") or "RollingUpdate"
        if strategy == "Recreate":
            scaled = False
            for r in old_rs:
                if (r.get("spec") or {}).get("replicas", 0) > 0:
                    self._scale(r, 0)
                    scaled = True
            old_pods_left = any(self._owned_pods(r) for r in old_rs)
            if not scaled and not old_pods_left:
                self._scale(new_rs, want)
        else:
            surge, max_unavailable = rolling_params(deploy, want)
            self._scale(new_rs, want)
            new_fresh = (
                store.try_get(self._rt("replicasets"), namespace, new_rs["metadata"]["name"]) or new_rs
            )
            new_available = (new_fresh.get("status") or {}).get("availableReplicas", 0)
            old_total = sum((r.get("spec") or {}).get("replicas", 0) for r in old_rs)
            # Keep at least want - maxUnavailable pods available while old ones go away.
            allowed_old = max(0, min(old_total, want - max_unavailable - new_available))
            for r in sorted(old_rs, key=lambda r: r["metadata"]["name"]):
                current = (r.get("spec") or {}).get("replicas", 0)
                keep = min(current, allowed_old)
                allowed_old -= keep
                if keep != current:
                    self._scale(r, keep)
            del surge
        fresh_rs = [store.try_get(self._rt("replicasets"), namespace, r["metadata"]["name"]) for r in owned]
        fresh_rs = [r for r in fresh_rs if r is not None]
        new_fresh = next((r for r in fresh_rs if r["metadata"]["name"] == new_rs["metadata"]["name"]), None)
        status = deployment_status(deploy, new_fresh, fresh_rs, _now())
        if "collisionCount" in (deploy.get("status") or {}):
            status["collisionCount"] = deploy["status"]["collisionCount"]
        revision_now = ((new_fresh or new_rs)["metadata"].get("annotations") or {}).get(REVISION)
        deploy_rev = (deploy["metadata"].get("annotations") or {}).get(REVISION)
        if revision_now and deploy_rev != revision_now:
            self._annotate(deploy, {REVISION: revision_now}, plural="deployments")
        if status != (deploy.get("status") or {}):

            def apply(o: dict) -> None:
                o["status"] = status

            store.mutate(self._rt("deployments"), namespace, name, apply)

    def _scale(self, rs: dict, replicas: int) -> None:
        if (rs.get("spec") or {}).get("replicas") == replicas:
            return

        def apply(o: dict) -> None:
            o.setdefault("spec", {})["replicas"] = replicas

        self.emulator.store.mutate(
            self._rt("replicasets"), rs["metadata"]["namespace"], rs["metadata"]["name"], apply
        )
        log.info(
            "replicaset scaled",
            extra={
                "namespace": rs["metadata"]["namespace"],
                "replicaset": rs["metadata"]["name"],
                "replicas": replicas,
            },
        )

    def _annotate(self, obj: dict, annotations: dict, plural: str = "replicasets") -> None:
        def apply(o: dict) -> None:
            o["metadata"].setdefault("annotations", {}).update(annotations)

        self.emulator.store.mutate(
            self._rt(plural), obj["metadata"]["namespace"], obj["metadata"]["name"], apply
        )


def install_workloads(
    emulator: Emulator,
    *,
    pod_runner: PodRunner | None = None,
    pod_start_delay: float = 0.05,
    lb_ingress: bool = True,
) -> Workloads:
    """Add the deployment/replicaset controllers, the kubelet and the Service/Endpoints controller."""
    allocator = ServiceAllocator()
    workloads = Workloads(
        controller=WorkloadController(emulator),
        kubelet=Kubelet(emulator, pod_runner=pod_runner, start_delay=pod_start_delay),
        endpoints=EndpointsController(emulator, allocator, lb_ingress=lb_ingress),
        allocator=allocator,
    )
    # kube-apiserver's part: Service IPs on create/update, graceful pod deletion finished by the kubelet.
    emulator.store.admission_hooks.setdefault(("", "services"), []).append(allocator.admit)
    emulator.store.graceful_pod_deletion = True
    emulator.add_controller(workloads.controller)
    emulator.add_controller(workloads.kubelet)
    emulator.add_controller(workloads.endpoints)
    return workloads

"""A fake scheduler + kubelet for one node: pods get a node, start, report Running/Ready with a podIP.

By default nothing runs: a pod becomes Running and Ready ``start_delay`` seconds after it is scheduled,
with an IP from 10.244.0.0/17. A ``PodRunner`` makes pods real (the demo starts each kbmc pod as a local
process):

    class MyRunner:
        async def start(self, pod: dict, events: PodEvents) -> PodHandle: ...   # returns once started
        async def stop(self, handle: PodHandle, grace_seconds: float) -> None: ...

The kubelet then reports the runner's IP; a pod with a ``readinessProbe`` is Ready only once the runner
calls ``events.ready(True)`` (and not ready again after ``events.ready(False)``); ``events.exited(code)``
reports the process ending (restartPolicy decides: Always/OnFailure restart it, counting ``restartCount``).
Deleting a pod is graceful: the kubelet stops the runner (``deletionGracePeriodSeconds``, else the pod's
``terminationGracePeriodSeconds``, 30 by default) and then removes the pod. ``PodEvents`` methods may be
called from any thread. A runner that cannot have a pod's image raises ``ImagePullError`` from
``start``: the pod shows ``ErrImagePull`` and ``ImagePullBackOff`` and is retried, as with a kubelet;
``StartPending`` (a missing Secret) leaves it ``ContainerCreating`` or ``CreateContainerConfigError``.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import ipaddress
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from vmbmc_devcluster.emulator.errors import ApiError

if TYPE_CHECKING:
    from vmbmc_devcluster.emulator.emulator import Emulator

log = logging.getLogger("vmbmc.emulator.kubelet")

POD_NETWORK = ipaddress.ip_network("10.244.0.0/17")
NODE_NAME = "node01"
HOST_IP = "172.18.0.2"


@dataclass
class PodHandle:
    """What a runner returns for a started pod: its IP and whatever the runner needs to stop it."""

    ip: str
    data: Any = None


class PodEvents:
    """Callbacks a runner uses to report readiness and exit; safe to call from any thread."""

    def __init__(
        self, loop: asyncio.AbstractEventLoop, kubelet: Kubelet, key: tuple[str, str], uid: str
    ) -> None:
        self._loop, self._kubelet, self._key, self._uid = loop, kubelet, key, uid

    def ready(self, ready: bool) -> None:
        self._loop.call_soon_threadsafe(self._kubelet._on_ready, self._key, self._uid, ready)

    def exited(self, code: int) -> None:
        self._loop.call_soon_threadsafe(self._kubelet._on_exit, self._key, self._uid, code)


class ImagePullError(Exception):
    """Raised by a runner's `start` when it cannot have the pod's image (as kind's node has only the
    images loaded into it): the kubelet reports ErrImagePull, then ImagePullBackOff, and tries again
    with a growing back-off, as a kubelet does."""

    def __init__(self, image: str, message: str) -> None:
        super().__init__(message)
        self.image = image


class StartPending(Exception):
    """Raised by a runner's `start` when what the container needs does not exist yet: a volume's Secret
    or ConfigMap (`ContainerCreating`, a kubelet's FailedMount) or one its env names
    (`CreateContainerConfigError`). The container waits with that reason and the kubelet tries again."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class PodRunner(Protocol):
    async def start(self, pod: dict, events: PodEvents) -> PodHandle: ...

    async def stop(self, handle: PodHandle, grace_seconds: float) -> None: ...


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _cond(ctype: str, status: bool, now: str) -> dict:
    return {
        "type": ctype,
        "status": "True" if status else "False",
        "lastProbeTime": None,
        "lastTransitionTime": now,
    }


def qos_class(pod: dict) -> str:
    containers = (pod.get("spec") or {}).get("containers") or []
    resources = [c.get("resources") or {} for c in containers]
    if not any(r.get("requests") or r.get("limits") for r in resources):
        return "BestEffort"
    guaranteed = all(
        (r.get("limits") or {}).get(k)
        and (r.get("requests") or r.get("limits") or {}).get(k) == r["limits"][k]
        for r in resources
        for k in ("cpu", "memory")
    )
    return "Guaranteed" if guaranteed else "Burstable"


def container_id(pod_uid: str, name: str, restarts: int) -> str:
    return "containerd://" + hashlib.sha256(f"{pod_uid}/{name}/{restarts}".encode()).hexdigest()


def running_status(pod: dict, ip: str, *, ready: bool, restarts: int, now: str, started_at: str) -> dict:
    """status of a pod whose containers all run."""
    old = pod.get("status") or {}
    uid = pod["metadata"].get("uid", "")
    statuses = []
    for c in (pod.get("spec") or {}).get("containers") or []:
        image = c.get("image", "")
        statuses.append(
            {
                "name": c.get("name"),
                "image": image,
                "imageID": f"{image.split(':')[0]}@sha256:" + hashlib.sha256(image.encode()).hexdigest(),
                "containerID": container_id(uid, c.get("name", ""), restarts),
                "ready": ready,
                "started": True,
                "restartCount": restarts,
                "state": {"running": {"startedAt": started_at}},
                "lastState": {},
            }
        )
    conds_old = {c.get("type"): c for c in old.get("conditions") or []}

    def keep(ctype: str, value: bool) -> dict:
        prev = conds_old.get(ctype)
        if prev is not None and prev.get("status") == ("True" if value else "False"):
            return prev
        return _cond(ctype, value, now)

    return {
        "phase": "Running",
        "conditions": [
            keep("PodReadyToStartContainers", True),
            keep("Initialized", True),
            keep("Ready", ready),
            keep("ContainersReady", ready),
            keep("PodScheduled", True),
        ],
        "hostIP": HOST_IP,
        "hostIPs": [{"ip": HOST_IP}],
        "podIP": ip,
        "podIPs": [{"ip": ip}],
        "startTime": old.get("startTime") or started_at,
        "containerStatuses": statuses,
        "qosClass": qos_class(pod),
    }


def has_readiness_probe(pod: dict) -> bool:
    return any(c.get("readinessProbe") for c in (pod.get("spec") or {}).get("containers") or [])


@dataclass
class _Pod:
    uid: str
    handle: PodHandle | None = None
    task: asyncio.Task | None = None
    ready: bool = False
    restarts: int = 0
    started_at: str = ""
    stopping: bool = False
    pull_failures: int = 0
    ip: str = ""
    extra: dict = field(default_factory=dict)


class Kubelet:
    """Scheduler + kubelet of the single node ``node01``."""

    def __init__(
        self, emulator: Emulator, *, pod_runner: PodRunner | None = None, start_delay: float = 0.05
    ) -> None:
        self.emulator = emulator
        self.runner = pod_runner
        self.start_delay = start_delay
        self._pods: dict[tuple[str, str], _Pod] = {}
        self._next_ip = 10
        self._dirty: set[tuple[str, str]] = set()
        self._wake = asyncio.Event()
        self._tasks: set[asyncio.Task] = set()
        self._shut_down = False

    @property
    def _rt(self) -> Any:
        return self.emulator.registry.get("", "v1", "pods")

    def _alloc_ip(self) -> str:
        ip = str(POD_NETWORK[self._next_ip % (POD_NETWORK.num_addresses - 2) + 1])
        self._next_ip += 1
        return ip

    async def run(self, emulator: Emulator) -> None:
        self.emulator = emulator
        self._wake = asyncio.Event()
        store = emulator.store
        sub = store.subscribe(self._rt)
        reader = asyncio.create_task(self._read(sub))
        try:
            pods, _ = store.list(self._rt)
            for pod in pods:
                self._dirty.add((pod["metadata"]["namespace"], pod["metadata"]["name"]))
            self._wake.set()
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
                        log.exception("kubelet sync failed", extra={"namespace": key[0], "pod": key[1]})
        finally:
            reader.cancel()
            sub.close()
            await self._stop_all()

    async def stop_pods(self) -> None:
        """Stop every pod's containers (a node shutting down), before the API server goes, so no
        container's watch is cut by it. The node starts nothing afterwards."""
        self._shut_down = True
        await self._stop_all()

    async def _stop_all(self) -> None:
        for state in self._pods.values():
            state.stopping = True  # a container exiting now is not restarted
        stops = []
        for key, state in list(self._pods.items()):
            if state.task is not None:
                state.task.cancel()
            if self.runner is not None and state.handle is not None:
                stops.append(self._stop_container(key, state.handle))
        await asyncio.gather(*stops)  # all at once: a node of hundreds of pods stops within seconds
        self._pods.clear()

    async def _stop_container(self, key: tuple[str, str], handle: PodHandle, grace: float = 0) -> None:
        assert self.runner is not None
        try:
            await asyncio.wait_for(self.runner.stop(handle, grace), grace + 10)
        except Exception as err:  # stopping anyway: the pod runner's last resort kills what is left
            log.warning("pod %s/%s did not stop: %s", *key, err or type(err).__name__)

    async def _read(self, sub: Any) -> None:
        async for event in sub:
            meta = event.object.get("metadata") or {}
            key = (meta.get("namespace", ""), meta.get("name", ""))
            if event.type == "DELETED":
                state = self._pods.get(key)
                if state is not None and state.uid == meta.get("uid"):
                    self._pods.pop(key, None)
                    self._spawn_stop(key, state, 0)
                continue
            self._dirty.add(key)
            self._wake.set()

    def _enqueue(self, key: tuple[str, str]) -> None:
        self._dirty.add(key)
        self._wake.set()

    def sync(self, namespace: str, name: str) -> None:
        store = self.emulator.store
        pod = store.try_get(self._rt, namespace, name)
        key = (namespace, name)
        if pod is None:
            return
        meta, spec = pod["metadata"], pod.get("spec") or {}
        state = self._pods.get(key)
        if state is not None and state.uid != meta.get("uid"):
            self._pods.pop(key, None)
            self._spawn_stop(key, state, 0)
            state = None
        if meta.get("deletionTimestamp"):
            self._terminate(key, pod, state)
            return
        if not spec.get("nodeName"):
            self._schedule(pod)
            return
        if spec["nodeName"] != NODE_NAME:
            return
        phase = (pod.get("status") or {}).get("phase")
        if phase in ("Succeeded", "Failed"):
            return
        if state is None and not self._shut_down:
            state = _Pod(uid=meta.get("uid", ""))
            self._pods[key] = state
            state.task = asyncio.get_running_loop().create_task(self._start(key, pod, state))

    def _schedule(self, pod: dict) -> None:
        now = _now()

        def bind(o: dict) -> None:
            o.setdefault("spec", {})["nodeName"] = NODE_NAME
            status = o.setdefault("status", {})
            status["phase"] = "Pending"
            status["conditions"] = [_cond("PodScheduled", True, now)]
            status["qosClass"] = qos_class(o)

        self.emulator.store.mutate(self._rt, pod["metadata"]["namespace"], pod["metadata"]["name"], bind)

    async def _start(self, key: tuple[str, str], pod: dict, state: _Pod) -> None:
        try:
            if self.runner is None:
                await asyncio.sleep(self.start_delay)
                state.ip = state.ip or self._alloc_ip()
                state.ready = True
            else:
                events = PodEvents(asyncio.get_running_loop(), self, key, state.uid)
                state.handle = await self.runner.start(pod, events)
                state.ip = state.handle.ip
                state.ready = state.ready or not has_readiness_probe(pod)
            state.started_at = _now()
            if self._pods.get(key) is not state or state.stopping:
                if state.handle is not None and self.runner is not None:
                    await self.runner.stop(state.handle, 0)
                return
            self._write_running(key, state)
            log.info("pod started", extra={"namespace": key[0], "pod": key[1], "ip": state.ip})
        except asyncio.CancelledError:
            raise
        except ImagePullError as e:
            log.info("image pull failed", extra={"namespace": key[0], "pod": key[1], "image": e.image})
            self._write_waiting(key, state, "ErrImagePull", str(e))
            state.task = asyncio.get_running_loop().create_task(self._pull_backoff(key, pod, state, e))
        except StartPending as e:
            log.info("container waits", extra={"namespace": key[0], "pod": key[1], "error": str(e)})
            # ContainerCreating carries no message in the pod's status (the Event says why)
            self._write_waiting(key, state, e.reason, "" if e.reason == "ContainerCreating" else str(e))
            state.task = asyncio.get_running_loop().create_task(self._retry_mount(key, pod, state))
        except Exception as e:  # the pod's status says why (RunContainerError), as a kubelet's does
            log.warning("pod %s/%s failed to start: %s", *key, e or type(e).__name__)
            self._write_waiting(key, state, "RunContainerError", str(e))

    async def _retry_mount(self, key: tuple[str, str], pod: dict, state: _Pod) -> None:
        await asyncio.sleep(1.0)  # a kubelet retries with a back-off (up to 2 min for mounts): compressed
        if self._pods.get(key) is state and not state.stopping:
            await self._start(key, pod, state)

    async def _pull_backoff(self, key: tuple[str, str], pod: dict, state: _Pod, err: ImagePullError) -> None:
        state.pull_failures += 1
        await asyncio.sleep(0.5)
        if self._pods.get(key) is not state or state.stopping:
            return
        message = f'Back-off pulling image "{err.image}": ErrImagePull: {err}'
        self._write_waiting(key, state, "ImagePullBackOff", message)
        await asyncio.sleep(min(10.0, 0.5 * 2 ** min(state.pull_failures, 5)))  # compressed, as restarts
        if self._pods.get(key) is state and not state.stopping:
            await self._start(key, pod, state)

    def _write_running(self, key: tuple[str, str], state: _Pod) -> None:
        now = _now()

        def apply(o: dict) -> None:
            if o["metadata"].get("uid") != state.uid or o["metadata"].get("deletionTimestamp"):
                return
            o["status"] = running_status(
                o, state.ip, ready=state.ready, restarts=state.restarts, now=now, started_at=state.started_at
            )

        self.emulator.store.mutate(self._rt, key[0], key[1], apply)

    def _write_waiting(self, key: tuple[str, str], state: _Pod, reason: str, message: str) -> None:
        """The containers did not start: Pending, each container waiting with `reason`."""
        now = _now()

        def apply(o: dict) -> None:
            if o["metadata"].get("uid") != state.uid:
                return
            status = o.setdefault("status", {})
            status["phase"] = "Pending"
            names = [c.get("name") for c in (o.get("spec") or {}).get("containers") or []]
            unready = f"containers with unready status: [{' '.join(str(n) for n in names)}]"
            conds = {c.get("type"): c for c in status.get("conditions") or []}
            for ctype, value in (("Initialized", True), ("Ready", False), ("ContainersReady", False)):
                if (conds.get(ctype) or {}).get("status") != ("True" if value else "False"):
                    conds[ctype] = _cond(ctype, value, now)
                    if not value:
                        conds[ctype].update(reason="ContainersNotReady", message=unready)
            status["conditions"] = list(conds.values())
            waiting = {"reason": reason, "message": message} if message else {"reason": reason}
            status["containerStatuses"] = [
                {
                    "name": c.get("name"),
                    "image": c.get("image", ""),
                    "ready": False,
                    "started": False,
                    "restartCount": state.restarts,
                    "state": {"waiting": waiting},
                    "lastState": {},
                }
                for c in (o.get("spec") or {}).get("containers") or []
            ]

        self.emulator.store.mutate(self._rt, key[0], key[1], apply)

    def _on_ready(self, key: tuple[str, str], uid: str, ready: bool) -> None:
        state = self._pods.get(key)
        if state is None or state.uid != uid or state.ready == ready:
            return
        state.ready = ready
        if state.started_at and not state.stopping:
            self._write_running(key, state)
            log.info("pod readiness", extra={"namespace": key[0], "pod": key[1], "ready": ready})

    def _on_exit(self, key: tuple[str, str], uid: str, code: int) -> None:
        state = self._pods.get(key)
        if state is None or state.uid != uid or state.stopping:
            return
        pod = self.emulator.store.try_get(self._rt, *key)
        if pod is None:
            return
        policy = (pod.get("spec") or {}).get("restartPolicy", "Always")
        log.info("pod container exited", extra={"namespace": key[0], "pod": key[1], "code": code})
        if policy == "Always" or (policy == "OnFailure" and code != 0):
            state.restarts += 1
            state.ready = False
            state.handle = None
            state.task = asyncio.get_running_loop().create_task(self._restart(key, pod, state))
            return
        final = "Succeeded" if code == 0 else "Failed"
        now = _now()

        def apply(o: dict) -> None:
            status = o.setdefault("status", {})
            status["phase"] = final
            for c in status.get("conditions") or []:
                if c.get("type") in ("Ready", "ContainersReady"):
                    c.update(status="False", reason="PodCompleted", lastTransitionTime=now)
            for cs in status.get("containerStatuses") or []:
                started = ((cs.get("state") or {}).get("running") or {}).get("startedAt")
                cs.update(
                    ready=False,
                    started=False,
                    state={
                        "terminated": {
                            "exitCode": code,
                            "reason": "Completed" if code == 0 else "Error",
                            "startedAt": started,
                            "finishedAt": now,
                        }
                    },
                )

        self.emulator.store.mutate(self._rt, key[0], key[1], apply)

    async def _restart(self, key: tuple[str, str], pod: dict, state: _Pod) -> None:
        await asyncio.sleep(min(10.0, 0.5 * 2 ** min(state.restarts, 5)))  # CrashLoopBackOff, compressed
        if self._pods.get(key) is state and not state.stopping:
            await self._start(key, pod, state)

    def _terminate(self, key: tuple[str, str], pod: dict, state: _Pod | None) -> None:
        if state is not None and state.stopping:
            return
        meta = pod["metadata"]
        grace = meta.get("deletionGracePeriodSeconds")
        if grace is None:
            grace = (pod.get("spec") or {}).get("terminationGracePeriodSeconds", 30)
        if meta.get("finalizers"):
            # Only the finalizers' owners can finish this deletion; stop the containers meanwhile.
            if state is not None:
                self._pods.pop(key, None)
                self._spawn_stop(key, state, float(grace))
            return
        if state is None:
            self._remove(key, meta.get("uid"))
            return
        state.stopping = True
        self._background(self._stop_then_remove(key, state, float(grace)))

    async def _stop_then_remove(self, key: tuple[str, str], state: _Pod, grace: float) -> None:
        await self._stop(key, state, grace)
        if self._pods.get(key) is state:
            self._pods.pop(key, None)
        self._remove(key, state.uid)

    def _remove(self, key: tuple[str, str], uid: str | None) -> None:
        try:
            self.emulator.store.delete(
                self._rt, key[0], key[1], grace_period_seconds=0, preconditions={"uid": uid} if uid else None
            )
        except ApiError as e:
            if e.code not in (404, 409):
                raise
        log.info("pod removed", extra={"namespace": key[0], "pod": key[1]})

    def _spawn_stop(self, key: tuple[str, str], state: _Pod, grace: float) -> None:
        state.stopping = True
        self._background(self._stop(key, state, grace))

    def _background(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _stop(self, key: tuple[str, str], state: _Pod, grace: float) -> None:
        if state.task is not None and not state.task.done():
            state.task.cancel()
        if self.runner is not None and state.handle is not None:
            await self._stop_container(key, state.handle, grace)

"""A fake KubeVirt inside the emulator: the kubevirt.io/v1 types, virt-api's lifecycle subresources and a
virt-controller/virt-handler stand-in that drives VirtualMachines and their VirtualMachineInstances.

    kv = install_kubevirt(emulator, start_delay=0.3, stop_delay=0.3, grace_scale=0.01)

registers ``virtualmachines`` (vm/vms) and ``virtualmachineinstances`` (vmi/vmis), the API group
``subresources.kubevirt.io/v1`` with PUT ``virtualmachines/{start,stop,restart}`` (202, empty body) and
``virtualmachineinstances/{pause,unpause}`` (200, empty body), and adds ``kv`` as an emulator controller.
The decisions are KubeVirt's (``kubevirt_state``); this module applies them to the store and keeps time:

- a new VMI goes Pending → Scheduling → Scheduled → Running, one step every ``start_delay / 3`` seconds;
- a deleted VMI (its finalizers keep it, with ``deletionTimestamp``) shuts down after
  ``min(stop_delay, terminationGracePeriodSeconds * grace_scale)`` seconds (0 with a grace period of 0),
  then goes ``Succeeded`` and disappears.

Test hooks (synchronous: call them on the emulator loop, e.g. through ``EmulatorThread.call``):
``guest_shutdown``, ``vmi_fail``, ``virtctl``, ``set_delays``, ``fail_next``.
"""

from __future__ import annotations

import asyncio
import copy
import datetime as dt
import ipaddress
import logging
from collections import defaultdict, deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from vmbmc_devcluster.emulator import kubevirt_state as ks
from vmbmc_devcluster.emulator.errors import ApiError
from vmbmc_devcluster.emulator.registry import ResourceType

if TYPE_CHECKING:
    from vmbmc_devcluster.emulator.emulator import Emulator

log = logging.getLogger("vmbmc.emulator.kubevirt")

SUBRESOURCE_GROUP = "subresources.kubevirt.io"
VM_ACTIONS = ("start", "stop", "restart")
VMI_ACTIONS = ("pause", "unpause")
ACTIONS = VM_ACTIONS + VMI_ACTIONS
VMI_NETWORK = ipaddress.ip_network("10.244.128.0/17")  # virt-launcher pod IPs, apart from other pods'

_PRESERVE = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
VM_SCHEMA: dict = {
    "type": "object",
    "required": ["spec"],
    "properties": {
        "apiVersion": {"type": "string"},
        "kind": {"type": "string"},
        "metadata": {"type": "object"},
        "spec": {
            "type": "object",
            "required": ["template"],
            "x-kubernetes-preserve-unknown-fields": True,
            "properties": {
                "running": {"type": "boolean"},
                "runStrategy": {"type": "string"},
                "template": _PRESERVE,
            },
        },
        "status": {
            "type": "object",
            "x-kubernetes-preserve-unknown-fields": True,
            "properties": {
                "printableStatus": {"type": "string"},
                "ready": {"type": "boolean"},
                "created": {"type": "boolean"},
                "runStrategy": {"type": "string"},
                "conditions": {"type": "array", "items": _PRESERVE},
                "stateChangeRequests": {"type": "array", "items": _PRESERVE},
            },
        },
    },
}
VMI_SCHEMA: dict = {
    "type": "object",
    "required": ["spec"],
    "properties": {
        "apiVersion": {"type": "string"},
        "kind": {"type": "string"},
        "metadata": {"type": "object"},
        "spec": _PRESERVE,
        "status": _PRESERVE,
    },
}

_AGE = {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}
_READY = {"name": "Ready", "type": "string", "jsonPath": ".status.conditions[?(@.type=='Ready')].status"}
VM_RT = ResourceType(
    group=ks.GROUP,
    version="v1",
    plural="virtualmachines",
    kind="VirtualMachine",
    namespaced=True,
    singular="virtualmachine",
    short_names=("vm", "vms"),
    categories=("all",),
    subresources=frozenset({"status"}),
    schema=VM_SCHEMA,
    custom=True,
    printer_columns=(
        _AGE,
        {
            "name": "Status",
            "type": "string",
            "description": "Human Readable Status",
            "jsonPath": ".status.printableStatus",
        },
        _READY,
    ),
)
VMI_RT = ResourceType(
    group=ks.GROUP,
    version="v1",
    plural="virtualmachineinstances",
    kind="VirtualMachineInstance",
    namespaced=True,
    singular="virtualmachineinstance",
    short_names=("vmi", "vmis"),
    categories=("all",),
    subresources=frozenset({"status"}),
    schema=VMI_SCHEMA,
    custom=True,
    printer_columns=(
        _AGE,
        {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
        {"name": "IP", "type": "string", "jsonPath": ".status.interfaces[0].ipAddress"},
        {"name": "NodeName", "type": "string", "jsonPath": ".status.nodeName"},
        _READY,
        {
            "name": "Live-Migratable",
            "type": "string",
            "priority": 1,
            "jsonPath": ".status.conditions[?(@.type=='LiveMigratable')].status",
        },
        {
            "name": "Paused",
            "type": "string",
            "priority": 1,
            "jsonPath": ".status.conditions[?(@.type=='Paused')].status",
        },
    ),
)

_REASONS = {
    400: "BadRequest",
    403: "Forbidden",
    404: "NotFound",
    409: "Conflict",
    422: "Invalid",
    429: "TooManyRequests",
    500: "InternalError",
    503: "ServiceUnavailable",
    504: "Timeout",
}
# Go field types of the option structs, for virt-api's "Can not unmarshal Request body" answers.
_OPTION_FIELDS: dict[str, dict[str, tuple[type, str]]] = {
    "start": {"paused": (bool, "bool"), "dryRun": (list, "[]string")},
    "stop": {"gracePeriod": (int, "int64"), "dryRun": (list, "[]string")},
    "restart": {"gracePeriodSeconds": (int, "int64"), "dryRun": (list, "[]string")},
    "pause": {"dryRun": (list, "[]string")},
    "unpause": {"dryRun": (list, "[]string")},
}
_OPTION_STRUCTS = {
    "start": "StartOptions",
    "stop": "StopOptions",
    "restart": "RestartOptions",
    "pause": "PauseOptions",
    "unpause": "UnpauseOptions",
}


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _api_error(refusal: ks.Refusal) -> ApiError:
    return ApiError(refusal.code, refusal.reason, refusal.message, details=refusal.details)


def _json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return "null"


def parse_options(action: str, body: Any) -> dict:
    """Decode a subresource body like virt-api's YAML-or-JSON decoder into the option struct."""
    if body is None or body == b"" or body == "":
        return {}
    struct = _OPTION_STRUCTS[action]
    if not isinstance(body, dict):
        raise ApiError(
            400,
            "BadRequest",
            "Can not unmarshal Request body to struct, error: json: cannot unmarshal "
            f"{_json_type(body)} into Go value of type v1.{struct}",
        )
    out: dict = {}
    for key, value in body.items():
        spec = _OPTION_FIELDS[action].get(key)
        if spec is None or value is None:
            continue  # encoding/json ignores unknown fields and nulls
        want, go_type = spec
        ok = isinstance(value, want) and not (want is int and isinstance(value, bool))
        if want is list:
            ok = ok and all(isinstance(v, str) for v in value)
        if not ok:
            raise ApiError(
                400,
                "BadRequest",
                "Can not unmarshal Request body to struct, error: json: cannot unmarshal "
                f"{_json_type(value)} into Go struct field {struct}.{key} of type {go_type}",
            )
        out[key] = value
    return out


class KubeVirt:
    """The fake KubeVirt: subresource handlers, the controller loop and the test hooks."""

    def __init__(
        self,
        emulator: Emulator,
        *,
        start_delay: float = 0.3,
        stop_delay: float = 0.3,
        grace_scale: float = 0.01,
        api_delay: float = 0.0,
        node_name: str = "node01",
    ) -> None:
        self.emulator = emulator
        self.start_delay = start_delay
        self.stop_delay = stop_delay
        self.grace_scale = grace_scale
        self.api_delay = api_delay
        self.node_name = node_name
        self._failures: dict[str, deque[tuple[int, str]]] = defaultdict(deque)
        self._templates: dict[str, dict] = {}  # VMI uid -> VM template spec it was started from
        self._since: dict[str, float] = {}  # VMI uid -> loop time of its last phase step
        self._deadlines: dict[str, float] = {}  # VMI uid -> loop time its shutdown completes
        self._ips: dict[str, str] = {}
        self._next_ip = 10
        self._dirty: set[tuple[str, str]] = set()
        self._wake: asyncio.Event | None = None
        self._timers: dict[tuple[str, str], asyncio.TimerHandle] = {}
        self._written: dict[tuple[str, str], tuple[dict, dict]] = {}  # VM -> (status computed, status stored)

    # ---------------------------------------------------------------- test hooks

    def set_delays(
        self,
        *,
        start: float | None = None,
        stop: float | None = None,
        grace_scale: float | None = None,
        api: float | None = None,
    ) -> None:
        """Boot time, guest shutdown time, grace-period scale, and virt-api's answer latency (seconds)."""
        if api is not None:
            self.api_delay = api
        if start is not None:
            self.start_delay = start
        if stop is not None:
            self.stop_delay = stop
        if grace_scale is not None:
            self.grace_scale = grace_scale

    def fail_next(self, action: str, code: int = 500, message: str | None = None, *, count: int = 1) -> None:
        """The next ``count`` calls of ``action`` (start/stop/restart/pause/unpause) fail with ``code``."""
        if action not in ACTIONS:
            raise ValueError(f"unknown action {action!r}")
        text = message or f"injected failure of {action}"
        for _ in range(count):
            self._failures[action].append((code, text))

    def virtctl(self, namespace: str, name: str, action: str, **options: Any) -> int:
        """``virtctl <action>`` from outside the BMC: the same code path as the HTTP subresource.

        Returns the HTTP status code; raises ``ApiError`` with KubeVirt's answer on refusal."""
        return self.call(action, namespace, name, options, source="virtctl")

    def guest_shutdown(self, namespace: str, name: str) -> None:
        """The guest powers itself off: the VMI goes Succeeded (runStrategy decides what follows)."""
        self._end(namespace, name, ks.SUCCEEDED)

    def vmi_fail(self, namespace: str, name: str) -> None:
        """The VMI fails (launcher crash, node loss): phase Failed."""
        self._end(namespace, name, ks.FAILED)

    def _end(self, namespace: str, name: str, final_phase: str) -> None:
        vmi = self.store.try_get(VMI_RT, namespace, name)
        if vmi is None or ks.is_final(vmi):
            raise LookupError(f"no active VirtualMachineInstance {namespace}/{name}")
        now = _now()
        self.store.mutate(VMI_RT, namespace, name, lambda o: ks.end_vmi(o, final_phase, now))
        log.info("vmi %s", final_phase, extra={"namespace": namespace, "vmi": name, "phase": final_phase})

    # ---------------------------------------------------------------- virt-api

    @property
    def store(self) -> Any:
        return self.emulator.store

    def call(self, action: str, namespace: str, name: str, body: Any, *, source: str = "api") -> int:
        """Run one subresource call; return its HTTP code or raise ``ApiError``."""
        try:
            code = self._call(action, namespace, name, body)
        except ApiError as e:
            log.info(
                "subresource %s refused",
                action,
                extra={
                    "namespace": namespace,
                    "vm": name,
                    "action": action,
                    "source": source,
                    "code": e.code,
                },
            )
            raise
        log.info(
            "subresource %s",
            action,
            extra={"namespace": namespace, "vm": name, "action": action, "source": source, "code": code},
        )
        return code

    def _call(self, action: str, namespace: str, name: str, body: Any) -> int:
        if action not in ACTIONS:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        options = parse_options(action, body)
        if self._failures[action]:
            code, message = self._failures[action].popleft()
            raise ApiError(code, _REASONS.get(code, "InternalError"), message)
        vmi = self.store.try_get(VMI_RT, namespace, name)
        try:
            if action in VMI_ACTIONS:
                return self._pause(action, namespace, name, vmi, options)
            vm = self.store.try_get(VM_RT, namespace, name)
            if action == "restart":
                plan = ks.plan_restart(vm, vmi, options, name)
            elif vm is None:
                raise ks.not_found("virtualmachine", name)
            elif action == "start":
                plan = ks.plan_start(vm, vmi, options)
            else:
                plan = ks.plan_stop(vm, vmi, options)
        except ks.RefusalAfterPatch as refusal:
            if refusal.vmi_grace is not None:
                self._set_grace(namespace, name, refusal.vmi_grace)
            raise _api_error(refusal) from None
        except ks.Refusal as refusal:
            raise _api_error(refusal) from None
        if plan.vmi_grace is not None:
            self._set_grace(namespace, name, plan.vmi_grace)
        if plan.vm is not None:
            new = plan.vm

            def apply(o: dict) -> None:
                o["spec"] = new.get("spec") or {}
                o["status"] = new.get("status") or {}

            self.store.mutate(VM_RT, namespace, name, apply)
        return 202

    def _set_grace(self, namespace: str, name: str, grace: int) -> None:
        def apply(o: dict) -> None:
            o.setdefault("spec", {})["terminationGracePeriodSeconds"] = grace

        self.store.mutate(VMI_RT, namespace, name, apply)

    def _pause(self, action: str, namespace: str, name: str, vmi: dict | None, options: dict) -> int:
        if vmi is None:
            raise ks.not_found("virtualmachineinstance", name)
        if action == "pause":
            ks.check_pause(vmi)
        else:
            ks.check_unpause(vmi)
        dry = "All" in (options.get("dryRun") or [])
        if not dry:
            now = _now()
            self.store.mutate(VMI_RT, namespace, name, lambda o: ks.set_paused(o, action == "pause", now))
        return 200

    def _handler(self, action: str) -> Callable[..., Any]:
        async def handle(
            emulator: Emulator, namespace: str, name: str, method: str, body: dict | None
        ) -> tuple[int, dict | None]:
            if method.upper() != "PUT":
                raise ApiError(
                    405,
                    "MethodNotAllowed",
                    "the server does not allow this method on the requested resource",
                )
            if self.api_delay > 0:
                await asyncio.sleep(self.api_delay)  # virt-api's round trip to the API server / virt-handler
            return self.call(action, namespace, name, body), None

        return handle

    # ---------------------------------------------------------------- controller

    async def run(self, emulator: Emulator) -> None:
        self.emulator = emulator
        self._wake = asyncio.Event()
        sub = self.store.subscribe()
        reader = asyncio.create_task(self._read(sub))
        try:
            vms, _ = self.store.list(VM_RT)
            vmis, _ = self.store.list(VMI_RT)
            for obj in vms + vmis:
                self._enqueue((obj["metadata"]["namespace"], obj["metadata"]["name"]))
            while True:
                await self._wake.wait()
                self._wake.clear()
                keys, self._dirty = self._dirty, set()
                for key in sorted(keys):
                    try:
                        self.reconcile(*key)
                    except Exception:
                        log.exception("kubevirt sync failed", extra={"namespace": key[0], "vm": key[1]})
                        self._enqueue_later(key, 0.5)
                if reader.done():
                    reader.result()  # a dead subscription: raise, so the emulator restarts us
        finally:
            reader.cancel()
            sub.close()
            for timer in self._timers.values():
                timer.cancel()
            self._timers.clear()

    async def _read(self, sub: Any) -> None:
        async for event in sub:
            rt = event.rt
            if rt.group != ks.GROUP or rt.plural not in (VM_RT.plural, VMI_RT.plural):
                continue
            meta = event.object.get("metadata") or {}
            if rt.plural == VMI_RT.plural and event.type == "DELETED":
                self._forget(meta.get("uid"))
            if rt.plural == VM_RT.plural and event.type == "DELETED":
                self._written.pop((meta.get("namespace", ""), meta.get("name", "")), None)
            self._enqueue((meta.get("namespace", ""), meta.get("name", "")))

    def _enqueue(self, key: tuple[str, str]) -> None:
        self._dirty.add(key)
        if self._wake is not None:
            self._wake.set()

    def _enqueue_later(self, key: tuple[str, str], delay: float) -> None:
        old = self._timers.pop(key, None)
        if old is not None and old.when() <= asyncio.get_running_loop().time() + delay:
            self._timers[key] = old
            return
        if old is not None:
            old.cancel()
        self._timers[key] = asyncio.get_running_loop().call_later(max(delay, 0.0), self._fire, key)

    def _fire(self, key: tuple[str, str]) -> None:
        self._timers.pop(key, None)
        self._enqueue(key)

    def _forget(self, vmi_uid: str | None) -> None:
        if vmi_uid:
            self._templates.pop(vmi_uid, None)
            self._since.pop(vmi_uid, None)
            self._deadlines.pop(vmi_uid, None)
            self._ips.pop(vmi_uid, None)

    def _ip_for(self, vmi_uid: str) -> str:
        if vmi_uid not in self._ips:
            self._ips[vmi_uid] = str(VMI_NETWORK[self._next_ip % (VMI_NETWORK.num_addresses - 2) + 1])
            self._next_ip += 1
        return self._ips[vmi_uid]

    def reconcile(self, namespace: str, name: str) -> None:
        """One virt-controller + virt-handler pass for the VM ``namespace/name`` and its VMI."""
        loop_time = asyncio.get_running_loop().time()
        self._drive_vmi(namespace, name, loop_time)
        vm = self.store.try_get(VM_RT, namespace, name)
        vmi = self.store.try_get(VMI_RT, namespace, name)
        if vm is None:
            return
        if ks.is_deleting(vm):
            self._terminate(vm, vmi)
            return
        if ks.VM_FINALIZER not in (vm["metadata"].get("finalizers") or []):
            self.store.mutate(
                VM_RT,
                namespace,
                name,
                lambda o: o["metadata"].setdefault("finalizers", []).append(ks.VM_FINALIZER),
            )
        self._create_data_volumes(vm)
        try:
            actions = ks.sync_run_strategy(vm, vmi)
        except ks.Refusal as refusal:
            log.warning(
                "cannot sync VM", extra={"namespace": namespace, "vm": name, "error": refusal.message}
            )
            return
        if actions.delete_vmi and vmi is not None:
            self._delete_vmi(vmi)
        if actions.add_start_request:
            self.store.mutate(
                VM_RT,
                namespace,
                name,
                lambda o: (
                    o.setdefault("status", {})
                    .setdefault("stateChangeRequests", [])
                    .append({"action": ks.START})
                ),
            )
        if actions.set_running:
            self.store.mutate(VM_RT, namespace, name, _set_running)
        if actions.create_vmi:
            self._create_vmi(vm, loop_time)
        vm = self.store.try_get(VM_RT, namespace, name)
        vmi = self.store.try_get(VMI_RT, namespace, name)
        if vm is None:
            return
        self._write_status(vm, vmi)

    def _create_data_volumes(self, vm: dict) -> None:
        """virt-controller's part of `dataVolumeTemplates`: each DataVolume is created, owned by the VM,
        as soon as the VM exists (running or not) and is missing; CDI then makes and fills its PVC."""
        dv_rt = self.emulator.registry.get("cdi.kubevirt.io", "v1beta1", "datavolumes")
        meta = vm["metadata"]
        if dv_rt is None:
            return  # no CDI: KubeVirt would report the VM's DataVolumes missing
        for template in (vm.get("spec") or {}).get("dataVolumeTemplates") or []:
            tmeta = template.get("metadata") or {}
            name = tmeta.get("name")
            if not name or self.store.try_get(dv_rt, meta["namespace"], name) is not None:
                continue
            dv = {
                "apiVersion": dv_rt.api_version,
                "kind": "DataVolume",
                "metadata": {
                    "name": name,
                    "namespace": meta["namespace"],
                    "labels": {**(tmeta.get("labels") or {}), "kubevirt.io/created-by": meta["uid"]},
                    "annotations": dict(tmeta.get("annotations") or {}),
                    "ownerReferences": [{
                        "apiVersion": VM_RT.api_version, "kind": "VirtualMachine", "name": meta["name"],
                        "uid": meta["uid"], "controller": True, "blockOwnerDeletion": True,
                    }],
                },
                "spec": copy.deepcopy(template.get("spec") or {}),
            }
            try:
                self.store.create(dv_rt, dv, meta["namespace"])
            except ApiError as err:
                if err.code != 409:
                    raise

    def _write_status(self, vm: dict, vmi: dict | None) -> None:
        started = self._templates.get(ks.uid(vmi) or "")
        status = ks.vm_status(vm, vmi, _now(), started_template_spec=started)
        stored = vm.get("status") or {}
        meta = vm["metadata"]
        key = (meta["namespace"], meta["name"])
        # The store may normalise what we write (schema pruning); do not fight it in a write loop.
        if status != stored and self._written.get(key) != (status, stored):
            old = stored.get("printableStatus")

            def apply(o: dict) -> None:
                o["status"] = status

            result = self.store.mutate(VM_RT, meta["namespace"], meta["name"], apply)
            if result is not None:
                self._written[key] = (status, result.get("status") or {})
            if old != status["printableStatus"]:
                log.info(
                    "vm %s",
                    status["printableStatus"],
                    extra={
                        "namespace": meta["namespace"],
                        "vm": meta["name"],
                        "from": old,
                        "to": status["printableStatus"],
                        "vmi_uid": ks.uid(vmi),
                    },
                )

    def _terminate(self, vm: dict, vmi: dict | None) -> None:
        meta = vm["metadata"]
        owned = any(
            r.get("uid") == meta["uid"] for r in (vmi or {}).get("metadata", {}).get("ownerReferences") or []
        )
        if vmi is not None and owned:
            # An orphaning delete (--cascade=orphan) already took the VMI's ownerReference: it keeps running.
            if not ks.is_deleting(vmi):
                self._delete_vmi(vmi)
            self._write_status(vm, self.store.try_get(VMI_RT, meta["namespace"], meta["name"]))
            return
        if ks.VM_FINALIZER in (meta.get("finalizers") or []):

            def drop(o: dict) -> None:
                o["metadata"]["finalizers"] = [
                    f for f in o["metadata"].get("finalizers") or [] if f != ks.VM_FINALIZER
                ]

            self.store.mutate(VM_RT, meta["namespace"], meta["name"], drop)
            self._finish_delete(VM_RT, meta["namespace"], meta["name"])

    def _create_vmi(self, vm: dict, loop_time: float) -> None:
        template_spec = copy.deepcopy(((vm.get("spec") or {}).get("template") or {}).get("spec") or {})
        vmi = ks.new_vmi(vm, _now())
        created = self.store.create(VMI_RT, vmi, vm["metadata"]["namespace"])
        if created.get("status") != vmi["status"]:
            # A create through the status-split API drops status; write it as virt-controller does next.
            status = vmi["status"]

            def apply(o: dict) -> None:
                o["status"] = status

            self.store.mutate(VMI_RT, created["metadata"]["namespace"], created["metadata"]["name"], apply)
        vmi_uid = created["metadata"]["uid"]
        self._templates[vmi_uid] = template_spec
        self._since[vmi_uid] = loop_time
        log.info(
            "vmi created",
            extra={
                "namespace": vm["metadata"]["namespace"],
                "vmi": vm["metadata"]["name"],
                "vmi_uid": vmi_uid,
            },
        )

    def _delete_vmi(self, vmi: dict) -> None:
        meta = vmi["metadata"]
        if ks.is_deleting(vmi):
            return
        try:
            self.store.delete(VMI_RT, meta["namespace"], meta["name"], preconditions={"uid": meta["uid"]})
        except ApiError as e:
            if e.code not in (404, 409):
                raise

    def _finish_delete(self, rt: ResourceType, namespace: str, name: str) -> None:
        """After removing the last finalizer: make sure the object is gone (the store may need a nudge)."""
        obj = self.store.try_get(rt, namespace, name)
        if obj is not None and ks.is_deleting(obj) and not obj["metadata"].get("finalizers"):
            try:
                self.store.delete(rt, namespace, name)
            except ApiError as e:
                if e.code != 404:
                    raise

    def _shutdown_time(self, vmi: dict) -> float:
        grace = ks.grace_seconds(vmi)
        if grace <= 0:
            return 0.0
        if ks.has_condition_true(vmi, "Paused"):
            return grace * self.grace_scale  # a paused guest cannot act on ACPI: killed at the deadline
        return min(self.stop_delay, grace * self.grace_scale)

    def _drive_vmi(self, namespace: str, name: str, loop_time: float) -> None:
        """virt-handler: boot phases, graceful shutdown of a deleted VMI."""
        vmi = self.store.try_get(VMI_RT, namespace, name)
        if vmi is None:
            return
        vmi_uid = vmi["metadata"]["uid"]
        key = (namespace, name)
        if ks.is_deleting(vmi):
            deadline = loop_time + self._shutdown_time(vmi)
            if ks.is_final(vmi):
                deadline = loop_time
            deadline = min(self._deadlines.get(vmi_uid, deadline), deadline)
            self._deadlines[vmi_uid] = deadline
            if loop_time < deadline:
                self._enqueue_later(key, deadline - loop_time)
                return
            now = _now()
            if not ks.is_final(vmi):
                self.store.mutate(VMI_RT, namespace, name, lambda o: ks.end_vmi(o, ks.SUCCEEDED, now))

            def drop(o: dict) -> None:
                o["metadata"]["finalizers"] = [
                    f for f in o["metadata"].get("finalizers") or [] if f not in ks.VMI_FINALIZERS
                ]

            self.store.mutate(VMI_RT, namespace, name, drop)
            self._finish_delete(VMI_RT, namespace, name)
            log.info("vmi gone", extra={"namespace": namespace, "vmi": name, "vmi_uid": vmi_uid})
            return
        current = ks.phase(vmi)
        if current == "":
            now = _now()
            self.store.mutate(VMI_RT, namespace, name, lambda o: ks.adopt_standalone(o, now))
            self._since[vmi_uid] = loop_time
            self._enqueue_later(key, self.start_delay / 3)
            return
        if current not in ks.BOOT_PHASES or current == ks.RUNNING:
            return
        since = self._since.setdefault(vmi_uid, loop_time)
        step = self.start_delay / 3
        if loop_time - since < step:
            self._enqueue_later(key, since + step - loop_time)
            return
        nxt = ks.BOOT_PHASES[ks.BOOT_PHASES.index(current) + 1]
        now = _now()
        ip = self._ip_for(vmi_uid)
        self.store.mutate(
            VMI_RT, namespace, name, lambda o: ks.advance_phase(o, nxt, now, node=self.node_name, ip=ip)
        )
        self._since[vmi_uid] = loop_time
        log.info("vmi %s", nxt, extra={"namespace": namespace, "vmi": name, "vmi_uid": vmi_uid, "phase": nxt})
        if nxt != ks.RUNNING:
            self._enqueue_later(key, step)


def _set_running(o: dict) -> None:
    spec = o.setdefault("spec", {})
    if spec.get("runStrategy"):
        spec["runStrategy"] = ks.ALWAYS
    else:
        spec["running"] = True


def install_kubevirt(emulator: Emulator, **options: Any) -> KubeVirt:
    """Register the KubeVirt types and subresources on ``emulator`` and add the fake controller."""
    kv = KubeVirt(emulator, **options)
    registry = emulator.registry
    registry.register(VM_RT)
    registry.register(VMI_RT)
    registry.add_api_group(SUBRESOURCE_GROUP, "v1")
    for action in VM_ACTIONS:
        registry.add_subresource_handler(SUBRESOURCE_GROUP, "v1", VM_RT.plural, action, kv._handler(action))
    for action in VMI_ACTIONS:
        registry.add_subresource_handler(SUBRESOURCE_GROUP, "v1", VMI_RT.plural, action, kv._handler(action))
    emulator.store.admission_hooks.setdefault(VM_RT.key, []).append(_admit_vm)
    emulator.add_controller(kv)
    return kv


def _admit_vm(vm: dict, old: dict | None) -> dict:
    """KubeVirt's validating webhook for VirtualMachines (runStrategy and firmware). KubeVirt registers
    it for the VM, not its status subresource: a write that leaves the spec as it was is not checked."""
    if old is not None and old.get("spec") == vm.get("spec"):
        return vm
    causes = ks.validate_vm(vm)
    if causes:
        raise _api_error(ks.webhook_denial(causes))
    return vm

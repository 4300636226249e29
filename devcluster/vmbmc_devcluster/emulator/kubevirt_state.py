"""Pure decision logic of the fake KubeVirt: what virt-api answers and what virt-controller does.

No store, no clock, no I/O: every function takes plain dicts (VirtualMachine / VirtualMachineInstance as
the API serves them) and returns new dicts or a ``Refusal``. ``vmbmc_devcluster.emulator.kubevirt`` applies
the results to the store and drives the timing. The behaviour follows KubeVirt's own code (virt-api
``pkg/virt-api/rest/lifecycle`` for start/stop/restart, ``subresource.go`` for pause/unpause, virt-controller
``pkg/virt-controller/watch/vm`` for runStrategy, stateChangeRequests, printableStatus and conditions);
``docs/emulator-kubevirt.md`` lists where it is simpler.
"""

from __future__ import annotations

import copy
import hashlib
import uuid
from dataclasses import dataclass, field
from typing import Any

GROUP = "kubevirt.io"
API_VERSION = "kubevirt.io/v1"

ALWAYS = "Always"
HALTED = "Halted"
MANUAL = "Manual"
RERUN_ON_FAILURE = "RerunOnFailure"
ONCE = "Once"
RUN_STRATEGIES = (ALWAYS, HALTED, MANUAL, RERUN_ON_FAILURE, ONCE)

# VMI phases (kubevirt.io/api core/v1 VirtualMachineInstancePhase); "" is VmPhaseUnset.
PENDING, SCHEDULING, SCHEDULED, RUNNING = "Pending", "Scheduling", "Scheduled", "Running"
SUCCEEDED, FAILED, UNKNOWN = "Succeeded", "Failed", "Unknown"
BOOT_PHASES = (PENDING, SCHEDULING, SCHEDULED, RUNNING)

START, STOP = "Start", "Stop"
# virt-controller puts both finalizers on every VMI it creates; the fake removes them once the guest is down.
VMI_FINALIZERS = ("kubevirt.io/virtualMachineControllerFinalize", "foregroundDeleteVirtualMachine")
VM_FINALIZER = "kubevirt.io/virtualMachineControllerFinalize"
DEFAULT_GRACE_SECONDS = 180  # virtv1.DefaultGracePeriodSeconds, set by the VMI defaulting webhook
RESTART_REQUIRED_MESSAGE = "a non-live-updatable field was changed in the template spec"
MAC_PREFIX = "02:5a:4b"  # locally administered; KubeVirt leaves MACs to libvirt/kubemacpool


class Refusal(Exception):
    """An error answer of virt-api, shaped as apimachinery's StatusError builders shape it."""

    def __init__(self, code: int, reason: str, message: str, details: dict | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details

    def status(self) -> dict:
        out: dict[str, Any] = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        if self.details is not None:
            out["details"] = self.details
        return out


def not_found(kind: str, name: str) -> Refusal:
    """errors.NewNotFound(v1.Resource(kind), name): KubeVirt names the *singular* resource."""
    return Refusal(
        404, "NotFound", f'{kind}.{GROUP} "{name}" not found', {"name": name, "group": GROUP, "kind": kind}
    )


def conflict(kind: str, name: str, message: str) -> Refusal:
    """errors.NewConflict(v1.Resource(kind), name, err)."""
    return Refusal(
        409,
        "Conflict",
        f'Operation cannot be fulfilled on {kind}.{GROUP} "{name}": {message}',
        {"name": name, "group": GROUP, "kind": kind},
    )


def bad_request(message: str) -> Refusal:
    return Refusal(400, "BadRequest", message)


def forbidden(kind: str, name: str, message: str) -> Refusal:
    return Refusal(
        403,
        "Forbidden",
        f'{kind}.{GROUP} "{name}" is forbidden: {message}',
        {"name": name, "group": GROUP, "kind": kind},
    )


def internal(message: str) -> Refusal:
    return Refusal(
        500, "InternalError", f"Internal error occurred: {message}", {"causes": [{"message": message}]}
    )


# --- reading objects -------------------------------------------------------------------------------


def run_strategy(vm: dict) -> str:
    """vm.RunStrategy(): runStrategy, else the legacy spec.running, else Halted."""
    spec = vm.get("spec") or {}
    rs, running = spec.get("runStrategy"), spec.get("running")
    if rs and running is not None:
        raise internal("running and runstrategy are mutually exclusive")
    if rs:
        return str(rs)
    return ALWAYS if running else HALTED


VM_VALIDATOR = "virtualmachine-validator.kubevirt.io"


def validate_domain(domain: dict, field: str) -> list[dict]:
    """The firmware checks of KubeVirt's validateDomainSpec (virt-api's admitters), as status causes: EFI
    and BIOS together, and EFI Secure Boot (on, or unset: KubeVirt's default) without the `smm` feature."""
    causes = []
    bootloader = (domain.get("firmware") or {}).get("bootloader") or {}
    if bootloader.get("efi") is not None and bootloader.get("bios") is not None:
        where = f"{field}.firmware.bootloader"
        causes.append(
            {
                "reason": "FieldValueInvalid",
                "message": f"{where} has both EFI and BIOS configured, but they are mutually exclusive.",
                "field": where,
            }
        )
    efi = bootloader.get("efi")
    smm = (domain.get("features") or {}).get("smm")
    secure_boot = efi is not None and efi.get("secureBoot") in (None, True)
    if secure_boot and (smm is None or smm.get("enabled") is False):
        causes.append(
            {
                "reason": "FieldValueInvalid",
                "message": f"{field} has EFI SecureBoot enabled. SecureBoot requires SMM, which is currently "
                "disabled.",
                "field": field,
            }
        )
    return causes


def validate_vm(vm: dict) -> list[dict]:
    """The runStrategy and firmware checks of KubeVirt's VM admission webhook, as status causes."""
    spec = vm.get("spec") or {}
    domain = (((spec.get("template") or {}).get("spec")) or {}).get("domain") or {}
    causes = validate_domain(domain, "spec.template.spec.domain")
    if spec.get("running") is not None and spec.get("runStrategy") is not None:
        causes.append(
            {
                "reason": "FieldValueInvalid",
                "message": "Running and RunStrategy are mutually exclusive. "
                "Note that Running is deprecated, please use RunStrategy instead",
                "field": "spec.running",
            }
        )
    rs = spec.get("runStrategy")
    if rs is not None and rs not in (*RUN_STRATEGIES, "WaitAsReceiver"):
        causes.append(
            {
                "reason": "FieldValueInvalid",
                "message": f"Invalid RunStrategy ({rs})",
                "field": "spec.runStrategy",
            }
        )
    return causes


def webhook_denial(causes: list[dict]) -> Refusal:
    """How kube-apiserver answers when KubeVirt's validating webhook refuses an object."""
    message = ", ".join(c["message"] for c in causes)
    return Refusal(
        422,
        "Invalid",
        f'admission webhook "{VM_VALIDATOR}" denied the request: {message}',
        {"causes": causes},
    )


def phase(vmi: dict | None) -> str:
    return ((vmi or {}).get("status") or {}).get("phase") or ""


def is_final(vmi: dict | None) -> bool:
    return phase(vmi) in (SUCCEEDED, FAILED)


def is_deleting(obj: dict | None) -> bool:
    return bool(obj and (obj.get("metadata") or {}).get("deletionTimestamp"))


def uid(obj: dict | None) -> str | None:
    return ((obj or {}).get("metadata") or {}).get("uid")


def condition(obj: dict | None, ctype: str) -> dict | None:
    for c in ((obj or {}).get("status") or {}).get("conditions") or []:
        if c.get("type") == ctype:
            return c
    return None


def has_condition_true(obj: dict | None, ctype: str) -> bool:
    c = condition(obj, ctype)
    return bool(c and c.get("status") == "True")


def change_requests(vm: dict) -> list[dict]:
    return list((vm.get("status") or {}).get("stateChangeRequests") or [])


def has_start_request(vm: dict) -> bool:
    reqs = change_requests(vm)
    return bool(reqs) and reqs[0].get("action") == START


def has_stop_request_for(vm: dict, vmi: dict | None) -> bool:
    reqs = change_requests(vm)
    return bool(vmi and reqs and reqs[0].get("action") == STOP and reqs[0].get("uid") == uid(vmi))


def grace_seconds(vmi: dict) -> int:
    g = (vmi.get("spec") or {}).get("terminationGracePeriodSeconds")
    return DEFAULT_GRACE_SECONDS if g is None else int(g)


# --- virt-api: start / stop / restart / pause / unpause -------------------------------------------------


@dataclass
class ApiPlan:
    """What a subresource call changes: the VM to store (None = unchanged) and a VMI grace-period patch."""

    vm: dict | None = None
    vmi_grace: int | None = None


def _is_dry_run(options: dict) -> bool:
    dry = options.get("dryRun")
    return bool(dry) and "All" in (dry if isinstance(dry, list) else [dry])


def _with_change_requests(vm: dict, changes: list[dict]) -> dict:
    """getChangeRequestJSON: add to an empty list; a lone Stop replaces pending ones; else busy."""
    out = copy.deepcopy(vm)
    status = out.setdefault("status", {})
    pending = status.get("stateChangeRequests") or []
    if pending and not (len(changes) == 1 and changes[0]["action"] == STOP):
        raise internal("unable to complete request: stop/start already underway")
    status["stateChangeRequests"] = changes
    status.pop("startFailure", None)
    return out


def _with_running(vm: dict, running: bool) -> dict:
    """getRunningPatch: flip runStrategy Always/Halted, or the legacy spec.running if that is what is set."""
    out = copy.deepcopy(vm)
    spec = out.setdefault("spec", {})
    if spec.get("runStrategy"):
        spec["runStrategy"] = ALWAYS if running else HALTED
    else:
        spec["running"] = running
    return out


def _start_request(paused: bool) -> dict:
    req: dict[str, Any] = {"action": START}
    if paused:
        req["data"] = {"paused": "true"}
    return req


def plan_start(vm: dict, vmi: dict | None, options: dict) -> ApiPlan:
    name = vm["metadata"]["name"]
    if vmi is not None and not is_final(vmi) and phase(vmi) not in (UNKNOWN, ""):
        raise conflict("virtualmachine", name, "VM is already running")
    paused = bool(options.get("paused"))
    rs = run_strategy(vm)
    if rs == HALTED:
        template_spec = ((vm.get("spec") or {}).get("template") or {}).get("spec") or {}
        if paused and template_spec.get("startStrategy") != "Paused":
            new_vm = _with_change_requests(vm, [_start_request(True)])
        else:
            new_vm = _with_running(vm, True)
    elif rs in (RERUN_ON_FAILURE, MANUAL):
        if (rs == RERUN_ON_FAILURE and phase(vmi) == SUCCEEDED) or (rs == MANUAL and is_final(vmi)):
            assert vmi is not None
            changes = [{"action": STOP, "uid": uid(vmi)}, _start_request(paused)]
        elif rs == RERUN_ON_FAILURE and phase(vmi) == FAILED:
            raise conflict(
                "virtualmachine", name, f"{RERUN_ON_FAILURE} does not support starting VM from failed state"
            )
        else:
            changes = [_start_request(paused)]
        new_vm = _with_change_requests(vm, changes)
    else:  # Always, Once
        raise conflict("virtualmachine", name, f"{rs} does not support manual start requests")
    return ApiPlan(vm=None if _is_dry_run(options) else new_vm)


def plan_stop(vm: dict, vmi: dict | None, options: dict) -> ApiPlan:
    name = vm["metadata"]["name"]
    rs = run_strategy(vm)
    dry = _is_dry_run(options)
    grace = options.get("gracePeriod")
    running = vmi is not None and not is_final(vmi)
    old_grace: int | None = None
    patched: int | None = None
    if vmi is not None and running and grace is not None:
        # virt-api patches the VMI's terminationGracePeriodSeconds before it looks at the runStrategy
        # (and does not roll that back when it then refuses).
        old = (vmi.get("spec") or {}).get("terminationGracePeriodSeconds")
        old_grace = None if old is None else int(old)
        patched = None if dry else int(grace)
    if rs in (HALTED, RERUN_ON_FAILURE, MANUAL):
        if vmi is None or not running:
            raise conflict("virtualmachine", name, "VM is not running")
        if rs == HALTED and (grace is None or (old_grace is not None and int(grace) >= old_grace)):
            raise RefusalAfterPatch(
                conflict(
                    "virtualmachine",
                    name,
                    f"{HALTED} only supports manual stop requests with a shorter graceperiod",
                ),
                patched,
            )
        new_vm = _with_change_requests(vm, [{"action": STOP, "uid": uid(vmi)}])
    else:  # Always, Once
        new_vm = _with_running(vm, False)
    return ApiPlan() if dry else ApiPlan(vm=new_vm, vmi_grace=patched)


class RefusalAfterPatch(Refusal):
    """A refusal that comes after virt-api already patched the VMI's grace period."""

    def __init__(self, refusal: Refusal, vmi_grace: int | None) -> None:
        super().__init__(refusal.code, refusal.reason, refusal.message, refusal.details)
        self.vmi_grace = vmi_grace


def plan_restart(vm: dict | None, vmi: dict | None, options: dict, name: str) -> ApiPlan:
    grace = options.get("gracePeriodSeconds")
    if grace is not None:
        if int(grace) > 0:
            raise bad_request("For force restart, only gracePeriod=0 is supported for now")
        if int(grace) < 0:
            raise bad_request("gracePeriod has to be greater or equal to 0")
    if vm is None:
        raise not_found("virtualmachine", name)
    rs = run_strategy(vm)
    if rs in (HALTED, ONCE):
        raise conflict("virtualmachine", name, f"RunStategy {rs} does not support manual restart requests")
    if vmi is None:
        raise conflict("virtualmachine", name, f"VM is not running: {HALTED}")
    plan = ApiPlan(vm=_with_change_requests(vm, [{"action": STOP, "uid": uid(vmi)}, {"action": START}]))
    if grace is not None:  # force restart: virt-api shortens the VMI's grace period to 1 s
        plan.vmi_grace = 1
    return ApiPlan() if _is_dry_run(options) else plan


def check_pause(vmi: dict) -> None:
    name = vmi["metadata"]["name"]
    if phase(vmi) != RUNNING:
        raise conflict("virtualmachineinstance", name, "VM is not running")
    if (vmi.get("spec") or {}).get("livenessProbe") is not None:
        raise forbidden(
            "virtualmachineinstance", name, "Pausing VMIs with LivenessProbe is currently not supported"
        )
    if condition(vmi, "Paused") is not None:
        raise conflict("virtualmachineinstance", name, "VMI is already paused")


def check_unpause(vmi: dict) -> None:
    name = vmi["metadata"]["name"]
    if phase(vmi) != RUNNING or condition(vmi, "Paused") is None:
        raise conflict("virtualmachineinstance", name, "VMI is not paused")


def paused_condition(now: str, reason: str = "PausedByUser", message: str = "VMI was paused by user") -> dict:
    return {
        "type": "Paused",
        "status": "True",
        "reason": reason,
        "message": message,
        "lastProbeTime": now,
        "lastTransitionTime": now,
    }


def set_paused(vmi: dict, paused: bool, now: str) -> None:
    """virt-handler's answer to pause/unpause: the VMI's Paused condition appears or goes."""
    status = vmi.setdefault("status", {})
    conds = [c for c in status.get("conditions") or [] if c.get("type") != "Paused"]
    if paused:
        conds.append(paused_condition(now))
    status["conditions"] = conds


# --- virt-controller: runStrategy ---------------------------------------------------------------------


@dataclass
class SyncActions:
    """What syncRunStrategy decides for one VM (applied in this order)."""

    delete_vmi: bool = False
    create_vmi: bool = False
    add_start_request: bool = False
    set_running: bool = False  # Halted VM with a (paused) start request → runStrategy Always
    notes: list[str] = field(default_factory=list)


def sync_run_strategy(vm: dict, vmi: dict | None) -> SyncActions:
    rs = run_strategy(vm)
    act = SyncActions()
    if vmi is not None and is_deleting(vmi):
        # Wait for the old VMI to go: a new one has the same name.
        return act
    if rs == ALWAYS:
        if vmi is not None:
            if has_stop_request_for(vm, vmi) or is_final(vmi):
                act.delete_vmi = True
        else:
            act.create_vmi = True
    elif rs == RERUN_ON_FAILURE:
        if vmi is not None:
            failed = phase(vmi) == FAILED
            if has_stop_request_for(vm, vmi) or failed or phase(vmi) == SUCCEEDED:
                act.delete_vmi = True
                act.add_start_request = failed
        elif has_start_request(vm) or (vm.get("status") or {}).get("runStrategy") != rs:
            act.create_vmi = True
    elif rs == MANUAL:
        if vmi is not None:
            act.delete_vmi = has_stop_request_for(vm, vmi)
        elif has_start_request(vm):
            act.create_vmi = True
    elif rs == HALTED:
        if vmi is None:
            act.set_running = has_start_request(vm)
        else:
            act.delete_vmi = True
    elif rs == ONCE:
        act.create_vmi = vmi is None and not (vm.get("status") or {}).get("created")
    return act


def start_paused(vm: dict) -> bool:
    """A pending Start request asking for a paused start, or a template that says so."""
    reqs = change_requests(vm)
    for r in reqs:
        if r.get("action") == START and (r.get("data") or {}).get("paused") == "true":
            return True
    template_spec = ((vm.get("spec") or {}).get("template") or {}).get("spec") or {}
    return template_spec.get("startStrategy") == "Paused"


def stable_mac(namespace: str, vm_name: str, iface: str) -> str:
    digest = hashlib.sha256(f"{namespace}/{vm_name}/{iface}".encode()).digest()
    return MAC_PREFIX + "".join(f":{b:02x}" for b in digest[:3])


def firmware_uuid(namespace: str, vm_name: str) -> str:
    """Stable per VM, as KubeVirt derives firmware.uuid from the VM when the template has none."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"kubevirt.io/{namespace}/{vm_name}"))


def new_vmi(vm: dict, now: str) -> dict:
    """setupVMIFromVM: the template as it is *now*, owned by the VM (the store assigns the new UID)."""
    meta = vm["metadata"]
    template = copy.deepcopy((vm.get("spec") or {}).get("template") or {})
    tmeta = template.get("metadata") or {}
    spec = template.get("spec") or {}
    domain = spec.setdefault("domain", {})
    devices = domain.setdefault("devices", {})
    if (
        not spec.get("networks")
        and not devices.get("interfaces")
        and devices.get("autoattachPodInterface", True)
    ):
        spec["networks"] = [{"name": "default", "pod": {}}]
        devices["interfaces"] = [{"name": "default", "masquerade": {}}]
    for iface in devices.get("interfaces") or []:
        iface.setdefault(
            "macAddress", stable_mac(meta.get("namespace", ""), meta["name"], iface.get("name", ""))
        )
    domain.setdefault("machine", {"type": "q35"})
    firmware = domain.setdefault("firmware", {})
    firmware.setdefault("uuid", firmware_uuid(meta.get("namespace", ""), meta["name"]))
    spec.setdefault("terminationGracePeriodSeconds", DEFAULT_GRACE_SECONDS)
    if start_paused(vm):
        spec["startStrategy"] = "Paused"
    annotations = dict(tmeta.get("annotations") or {})
    annotations["kubevirt.io/vm-generation"] = str(meta.get("generation", 1))
    return {
        "apiVersion": API_VERSION,
        "kind": "VirtualMachineInstance",
        "metadata": {
            "name": meta["name"],
            "namespace": meta.get("namespace"),
            "labels": dict(tmeta.get("labels") or {}),
            "annotations": annotations,
            "finalizers": list(VMI_FINALIZERS),
            "ownerReferences": [
                {
                    "apiVersion": API_VERSION,
                    "kind": "VirtualMachine",
                    "name": meta["name"],
                    "uid": meta["uid"],
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "spec": spec,
        "status": {
            "phase": PENDING,
            "phaseTransitionTimestamps": [{"phase": PENDING, "phaseTransitionTimestamp": now}],
            "guestOSInfo": {},
            "qosClass": "Burstable",
        },
    }


def adopt_standalone(vmi: dict, now: str) -> None:
    """A VMI created directly (not by a VM) gets what the VMI mutating webhook and virt-controller give it."""
    meta = vmi.setdefault("metadata", {})
    finalizers = meta.setdefault("finalizers", [])
    if "foregroundDeleteVirtualMachine" not in finalizers:
        finalizers.append("foregroundDeleteVirtualMachine")
    spec = vmi.setdefault("spec", {})
    devices = spec.setdefault("domain", {}).setdefault("devices", {})
    if (
        not spec.get("networks")
        and not devices.get("interfaces")
        and devices.get("autoattachPodInterface", True)
    ):
        spec["networks"] = [{"name": "default", "pod": {}}]
        devices["interfaces"] = [{"name": "default", "masquerade": {}}]
    for iface in devices.get("interfaces") or []:
        iface.setdefault(
            "macAddress", stable_mac(meta.get("namespace", ""), meta.get("name", ""), iface.get("name", ""))
        )
    spec.setdefault("terminationGracePeriodSeconds", DEFAULT_GRACE_SECONDS)
    vmi["status"] = {
        "phase": PENDING,
        "phaseTransitionTimestamps": [{"phase": PENDING, "phaseTransitionTimestamp": now}],
        "guestOSInfo": {},
        "qosClass": "Burstable",
    }


def advance_phase(vmi: dict, new_phase: str, now: str, *, node: str, ip: str) -> None:
    """Move a VMI along Pending → Scheduling → Scheduled → Running (in place), as KubeVirt does."""
    status = vmi.setdefault("status", {})
    status["phase"] = new_phase
    status.setdefault("phaseTransitionTimestamps", []).append(
        {"phase": new_phase, "phaseTransitionTimestamp": now}
    )
    if new_phase == SCHEDULED:
        status["nodeName"] = node
        vmi["metadata"].setdefault("labels", {})["kubevirt.io/nodeName"] = node
    if new_phase == RUNNING:
        spec = vmi.get("spec") or {}
        ifaces = ((spec.get("domain") or {}).get("devices") or {}).get("interfaces") or []
        status["interfaces"] = [
            {
                "name": iface.get("name"),
                "mac": iface.get("macAddress"),
                "interfaceName": f"eth{i}",
                "infoSource": "domain, guest-agent",
                "queueCount": 1,
                **({"ipAddress": ip, "ipAddresses": [ip]} if i == 0 else {}),
            }
            for i, iface in enumerate(ifaces)
        ]
        status["guestOSInfo"] = {"id": "fedora", "name": "Fedora Linux", "kernelRelease": "6.8.5"}
        launcher = hashlib.sha256(f"launcher/{uid(vmi)}".encode()).hexdigest()
        status["activePods"] = {str(uuid.UUID(launcher[:32])): node}
        status["launcherContainerImageVersion"] = "quay.io/kubevirt/virt-launcher:v1.6.0"
        status["machine"] = {"type": "pc-q35-rhel9.4.0"}
        status["migrationMethod"] = "BlockMigration"
        conds = [c for c in status.get("conditions") or [] if c.get("type") not in ("Ready", "Paused")]
        conds.append({"type": "Ready", "status": "True", "lastProbeTime": None, "lastTransitionTime": now})
        conds.append(
            {"type": "AgentConnected", "status": "True", "lastProbeTime": None, "lastTransitionTime": now}
        )
        conds.append(
            {"type": "LiveMigratable", "status": "True", "lastProbeTime": None, "lastTransitionTime": None}
        )
        if spec.get("startStrategy") == "Paused":
            conds.append(paused_condition(now))
        status["conditions"] = conds


def end_vmi(vmi: dict, final_phase: str, now: str) -> None:
    """The guest is down (shutdown, kill or failure): final phase, not Ready, no Paused."""
    status = vmi.setdefault("status", {})
    if status.get("phase") != final_phase:
        status["phase"] = final_phase
        status.setdefault("phaseTransitionTimestamps", []).append(
            {"phase": final_phase, "phaseTransitionTimestamp": now}
        )
    conds = [
        c
        for c in status.get("conditions") or []
        if c.get("type") not in ("Ready", "Paused", "AgentConnected", "LiveMigratable")
    ]
    conds.append(
        {
            "type": "Ready",
            "status": "False",
            "reason": "PodTerminating" if final_phase == SUCCEEDED else "PodFailed",
            "lastProbeTime": None,
            "lastTransitionTime": now,
        }
    )
    status["conditions"] = conds


# --- virt-controller: VM status ---------------------------------------------------------------------


def template_changed(vm: dict, started_template_spec: dict | None) -> bool:
    if started_template_spec is None:
        return False
    current = ((vm.get("spec") or {}).get("template") or {}).get("spec") or {}
    return current != started_template_spec


def _trim_first_request(vm_status: dict, vmi: dict | None) -> None:
    reqs = list(vm_status.get("stateChangeRequests") or [])
    if not reqs:
        return
    first = reqs[0]
    if first.get("action") == STOP:
        trim = vmi is None or first.get("uid") is None or first.get("uid") != uid(vmi)
    else:
        trim = vmi is not None and not is_deleting(vmi) and not is_final(vmi)
    if trim:
        reqs.pop(0)
    if reqs:
        vm_status["stateChangeRequests"] = reqs
    else:
        vm_status.pop("stateChangeRequests", None)


def _set_condition(conds: list[dict], new: dict) -> list[dict]:
    """Replace a condition of the same type, keeping its lastTransitionTime when its status is unchanged."""
    out = []
    found = False
    for c in conds:
        if c.get("type") == new["type"]:
            found = True
            if c.get("status") == new.get("status") and c.get("reason") == new.get("reason"):
                out.append(c)
            else:
                out.append(new)
        else:
            out.append(c)
    if not found:
        out.append(new)
    return out


def printable_status(vm: dict, vmi: dict | None, *, start_expected: bool = False) -> str:
    """setPrintableStatus: the first true one of Terminating, Stopping, Paused, Running, Starting, Stopped."""
    if is_deleting(vm):
        return "Terminating"
    if vmi is not None and not is_final(vmi) and (is_deleting(vmi) or has_stop_request_for(vm, vmi)):
        return "Stopping"
    if vmi is not None and phase(vmi) == RUNNING:
        return "Paused" if has_condition_true(vmi, "Paused") else "Running"
    if vmi is None:
        return "Starting" if start_expected else "Stopped"
    if phase(vmi) in ("", PENDING, SCHEDULING, SCHEDULED):
        return "Starting"
    if is_final(vmi):
        return "Stopped"
    return "Unknown"


def vm_status(
    vm: dict,
    vmi: dict | None,
    now: str,
    *,
    started_template_spec: dict | None = None,
    start_expected: bool = False,
) -> dict:
    """updateStatus: the VM's status as virt-controller writes it after a sync."""
    old = vm.get("status") or {}
    status = copy.deepcopy(old)
    created = vmi is not None
    status["created"] = created
    status["ready"] = bool(created and has_condition_true(vmi, "Ready"))
    try:
        rs: str | None = run_strategy(vm)
    except Refusal:
        rs = None
    if rs and (status.get("runStrategy") or created):
        status["runStrategy"] = rs
    if created:
        assert vmi is not None
        gen = ((vmi.get("metadata") or {}).get("annotations") or {}).get("kubevirt.io/vm-generation")
        if gen is not None:
            status["observedGeneration"] = int(gen)
        status["desiredGeneration"] = (vm.get("metadata") or {}).get("generation", 1)
    _trim_first_request(status, vmi)
    conds = list(status.get("conditions") or [])
    vmi_ready = condition(vmi, "Ready")
    if vmi is None:
        ready = {
            "type": "Ready",
            "status": "False",
            "reason": "VMINotExists",
            "message": "VMI does not exist",
            "lastProbeTime": now,
            "lastTransitionTime": now,
        }
    elif vmi_ready is None:
        ready = {
            "type": "Ready",
            "status": "False",
            "reason": "VMIConditionMissing",
            "message": "VMI is missing the Ready condition",
            "lastProbeTime": now,
            "lastTransitionTime": now,
        }
    else:
        ready = {k: v for k, v in vmi_ready.items() if v is not None or k == "lastProbeTime"}
    conds = _set_condition(conds, ready)
    if vmi is not None:
        # Copy every other VMI condition (Paused, AgentConnected...) and drop those the VMI no longer has.
        synced = {"Ready", "Failure", "RestartRequired"}
        vmi_types = set()
        for c in (vmi.get("status") or {}).get("conditions") or []:
            if c.get("type") in synced:
                continue
            vmi_types.add(c.get("type"))
            conds = _set_condition(conds, dict(c))
        conds = [c for c in conds if c.get("type") in synced or c.get("type") in vmi_types]
    if vmi is not None and not is_final(vmi) and template_changed(vm, started_template_spec):
        conds = _set_condition(
            conds,
            {
                "type": "RestartRequired",
                "status": "True",
                "lastProbeTime": None,
                "lastTransitionTime": now,
                "message": RESTART_REQUIRED_MESSAGE,
            },
        )
    elif vmi is not None and not template_changed(vm, started_template_spec):
        conds = [c for c in conds if c.get("type") != "RestartRequired"]
    status["conditions"] = conds
    status["printableStatus"] = printable_status(vm, vmi, start_expected=start_expected)
    return status

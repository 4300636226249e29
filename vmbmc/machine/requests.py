"""Request records (`status.requests`, or a VM annotation in standalone mode): their actions, the Event
reason of each, and the words that name a requester and a request. Pure: no I/O, no clock.

A record is a dict {id, time, protocol, action, user, client, effect}; its lifecycle (written before any
KubeVirt call, then settled) is `vmbmc.kubevirt.requests.RequestLog`; the controller reads records to
name the cause of a transition (`vmbmc.controller.transitions`).
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from typing import Any

from vmbmc.machine import media
from vmbmc.machine.power import REQUEST_REASONS, KubeVirtCall
from vmbmc.machine.types import Effect, PowerAction, Protocol, Requester

# Request actions beside the power actions.
BOOT_ACTION = "boot_override"  # a boot override set through IPMI or Redfish
RESTORE_ACTION = "boot_restore"  # the kbmc puts the boot order back once a Once override was used
FIRMWARE_ACTION = "firmware_settings"  # boot mode / Secure Boot through Redfish SecureBoot or Bios
LOG_CLEAR_ACTION = "clear_log"  # IPMI Clear SEL, Redfish LogService.ClearLog

BOOT_OVERRIDE_REASON = "BootOverrideSet"
BOOT_RESTORED_REASON = "BootOverrideRestored"
FIRMWARE_REASON = "FirmwareSettingsSet"
LOG_CLEAR_REASON = "ClearLogRequested"
LOG_CLEARED_REASON = "LogCleared"  # the clear is stored: every log view hides what came before
FAILED_REASON = "PowerActionFailed"

# The bound on a request's KubeVirt call: the kbmc sends (or re-sends) no call for a request more than this
# many seconds after its record was opened, and a call with no answer by then ends the request `failed`
# (never reached the API server) or `unknown` (it may have: the transition it causes, if any, comes late).
CALL_BOUND_SECONDS = 10.0
LATE_TEXT = "came late: KubeVirt carried out the call after the kbmc had stopped waiting for it"

# Effects that may still lead to a transition (a failed call never does; none and refused made no call).
ACTIVE_EFFECTS = (Effect.PENDING.value, Effect.CALLED.value, Effect.UNKNOWN.value)

_ACTION_TEXT = {
    PowerAction.ON.value: "power on",
    PowerAction.OFF.value: "power off",
    PowerAction.SHUTDOWN.value: "graceful shutdown",
    PowerAction.RESET.value: "reset",
    PowerAction.CYCLE.value: "power cycle",
    PowerAction.GRACEFUL_RESTART.value: "graceful restart",
    PowerAction.PAUSE.value: "pause",
    PowerAction.RESUME.value: "resume",
    PowerAction.NMI.value: "NMI",
    BOOT_ACTION: "boot override",
    RESTORE_ACTION: "boot order restore",
    FIRMWARE_ACTION: "firmware settings",
    LOG_CLEAR_ACTION: "log clear",
    media.INSERT_ACTION: "virtual media insert",
    media.EJECT_ACTION: "virtual media eject",
}

# The KubeVirt call, as an Event names it.
CALL_TEXT: dict[KubeVirtCall, str] = {
    KubeVirtCall.START: "VirtualMachine start",
    KubeVirtCall.STOP_FORCE: "VirtualMachine stop (gracePeriod 0)",
    KubeVirtCall.STOP_GRACEFUL: "VirtualMachine stop (the VM's grace period)",
    KubeVirtCall.RESTART_FORCE: "VirtualMachine restart (gracePeriodSeconds 0)",
    KubeVirtCall.RESTART_GRACEFUL: "VirtualMachine restart (the VM's grace period)",
    KubeVirtCall.PAUSE: "VirtualMachineInstance pause",
    KubeVirtCall.UNPAUSE: "VirtualMachineInstance unpause",
}
PATCH_TEXT = "a patch of the VirtualMachine's boot order and firmware"
# What a request that is not a KubeVirt call leads to, when it is not a boot order patch.
TARGET_TEXT = {
    media.INSERT_ACTION: "a CDI DataVolume importing the image and a patch adding the VM's CD-ROM",
    media.EJECT_ACTION: "a patch removing the VM's CD-ROM and deletion of its DataVolume",
    FIRMWARE_ACTION: "a patch of the VirtualMachine's firmware, in effect once its VMI is recreated",
    LOG_CLEAR_ACTION: "the clear's time stored with the BMC; the SEL and the Redfish log hide what came "
    "before, Kubernetes Events stay",
}


def reason(action: str) -> str:
    """The Event reason of a request (the power table's last column)."""
    if action == BOOT_ACTION:
        return BOOT_OVERRIDE_REASON
    if action == RESTORE_ACTION:
        return BOOT_RESTORED_REASON
    if action == FIRMWARE_ACTION:
        return FIRMWARE_REASON
    if action == LOG_CLEAR_ACTION:
        return LOG_CLEAR_REASON
    if action in media.REASONS:
        return media.REASONS[action]
    return REQUEST_REASONS[PowerAction(action)]


def action_text(action: str) -> str:
    return _ACTION_TEXT.get(action, action)


def requester_text(protocol: str, user: str, client: str) -> str:
    """`IPMI user admin from 10.244.1.7`; the kbmc's own requests: `the kbmc`."""
    if protocol == Protocol.KBMC.value:
        return "the kbmc"
    name = "IPMI" if protocol == Protocol.IPMI.value else "Redfish"
    return f"{name} user {user or '?'} from {client or '?'}"


def by(record: Mapping[str, Any]) -> str:
    """`by IPMI user admin from 10.244.1.7 (request 3f2a…)`, from a request record."""
    text = requester_text(str(record.get("protocol")), str(record.get("user")), str(record.get("client")))
    return f"by {text} (request {record.get('id')})"


def record(requester: Requester, action: str, effect: Effect, time: str) -> dict[str, Any]:
    """A new request record."""
    return {
        "id": requester.request_id,
        "time": time,
        "protocol": requester.protocol.value,
        "action": action,
        "user": requester.user,
        "client": requester.client,
        "effect": effect.value,
    }


def request_message(
    entry: Mapping[str, Any], *, call: KubeVirtCall | None = None, what: str = "", note: str = ""
) -> str:
    """A request Event's message: the requested action and the KubeVirt call it leads to, or why there is
    none. Only what stays true once the call is answered (the answer gets its own Event if it fails)."""
    head = f"{action_text(str(entry.get('action')))}{f' ({what})' if what else ''} requested {by(entry)}"
    effect = entry.get("effect")
    if effect == Effect.REFUSED.value:
        return f"{head}: refused, no KubeVirt call ({note})"
    if effect == Effect.NONE.value:
        return f"{head}: no KubeVirt call needed ({note})"
    action = str(entry.get("action"))
    target = f"KubeVirt call {CALL_TEXT[call]}" if call is not None else TARGET_TEXT.get(action, PATCH_TEXT)
    return f"{head}: {target}{f' ({note})' if note else ''}"


def kbmc_requester(request_id: str) -> Requester:
    """The Requester of a request the kbmc makes on its own: protocol kbmc, user and client `-`."""
    return Requester(Protocol.KBMC, "-", "-", request_id)


def event_last(record: dict[str, Any]) -> str:
    """The latest `lastTimestamp` the Event of this request record may have: the second it was made in
    for a client's request; for one the kbmc made on its own (a reaction to something seen, whose Event
    is rounded up, vmbmc.k8s.events), the second after. An Event it causes is listed after it."""
    made = str(record.get("time") or "")
    if record.get("protocol") != Protocol.KBMC.value:
        return made
    try:
        at = datetime.datetime.strptime(made, "%Y-%m-%dT%H:%M:%SZ")
    except ValueError:
        return made
    return (at + datetime.timedelta(seconds=1)).strftime("%Y-%m-%dT%H:%M:%SZ")

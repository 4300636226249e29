"""`status.powerHistory` entries as the controller writes them, for tests of the log views."""

from __future__ import annotations

from typing import Any

from vmbmc.machine.history import EXTERNAL_PREFIX, VMI_FAILED_CAUSE

STATES = {
    "PoweredOn": ("Off", "On"),
    "PoweredOff": ("On", "Off"),
    "Restarted": ("On", "On"),
    "Paused": ("On", "Paused"),
    "Resumed": ("Paused", "On"),
    "BootDeviceChanged": ("Off", "Off"),
}


def entry(
    id_: str, time: str, reason: str, who: str = "", request_id: str = "", external: str = ""
) -> dict[str, Any]:
    """A transition caused by `who` (`IPMI user admin from 10.0.0.7`, `the kbmc`) through request
    `request_id`, or, with no `who`, outside the BMC for the reason `external`."""
    before, after = STATES[reason]
    body: dict[str, Any] = {"id": id_, "time": time, "from": before, "to": after, "reason": reason}
    if who:
        return {**body, "cause": "Request", "requester": who, "requestId": request_id,
                "message": f"by {who} (request {request_id})"}
    return {**body, "cause": "External", "message": EXTERNAL_PREFIX + external}


# Four transitions: on over IPMI, a VMI failure, a start through the KubeVirt API, a restart over Redfish.
DAY = "2025-06-02T10"
HISTORY = [
    entry("3f2a000000000001", f"{DAY}:00:00Z", "PoweredOn", "IPMI user admin from 10.0.0.7", "aa11"),
    {**entry("b00b000000000002", f"{DAY}:05:00Z", "PoweredOff"), "message": VMI_FAILED_CAUSE},
    entry("c0de000000000003", f"{DAY}:06:00Z", "PoweredOn", external="started through the KubeVirt API"),
    entry("d00d000000000004", f"{DAY}:07:00Z", "Restarted", "Redfish user admin from 10.0.0.8", "bb22"),
]

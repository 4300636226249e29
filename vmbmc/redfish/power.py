"""Redfish ResetType ↔ state-machine PowerAction (the power table's Redfish column)."""

from __future__ import annotations

from vmbmc.machine.types import PowerAction, PowerState

#: what `ResetType@Redfish.AllowableValues` advertises, in this order; nothing else is accepted.
#: `Nmi` is absent: KubeVirt has no NMI call (a POST with it gets 400 ActionParameterNotSupported).
RESET_TYPES: dict[str, PowerAction] = {
    "On": PowerAction.ON,
    "ForceOn": PowerAction.ON,
    "ForceOff": PowerAction.OFF,
    "GracefulShutdown": PowerAction.SHUTDOWN,
    "GracefulRestart": PowerAction.GRACEFUL_RESTART,
    "ForceRestart": PowerAction.RESET,
    "PowerCycle": PowerAction.CYCLE,
    "Pause": PowerAction.PAUSE,
    "Resume": PowerAction.RESUME,
}

#: every value of DMTF's `Resource.ResetType` enum (Resource_v1.xml); a unit test checks the list
#: against the CSDL. A value in here but not in RESET_TYPES is valid Redfish we do not offer.
DMTF_RESET_TYPES = (
    "On", "ForceOff", "GracefulShutdown", "GracefulRestart", "ForceRestart", "Nmi", "ForceOn",
    "PushPowerButton", "PowerCycle", "Suspend", "Pause", "Resume", "FullPowerCycle",
)

#: states Redfish's `PowerState` enum can show; Unknown is left out of the resource instead
REDFISH_POWER_STATES = frozenset(
    {PowerState.ON, PowerState.OFF, PowerState.POWERING_ON, PowerState.POWERING_OFF, PowerState.PAUSED}
)

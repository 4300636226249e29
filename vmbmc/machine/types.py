"""The one vocabulary of vmbmc: power, boot, requests and inventory.

IPMI codes and Redfish strings are translated at the edges (vmbmc.kbmc, vmbmc.redfish); everything
between the front ends and the KubeVirt back end speaks these types.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field


class PowerState(enum.StrEnum):
    """Observed power state of a VM (`status.powerState`)."""

    ON = "On"
    OFF = "Off"
    POWERING_ON = "PoweringOn"
    POWERING_OFF = "PoweringOff"
    PAUSED = "Paused"
    UNKNOWN = "Unknown"


class PowerAction(enum.StrEnum):
    """Power actions (one table for IPMI, Redfish and KubeVirt)."""

    ON = "on"
    OFF = "off"
    SHUTDOWN = "shutdown"
    RESET = "reset"
    CYCLE = "cycle"
    GRACEFUL_RESTART = "graceful_restart"
    PAUSE = "pause"
    RESUME = "resume"
    NMI = "nmi"


class Protocol(enum.StrEnum):
    IPMI = "ipmi"
    REDFISH = "redfish"
    KBMC = "kbmc"  # a request the kbmc makes on its own (the boot order restored after a Once override)


class Effect(enum.StrEnum):
    """What became of an accepted request (`status.requests[].effect`)."""

    PENDING = "pending"  # KubeVirt call scheduled, not answered yet
    CALLED = "called"  # KubeVirt accepted the call
    FAILED = "failed"  # KubeVirt refused or the API was unreachable
    UNKNOWN = "unknown"  # the call may or may not have reached KubeVirt (no answer)
    NONE = "none"  # success with no call (already in the asked state)
    REFUSED = "refused"  # not possible in the present state (IPMI D5h, Redfish 409)


class BootTarget(enum.StrEnum):
    """Redfish BootSourceOverrideTarget names; IPMI pxe/disk/cdrom/bios map onto these."""

    NONE = "None"
    PXE = "Pxe"
    HDD = "Hdd"
    CD = "Cd"
    BIOS_SETUP = "BiosSetup"


class BootPersistence(enum.StrEnum):
    """Redfish BootSourceOverrideEnabled names."""

    DISABLED = "Disabled"
    ONCE = "Once"
    CONTINUOUS = "Continuous"


class BootMode(enum.StrEnum):
    """Redfish BootSourceOverrideMode names. No `firmware.bootloader` counts as Legacy (BIOS)."""

    UEFI = "UEFI"
    LEGACY = "Legacy"


@dataclass(frozen=True, slots=True)
class Requester:
    """Who asked: carried by every request so the controller can name the cause of a transition."""

    protocol: Protocol
    user: str
    client: str  # client address, e.g. "10.244.1.7" or "[::1]:50123"
    request_id: str  # unique per logical request; IPMI retransmits of one request share it


@dataclass(frozen=True, slots=True)
class PowerStatus:
    """The observed power state as the cache knows it.

    `age` is the number of seconds since the cache last confirmed the state with the API server;
    `stale` is true while the watch is broken (the state is then the last known one).
    """

    state: PowerState
    age: float
    stale: bool = False
    vmi_uid: str = ""  # UID of the current VMI, "" when there is none


@dataclass(frozen=True, slots=True)
class ActionResult:
    action: PowerAction
    effect: Effect
    request_id: str
    message: str = ""


@dataclass(frozen=True, slots=True)
class BootOverride:
    """The boot override as stored (CR status or VM annotation) and reported to clients."""

    target: BootTarget = BootTarget.NONE
    enabled: BootPersistence = BootPersistence.DISABLED
    mode: BootMode = BootMode.LEGACY


@dataclass(frozen=True, slots=True)
class Nic:
    name: str
    mac: str  # "" when KubeVirt has not assigned one yet
    model: str  # e.g. "virtio"


@dataclass(frozen=True, slots=True)
class Disk:
    name: str
    kind: str  # "disk" | "cdrom" | "lun"
    size_bytes: int | None  # None when unknown (no PVC/DataVolume size known)
    bus: str = ""


@dataclass(frozen=True, slots=True)
class Inventory:
    """What both protocols show of a VM (Redfish ComputerSystem, IPMI FRU and GUID)."""

    namespace: str
    name: str
    uuid: str  # firmware UUID if set, else the VM's metadata.uid
    cpus: int
    memory_bytes: int
    nics: tuple[Nic, ...] = field(default_factory=tuple)
    disks: tuple[Disk, ...] = field(default_factory=tuple)
    boot_mode: BootMode = BootMode.LEGACY
    run_strategy: str = ""  # KubeVirt runStrategy (IPMI reports it as the power restore policy)
    architecture: str = "amd64"  # KubeVirt spec.architecture: amd64, arm64, s390x, ppc64le

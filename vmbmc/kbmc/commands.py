"""IPMI commands of an authenticated session → the state machine, and back to completion codes.

One table: (NetFn, Cmd) → name, least privilege, handler. Reads come from the machine's cache and
actions are handed to it with `submit` (never blocking); every machine error maps to
one completion code here. Anything not in the table is 0xC1 "invalid command".
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import struct
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from vmbmc import __version__
from vmbmc.kbmc import fru, sdr, sel
from vmbmc.kbmc.sessions import Priv
from vmbmc.kbmc.wire import Request
from vmbmc.machine import errors
from vmbmc.machine.api import Machine
from vmbmc.machine.types import (
    BootMode,
    BootOverride,
    BootPersistence,
    BootTarget,
    PowerAction,
    PowerState,
    Protocol,
    Requester,
)

log = logging.getLogger(__name__)

# Completion codes (IPMI 2.0 §5.2)
CC_OK = 0x00
CC_PARAM_UNSUPPORTED = 0x80  # Get/Set System Boot Options: parameter not supported
CC_BUSY = 0xC0
CC_INVALID_COMMAND = 0xC1
CC_RESERVATION = 0xC5  # reservation canceled or invalid
CC_BAD_LENGTH = 0xC7
CC_OUT_OF_RANGE = 0xC9
CC_NOT_PRESENT = 0xCB
CC_INVALID_FIELD = 0xCC
CC_INSUFFICIENT_PRIV = 0xD4
CC_NOT_NOW = 0xD5
CC_UNSPECIFIED = 0xFF

NETFN_CHASSIS, NETFN_SENSOR, NETFN_APP, NETFN_STORAGE = 0x00, 0x04, 0x06, 0x0A

ERROR_CODES: dict[type[errors.MachineError], int] = {
    errors.Busy: CC_BUSY,
    errors.Refused: CC_NOT_NOW,
    errors.NotSupported: CC_INVALID_FIELD,
    errors.Invalid: CC_INVALID_FIELD,
    errors.NotFound: CC_NOT_NOW,
    errors.Forbidden: CC_INSUFFICIENT_PRIV,
    errors.BackendUnavailable: CC_UNSPECIFIED,
}

CHASSIS_CONTROL: dict[int, PowerAction] = {
    0x00: PowerAction.OFF,
    0x01: PowerAction.ON,
    0x02: PowerAction.CYCLE,
    0x03: PowerAction.RESET,
    0x04: PowerAction.NMI,
    0x05: PowerAction.SHUTDOWN,
}

# Boot flags (parameter 5) device selector <-> target; safe mode, floppy and the remote-media
# selectors have no KubeVirt meaning and are refused with 0xCC rather than approximated.
SELECTOR_TO_TARGET = {
    0x0: BootTarget.NONE,
    0x1: BootTarget.PXE,
    0x2: BootTarget.HDD,
    0x5: BootTarget.CD,
    0x6: BootTarget.BIOS_SETUP,
}
TARGET_TO_SELECTOR = {v: k for k, v in SELECTOR_TO_TARGET.items()}
BOOT_VALID, BOOT_PERSISTENT, BOOT_EFI = 0x80, 0x40, 0x20

# Runstrategy -> power restore policy bits 6:5 of Get Chassis Status byte 1.
RESTORE_POLICY = {"Always": 0x40, "RerunOnFailure": 0x20, "Once": 0x00, "Halted": 0x00, "Manual": 0x00}

# Plain boot option parameters kept as given (0 set in progress, 1/2 service partition,
# 3 valid-bit clearing, 4 boot info acknowledge): parameter -> data length.
PLAIN_BOOT_PARAMS = {0: 1, 1: 1, 2: 1, 3: 1, 4: 2}

DEVICE_ID = 0x20
MANUFACTURER_ID = 0  # no IANA number of our own; 0 reads "Unknown" and triggers no vendor quirks
PRODUCT_ID = 0x4B56  # "KV"


@dataclass(frozen=True, slots=True)
class Caller:
    user: str
    client: str  # address, as in logs and request records
    priv: Priv


# How long Chassis Control and Set System Boot Options (boot flags) wait for KubeVirt to accept their
# call or boot order patch before answering C0h (node busy): the answer must reach the client within 2 s,
# and ipmitool retransmits after 1 s (a retransmit is dropped while the first is being answered, and then
# gets that same answer).
ANSWER_WAIT = 1.5


@dataclass(frozen=True, slots=True)
class Waiting:
    """A command whose answer waits for KubeVirt's: `finish` turns `future` into (code, data)."""

    future: asyncio.Future[object]
    then: Callable[[], None] | None = None  # run on success
    data: bytes = b""  # the answer's data on success
    late: tuple[int, bytes] = (CC_BUSY, b"")  # the answer when KubeVirt has not answered within ANSWER_WAIT


Outcome = tuple[int, bytes] | Waiting
Handler = Callable[["Commands", Caller, bytes], Outcome]


def firmware_revision(version: str = __version__) -> tuple[int, int]:
    """(major, BCD minor) of Get Device ID from the vmbmc version."""
    parts = [int(p) if p.isdigit() else 0 for p in version.split(".")[:2]] + [0, 0]
    minor = min(parts[1], 99)
    return min(parts[0], 127), (minor // 10) << 4 | minor % 10


class Commands:
    """The command set of one BMC; runs on the BMC's event loop."""

    def __init__(self, machine: Machine, *, on_bmc_reset: Callable[[], None] | None = None) -> None:
        self.machine = machine
        self.on_bmc_reset = on_bmc_reset
        self.boot_params: dict[int, bytes] = {0: b"\x00", 1: b"\x00", 2: b"\x00", 3: b"\x00", 4: b"\x00\x00"}
        self.identify_until = 0.0  # monotonic deadline; inf = on until turned off
        self.powered_on_by_ipmi = False
        self._sel: sel.Log | None = None  # the SEL of the machine's last history view
        self._sel_reservation: tuple[int, tuple[int, ...]] = (0, ())  # (id, the SEL it was made for)
        self._clearing: asyncio.Future[object] | None = None  # the last Clear SEL's store
        self._sdr: tuple[str, tuple[bytes, ...]] = ("", ())  # (MC name, records)

    def handle(self, caller: Caller, req: Request) -> tuple[str, Outcome]:
        """(command name, (completion code, response data) or Waiting)."""
        entry = COMMANDS.get((req.netfn, req.cmd))
        if entry is None:
            return f"netfn 0x{req.netfn:02x} cmd 0x{req.cmd:02x}", (CC_INVALID_COMMAND, b"")
        name, least, handler = entry
        if caller.priv < least:
            return name, (CC_INSUFFICIENT_PRIV, b"")
        try:
            return name, handler(self, caller, req.data)
        except errors.MachineError as err:
            return name, self._refused(name, err)
        except Exception:  # a bug must cost one answer, never the server
            log.exception("IPMI handler failed", extra={"command": name})
            return name, (CC_UNSPECIFIED, b"")

    @staticmethod
    def _refused(name: str, err: errors.MachineError) -> tuple[int, bytes]:
        log.info("request refused by the state machine", extra={"command": name, "reason": err.message})
        return ERROR_CODES.get(type(err), CC_UNSPECIFIED), b""

    async def finish(self, name: str, waiting: Waiting) -> tuple[int, bytes]:
        """The answer once KubeVirt accepted the call (success), refused it (its error), or has not
        answered within ANSWER_WAIT (C0h: the call is still being made; the request's record tells
        what became of it)."""
        try:
            await asyncio.wait_for(asyncio.shield(waiting.future), ANSWER_WAIT)
        except TimeoutError:
            log.info("KubeVirt has not answered yet", extra={"command": name, "seconds": ANSWER_WAIT})
            return waiting.late
        except errors.MachineError as err:
            return self._refused(name, err)
        if waiting.then is not None:
            waiting.then()
        return CC_OK, waiting.data

    def _requester(self, caller: Caller) -> Requester:
        return Requester(Protocol.IPMI, caller.user, caller.client, secrets.token_hex(8))

    # --- App -------------------------------------------------------------------------------
    def get_device_id(self, caller: Caller, data: bytes) -> tuple[int, bytes]:
        major, minor = firmware_revision()
        # 15 bytes (IPMI 2.0 §20.1): 3-byte manufacturer id, 2-byte product id, 4-byte aux revision.
        # Additional device support: chassis (0x80), FRU inventory (0x08), SEL (0x04), SDR repository
        # (0x02: the records the SEL names, vmbmc.kbmc.sdr), sensor device (0x01). No device SDRs of
        # its own beside the repository's (device revision bit 7 clear).
        return CC_OK, (
            bytes((DEVICE_ID, 0x01, major, minor, 0x02, 0x8F))
            + MANUFACTURER_ID.to_bytes(3, "little")
            + PRODUCT_ID.to_bytes(2, "little")
            + bytes(4)
        )

    def bmc_reset(self, caller: Caller, data: bytes) -> tuple[int, bytes]:
        # A BMC reset does not touch the host; ours drops every session, as a real one does.
        if self.on_bmc_reset:
            self.on_bmc_reset()
        return CC_OK, b""

    def get_self_test(self, caller: Caller, data: bytes) -> tuple[int, bytes]:
        return CC_OK, b"\x55\x00"  # "no error"

    def get_acpi_power_state(self, caller: Caller, data: bytes) -> tuple[int, bytes]:
        on = self._chassis_on()
        return CC_OK, bytes((0x00 if on else 0x05, 0x00))  # S0/G0 working, or S5/G2 soft off; D0

    def get_system_guid(self, caller: Caller, data: bytes) -> tuple[int, bytes]:
        inv = self.machine.inventory()
        try:
            guid = uuid.UUID(inv.uuid)
        except ValueError:
            return CC_NOT_PRESENT, b""
        return CC_OK, guid.bytes[::-1]  # IPMI order: least significant byte first (§20.8)

    def get_device_guid(self, caller: Caller, data: bytes) -> tuple[int, bytes]:
        # The BMC's own GUID, stable for its name: not the VM's (that is the system GUID).
        name = self.machine.bmc or self.machine.vm
        return CC_OK, uuid.uuid5(uuid.NAMESPACE_URL, f"vmbmc:{name}").bytes[::-1]

    # --- Chassis ---------------------------------------------------------------------------
    def _chassis_on(self) -> bool:
        state = self.machine.power_status().state
        if state is PowerState.UNKNOWN:
            raise errors.BackendUnavailable("the VM's power state is unknown")
        # During a transition the state being left is read (PoweringOn reads off, PoweringOff on).
        return state in (PowerState.ON, PowerState.PAUSED, PowerState.POWERING_OFF)

    def get_chassis_status(self, caller: Caller, data: bytes) -> tuple[int, bytes]:
        on = self._chassis_on()
        policy = RESTORE_POLICY.get(self.machine.inventory().run_strategy, 0x60)
        last_event = 0x10 if self.powered_on_by_ipmi else 0x00
        identify = 0
        if self.identify_until > time.monotonic():
            identify = 0x20 if self.identify_until == float("inf") else 0x10
        return CC_OK, bytes(((0x01 if on else 0x00) | policy, last_event, 0x40 | identify))

    def chassis_control(self, caller: Caller, data: bytes) -> Outcome:
        if len(data) != 1:
            return CC_BAD_LENGTH, b""
        action = CHASSIS_CONTROL.get(data[0] & 0x0F)
        if action is None:
            return CC_INVALID_FIELD, b""
        requester = self._requester(caller)
        self.machine.submit(action, requester)

        def powered_on() -> None:
            if action is PowerAction.ON:
                self.powered_on_by_ipmi = True

        return self._when_answered(requester, powered_on)

    def chassis_identify(self, caller: Caller, data: bytes) -> tuple[int, bytes]:
        if len(data) > 2:
            return CC_BAD_LENGTH, b""
        interval = data[0] if data else 15
        if len(data) == 2 and data[1] & 0x01:
            self.identify_until = float("inf")
        else:
            self.identify_until = time.monotonic() + interval if interval else 0.0
        return CC_OK, b""

    # --- System boot options (IPMI 2.0 §28.12, §28.13) ------------------------------------
    def set_boot_options(self, caller: Caller, data: bytes) -> Outcome:
        if not data:
            return CC_BAD_LENGTH, b""
        param, value = data[0] & 0x7F, data[1:]
        if param in PLAIN_BOOT_PARAMS:
            if len(value) != PLAIN_BOOT_PARAMS[param]:
                return CC_BAD_LENGTH, b""
            if param == 4:  # boot info acknowledge: byte 1 is a write mask for byte 2
                mask, old = value[0], self.boot_params[4][1]
                value = bytes((0, (old & ~mask) | (value[1] & mask)))
            self.boot_params[param] = bytes(value)
            return CC_OK, b""
        if param != 5:
            return CC_PARAM_UNSUPPORTED, b""
        if len(value) != 5:
            return CC_BAD_LENGTH, b""
        flags, selector = value[0], (value[1] >> 2) & 0x0F
        target = SELECTOR_TO_TARGET.get(selector)
        if target is None:
            return CC_INVALID_FIELD, b""
        requester = self._requester(caller)
        if not flags & BOOT_VALID or target is BootTarget.NONE:
            self.machine.submit_boot_override(
                requester, target=BootTarget.NONE, enabled=BootPersistence.DISABLED
            )
        else:
            enabled = BootPersistence.CONTINUOUS if flags & BOOT_PERSISTENT else BootPersistence.ONCE
            # Without the EFI bit the VM's firmware is kept: `chassis bootdev pxe` must not turn a
            # UEFI VM into a BIOS one (docs/kbmc.md).
            mode = BootMode.UEFI if flags & BOOT_EFI else None
            self.machine.submit_boot_override(requester, target=target, enabled=enabled, mode=mode)
        return self._when_answered(requester)

    def _when_answered(self, requester: Requester, then: Callable[[], None] | None = None) -> Outcome:
        """Success only once KubeVirt took the request's call or patch (the machine's answer; `finish`
        waits for it up to ANSWER_WAIT), at once when it needed none; `then` runs on success."""
        future = self.machine.answer(requester.request_id)
        if future is not None and not future.done():
            return Waiting(future, then)
        if future is not None and future.exception() is not None:
            exc = future.exception()
            assert isinstance(exc, errors.MachineError)
            raise exc
        if then is not None:
            then()
        return CC_OK, b""

    def get_boot_options(self, caller: Caller, data: bytes) -> tuple[int, bytes]:
        if len(data) != 3:
            return CC_BAD_LENGTH, b""
        param = data[0] & 0x7F
        if param in PLAIN_BOOT_PARAMS:
            return CC_OK, bytes((0x01, param)) + self.boot_params[param]
        if param != 5:
            return CC_PARAM_UNSUPPORTED, b""
        return CC_OK, bytes((0x01, 5)) + boot_flags(self.machine.boot_override())

    # --- Storage: FRU ------------------------------------------------------------------------
    def _fru(self) -> bytes:
        return fru.image(self.machine.inventory(), __version__)

    def get_fru_area_info(self, caller: Caller, data: bytes) -> tuple[int, bytes]:
        if len(data) != 1:
            return CC_BAD_LENGTH, b""
        if data[0] != 0:
            return CC_NOT_PRESENT, b""
        return CC_OK, struct.pack("<HB", len(self._fru()), 0)  # byte access

    def read_fru_data(self, caller: Caller, data: bytes) -> tuple[int, bytes]:
        if len(data) != 4:
            return CC_BAD_LENGTH, b""
        if data[0] != 0:
            return CC_NOT_PRESENT, b""
        offset, count = struct.unpack("<H", data[1:3])[0], data[3]
        image = self._fru()
        if offset >= len(image):
            return CC_OUT_OF_RANGE, b""
        chunk = image[offset : offset + min(count, 64)]
        return CC_OK, bytes((len(chunk),)) + chunk

    # --- SDR repository (vmbmc.kbmc.sdr) ----------------------------------------------------
    def _sdr_records(self) -> tuple[bytes, ...]:
        name = self.machine.inventory().name
        if self._sdr[0] != name:
            self._sdr = (name, sdr.repository(name))
        return self._sdr[1]

    def get_device_sdr_info(self, caller: Caller, data: bytes) -> tuple[int, bytes]:
        # The device's SDRs are the repository's: byte 1 counts sensors, or records when asked (bit 0).
        records = self._sdr_records()
        count = len(records) if data and data[0] & 0x01 else len(sdr.SENSORS)
        return CC_OK, bytes((count, 0x01))  # static sensors, LUN 0

    def get_sdr_repository_info(self, caller: Caller, data: bytes) -> tuple[int, bytes]:
        return CC_OK, sdr.repository_info(len(self._sdr_records()))

    def reserve_sdr(self, caller: Caller, data: bytes) -> tuple[int, bytes]:
        return CC_OK, b"\x01\x00"  # the repository never changes: one reservation serves every read

    def get_sdr(self, caller: Caller, data: bytes) -> tuple[int, bytes]:
        if len(data) != 6:
            return CC_BAD_LENGTH, b""
        record_id, offset, count = struct.unpack("<H", data[2:4])[0], data[4], data[5]
        found = sdr.get_sdr(self._sdr_records(), record_id, offset, count)
        if found is None:
            return CC_NOT_PRESENT, b""
        following, chunk = found
        if offset and not chunk:
            return CC_OUT_OF_RANGE, b""
        return CC_OK, struct.pack("<H", following) + chunk

    # --- SEL: the power history (vmbmc.kbmc.sel) --------------------------------------------
    def _log(self) -> sel.Log:
        view = self.machine.history()
        if self._sel is None or self._sel.view is not view:
            self._sel = sel.Log.of(view)
        return self._sel

    def get_sel_info(self, caller: Caller, data: bytes) -> tuple[int, bytes]:
        return CC_OK, self._log().info()

    def reserve_sel(self, caller: Caller, data: bytes) -> tuple[int, bytes]:
        # A reservation ends with the next one or when the log changes (an entry added, a clear).
        rid = self._sel_reservation[0] % 0xFFFF + 1  # never 0: ipmitool reads 0 as a failure
        self._sel_reservation = (rid, self._log().signature())
        return CC_OK, struct.pack("<H", rid)

    def _reserved(self, data: bytes, *, changed_ok: bool = False) -> bool:
        """The request names the current reservation, made for the SEL as it is now (or as it was, when
        `changed_ok`: asking how a clear is going, once it has changed the SEL)."""
        rid, signature = self._sel_reservation
        same = changed_ok or signature == self._log().signature()
        return struct.unpack("<H", data[:2])[0] == rid != 0 and same

    def get_sel_entry(self, caller: Caller, data: bytes) -> tuple[int, bytes]:
        if len(data) != 6:
            return CC_BAD_LENGTH, b""
        record_id, offset, count = struct.unpack("<H", data[2:4])[0], data[4], data[5]
        if offset and not self._reserved(data):  # only a partial read needs the reservation
            return CC_RESERVATION, b""
        if offset >= sel.RECORD_SIZE:
            return CC_OUT_OF_RANGE, b""
        found = self._log().entry(record_id, offset, count)
        if found is None:
            return CC_NOT_PRESENT, b""
        return CC_OK, struct.pack("<H", found[0]) + found[1]

    def clear_sel(self, caller: Caller, data: bytes) -> Outcome:
        if len(data) != 6 or data[2:5] != b"CLR" or data[5] not in (0x00, 0xAA):
            return CC_INVALID_FIELD, b""
        if not self._reserved(data, changed_ok=data[5] == 0x00):
            return CC_RESERVATION, b""
        if data[5] == 0x00:  # get erasure status
            done = self._clearing is None or self._clearing.done()
            return CC_OK, b"\x01" if done else b"\x00"
        # Recorded as a request of this BMC (record, Event, status.logClearedAt, Event LogCleared); the
        # answer says "completed" once it is stored, "in progress" if that takes longer than ANSWER_WAIT.
        future = self.machine.clear_log(self._requester(caller))
        self._clearing = future
        return Waiting(future, data=b"\x01", late=(CC_OK, b"\x00"))

    def get_sel_time(self, caller: Caller, data: bytes) -> tuple[int, bytes]:
        return CC_OK, struct.pack("<I", int(time.time()) & 0xFFFFFFFF)


def boot_flags(override: BootOverride) -> bytes:
    """Boot flags parameter data (5 bytes) as the override really is."""
    flags = BOOT_EFI if override.mode is BootMode.UEFI else 0
    active = override.enabled is not BootPersistence.DISABLED and override.target is not BootTarget.NONE
    if not active:
        return bytes((flags, 0, 0, 0, 0))
    flags |= BOOT_VALID | (BOOT_PERSISTENT if override.enabled is BootPersistence.CONTINUOUS else 0)
    return bytes((flags, TARGET_TO_SELECTOR[override.target] << 2, 0, 0, 0))


COMMANDS: dict[tuple[int, int], tuple[str, Priv, Handler]] = {
    (NETFN_APP, 0x01): ("Get Device ID", Priv.USER, Commands.get_device_id),
    (NETFN_APP, 0x02): ("Cold Reset", Priv.ADMIN, Commands.bmc_reset),
    (NETFN_APP, 0x03): ("Warm Reset", Priv.ADMIN, Commands.bmc_reset),
    (NETFN_APP, 0x04): ("Get Self Test Results", Priv.USER, Commands.get_self_test),
    (NETFN_APP, 0x07): ("Get ACPI Power State", Priv.USER, Commands.get_acpi_power_state),
    (NETFN_APP, 0x08): ("Get Device GUID", Priv.USER, Commands.get_device_guid),
    (NETFN_APP, 0x37): ("Get System GUID", Priv.USER, Commands.get_system_guid),
    (NETFN_CHASSIS, 0x01): ("Get Chassis Status", Priv.USER, Commands.get_chassis_status),
    (NETFN_CHASSIS, 0x02): ("Chassis Control", Priv.OPERATOR, Commands.chassis_control),
    (NETFN_CHASSIS, 0x04): ("Chassis Identify", Priv.OPERATOR, Commands.chassis_identify),
    (NETFN_CHASSIS, 0x08): ("Set System Boot Options", Priv.OPERATOR, Commands.set_boot_options),
    (NETFN_CHASSIS, 0x09): ("Get System Boot Options", Priv.USER, Commands.get_boot_options),
    (NETFN_STORAGE, 0x10): ("Get FRU Inventory Area Info", Priv.USER, Commands.get_fru_area_info),
    (NETFN_STORAGE, 0x11): ("Read FRU Data", Priv.USER, Commands.read_fru_data),
    (NETFN_SENSOR, 0x20): ("Get Device SDR Info", Priv.USER, Commands.get_device_sdr_info),
    (NETFN_SENSOR, 0x21): ("Get Device SDR", Priv.USER, Commands.get_sdr),
    (NETFN_SENSOR, 0x22): ("Reserve Device SDR Repository", Priv.USER, Commands.reserve_sdr),
    (NETFN_STORAGE, 0x20): ("Get SDR Repository Info", Priv.USER, Commands.get_sdr_repository_info),
    (NETFN_STORAGE, 0x22): ("Reserve SDR Repository", Priv.USER, Commands.reserve_sdr),
    (NETFN_STORAGE, 0x23): ("Get SDR", Priv.USER, Commands.get_sdr),
    (NETFN_STORAGE, 0x40): ("Get SEL Info", Priv.USER, Commands.get_sel_info),
    (NETFN_STORAGE, 0x42): ("Reserve SEL", Priv.USER, Commands.reserve_sel),
    (NETFN_STORAGE, 0x43): ("Get SEL Entry", Priv.USER, Commands.get_sel_entry),
    (NETFN_STORAGE, 0x47): ("Clear SEL", Priv.OPERATOR, Commands.clear_sel),
    (NETFN_STORAGE, 0x48): ("Get SEL Time", Priv.USER, Commands.get_sel_time),
}
